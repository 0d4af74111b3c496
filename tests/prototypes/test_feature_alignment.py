"""Shallow-deep feature alignment (Huang et al., ICCV 2023): the layer it picks, the folding
of the shallow map, the loss against a hand-computed case, and its place in the ProtoPNet
objective."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prototypes import LossCoefficients, ProtoPNet, protopnet_loss
from prototypes.feature_alignment import alignment_loss, fold_to, shallow_layer_index
from tests.prototypes.tiny_protopnet import make_model


@pytest.mark.parametrize(("backbone", "image_size", "options", "expected"), [
    ("small_cnn", 64, {"width": 2}, 2),              # 8x8 latent: the first block (64 px)
    ("small_cnn", 64, {"width": 2, "pools": 4}, 6),  # 4x4 latent: the second block (32 px)
    ("resnet18", 64, {}, 4),                          # layer1, the original's choice
])
def test_shallow_layer_is_the_deepest_eight_times_finer(backbone, image_size, options, expected):
    model = ProtoPNet(backbone, 2, prototypes_per_class=1, prototype_dim=4,
                      image_size=image_size, backbone_options=options)
    assert model.shallow_index is None  # off until asked for
    model.keep_shallow_map()
    assert model.shallow_index == expected
    if backbone == "resnet18":
        assert list(model.features.named_children())[expected][0] == "layer1"


def test_shallow_layer_falls_back_to_the_finest_and_needs_a_sequential():
    trunk = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(2, 2, 1))
    # 16 px -> 8x8 latent: nothing is 64 px, so the deepest child at 16 px (the first).
    assert shallow_layer_index(trunk, (16, 16), (8, 8)) == 0
    assert shallow_layer_index(nn.Conv2d(3, 2, 1), (16, 16), (16, 16)) is None


def test_fold_turns_blocks_into_channels():
    shallow = torch.arange(16.0).view(1, 1, 4, 4)
    folded = fold_to(shallow, (2, 2))
    assert folded.shape == (1, 4, 2, 2)
    # The top-left 2x2 block (0, 1, 4, 5) becomes the channels of position (0, 0).
    assert folded[0, :, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]
    # 5x5 is pooled to 4x4 first.
    odd = fold_to(torch.ones(2, 3, 5, 5), (2, 2))
    assert odd.shape == (2, 12, 2, 2) and torch.allclose(odd, torch.ones_like(odd))
    assert fold_to(shallow, (4, 4)) is shallow


def test_alignment_loss_matches_hand_computation():
    # Deep map 1x2: orthogonal features, so cos(peak = position 0, q) = [1, 0].
    deep = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 1, 2).requires_grad_()
    # Shallow 2x4 folds to 1x2 with two identical positions: cos = [1, 1].
    shallow = torch.ones(1, 1, 2, 4, requires_grad=True)
    # Prototype 0 (class 0) peaks at position 0; prototype 1 (class 1) is not the image's.
    maps = torch.tensor([[[[5.0, 1.0]], [[0.0, 9.0]]]])
    loss = alignment_loss(shallow, deep, maps, torch.tensor([0]), torch.tensor([0, 1]),
                          margin=0.1)
    # |[1, 0] - [1, 1]| - 0.1 -> relu [0, 0.9] -> mean over the two positions.
    assert loss.item() == pytest.approx(0.45)
    loss.backward()
    # d loss / d cos = -1/2 at position 1; d cos(a, b) / d b = a (unit, orthogonal vectors),
    # so the gradient is -1/2 on channel 0 of position 1 and on channel 1 of the peak.
    assert torch.equal(deep.grad, torch.tensor([[[[0.0, -0.5]], [[-0.5, 0.0]]]]))
    assert shallow.grad is None  # the shallow map is a fixed target


def test_alignment_is_zero_when_the_deep_map_keeps_the_shallow_structure():
    shallow = torch.rand(3, 2, 8, 8)
    deep = F.pixel_unshuffle(shallow, 4) * 2.5  # same directions, other scale
    maps = torch.rand(3, 4, 2, 2)
    loss = alignment_loss(shallow, deep, maps, torch.tensor([0, 1, 1]),
                          torch.tensor([0, 0, 1, 1]), margin=0.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_protopnet_loss_adds_the_term_only_when_weighted():
    torch.manual_seed(0)
    model = make_model(num_classes=2, prototypes_per_class=2)
    images, labels = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 1, 0])
    assert model(images).shallow is None  # not kept by default
    model.keep_shallow_map()
    output = model(images)
    assert output.shallow is not None and output.shallow.shape[-1] == 16
    plain = protopnet_loss(output, labels, model)
    assert "alignment" not in plain
    weighted = protopnet_loss(output, labels, model, LossCoefficients(alignment=2.0))
    expected = alignment_loss(output.shallow, output.trunk, output.similarity_maps, labels,
                              model.prototype_classes)
    assert weighted["alignment"].item() == pytest.approx(expected.item())
    assert weighted["total"].item() == pytest.approx(plain["total"].item()
                                                     + 2.0 * expected.item(), rel=1e-5)
    output.shallow = None
    with pytest.raises(ValueError, match="shallow map"):
        protopnet_loss(output, labels, model, LossCoefficients(alignment=2.0))


def test_trunk_maps_catch_the_shallow_map_and_keep_hooks_on_the_trunk():
    model = make_model().eval()
    model.keep_shallow_map()
    images = torch.rand(2, 3, 16, 16)
    calls = []
    handle = model.features.register_forward_hook(lambda *_: calls.append(1))
    output = model(images)
    handle.remove()
    assert calls == [1]  # a hook on the whole trunk still fires
    normalized = model.normalize(images)
    expected = model.features[:model.shallow_index + 1](normalized)
    assert torch.equal(output.shallow, expected)
    assert torch.equal(output.trunk, model.features(normalized))
    assert not model.features[model.shallow_index]._forward_hooks  # the hook was removed


def test_a_swapped_shorter_trunk_gives_no_shallow_map():
    model = make_model().eval()
    model.keep_shallow_map()
    model.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1))  # shorter than the index
    output = model(torch.rand(1, 3, 16, 16))
    assert output.shallow is None and output.trunk.shape == (1, 8, 16, 16)
