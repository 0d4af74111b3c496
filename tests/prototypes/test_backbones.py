"""Backbones by name, their receptive fields, and loading weights from local files."""

from functools import cache
from urllib.error import URLError

import pytest
import torch
import torchvision
from torch import nn

from prototypes.backbones import build_backbone
from prototypes.receptive_field import (
    ReceptiveField,
    receptive_field_box,
    trace_receptive_field,
)


@cache
def _backbone(name):
    return build_backbone(name)


def test_small_cnn_has_stride_8_and_a_few_hundred_thousand_parameters():
    features, channels = build_backbone("small_cnn")
    assert 100_000 < sum(p.numel() for p in features.parameters()) < 300_000
    assert features(torch.rand(1, 3, 64, 64)).shape == (1, channels, 8, 8)


def test_small_cnn_pools_set_the_stride_and_three_pools_is_the_default_trunk():
    torch.manual_seed(0)
    default = build_backbone("small_cnn", width=2)[0]
    torch.manual_seed(0)
    three = build_backbone("small_cnn", width=2, pools=3)[0]
    assert str(default) == str(three)
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(),
                                                 three.state_dict().values(), strict=True))
    coarse, channels = build_backbone("small_cnn", width=2, pools=4)
    assert coarse(torch.rand(1, 3, 64, 64)).shape == (1, channels, 4, 4)
    assert channels == 8  # widths w, 2w, 4w, 4w, 4w
    field, latent_size = trace_receptive_field(coarse, (64, 64))
    # One more pool (38 + 8 = 46, jump 16) and 3x3 conv (46 + 2 * 16 = 78) than the default.
    assert (field.jump, field.size, latent_size) == (16, 78, (4, 4))
    with pytest.raises(ValueError, match="pools must be >= 1"):
        build_backbone("small_cnn", pools=0)


@pytest.mark.parametrize(("name", "channels", "last"), [
    ("resnet18", 512, "Sequential"), ("resnet34", 512, "Sequential"),
    ("resnet50", 2048, "Sequential"), ("vgg16", 512, "MaxPool2d"), ("densenet121", 1024, "ReLU"),
])
def test_torchvision_trunks_are_the_originals_without_weights(name, channels, last):
    features, out_channels = _backbone(name)
    assert out_channels == channels
    assert type(list(features.children())[-1]).__name__ == last  # layer4 / last pool / ReLU
    assert features(torch.rand(1, 3, 64, 64)).shape == (1, channels, 2, 2)  # stride 32


@pytest.mark.parametrize(("name", "expected"), [
    # (jump, size, start) from the original's compute_proto_layer_rf_info_v2 at 224 px.
    ("resnet18", (32, 435, 0.5)), ("resnet50", (32, 427, 0.5)), ("vgg16", (32, 212, 16.0)),
    ("densenet121", (32, 2071, 14.5)),
    # By hand: conv3 -> 3; pool -> 4, jump 2; conv3 -> 8; pool -> 10, jump 4; conv3 -> 18;
    # pool -> 22, jump 8; conv3 -> 38. Centre of position 0: 0.5 + 0.5 + 1 + 2 = 4.
    ("small_cnn", (8, 38, 4.0)),
])
def test_receptive_field_matches_the_original_computation(name, expected):
    field, latent_size = trace_receptive_field(_backbone(name)[0], (224, 224))
    assert (field.jump, field.size, field.start) == expected
    assert latent_size == ((7, 7) if name != "small_cnn" else (28, 28))


def test_receptive_field_box_is_centred_and_clipped_to_the_image():
    field = ReceptiveField(jump=32, size=212, start=16.0)  # VGG16
    assert receptive_field_box(field, 0, 0, (224, 224)) == (0, 122, 0, 122)
    assert receptive_field_box(field, 6, 3, (224, 224)) == (102, 224, 6, 218)
    assert receptive_field_box(ReceptiveField(), 3, 5, (8, 8)) == (3, 4, 5, 6)  # identity


def test_receptive_field_rejects_layers_it_cannot_model():
    trunk = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(2))
    with pytest.raises(ValueError, match="changes spatial size"):
        trace_receptive_field(trunk, (16, 16))


def test_pretrained_local_file_is_loaded_into_the_trunk(tmp_path):
    source = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    features, _ = build_backbone("resnet18", pretrained=path)
    torch.testing.assert_close(features.conv1.weight, source.conv1.weight)
    torch.testing.assert_close(features.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)


def test_pretrained_file_without_head_is_accepted_and_small_cnn_loads_its_own(tmp_path):
    state = {k: v for k, v in torchvision.models.resnet18(weights=None).state_dict().items()
             if not k.startswith("fc.")}
    torch.save(state, tmp_path / "trunk.pth")
    build_backbone("resnet18", pretrained=tmp_path / "trunk.pth")
    source, _ = build_backbone("small_cnn", width=2)
    torch.save(source.state_dict(), tmp_path / "small.pth")
    loaded, _ = build_backbone("small_cnn", pretrained=tmp_path / "small.pth", width=2)
    torch.testing.assert_close(loaded[0].weight, source[0].weight)


def test_mismatched_weights_file_lists_the_keys(tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["layer1.0.conv1.weight"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"layer1\.0\.conv1\.weight.*extra\.weight"):
        build_backbone("resnet18", pretrained=tmp_path / "bad.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_backbone("resnet18", pretrained=tmp_path / "missing.pth")


def test_weights_name_fails_offline_with_a_clear_message(monkeypatch):
    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match="pass that file's path as 'pretrained'"):
        build_backbone("resnet18", pretrained="IMAGENET1K_V1")
    with pytest.raises(ValueError, match="known names"):
        build_backbone("resnet18", pretrained="NOT_A_WEIGHT")


def test_old_style_densenet_keys_of_official_files_are_renamed(tmp_path):
    source = torchvision.models.densenet121(weights=None)
    old_style = {key.replace("denselayer1.norm1.", "denselayer1.norm.1.")
                    .replace("denselayer1.conv2.", "denselayer1.conv.2."): value
                 for key, value in source.state_dict().items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in old_style
    torch.save(old_style, tmp_path / "densenet121.pth")
    features, _ = build_backbone("densenet121", pretrained=tmp_path / "densenet121.pth")
    torch.testing.assert_close(features.denseblock1.denselayer1.conv2.weight,
                               source.features.denseblock1.denselayer1.conv2.weight)


@pytest.mark.parametrize("name, options, channels", [
    ("vgg11_bn", {"cfg": [4, "M", 8, "M"]}, 8),
    ("resnet34", {"layers": [1, 1, 1, 1]}, 512),
    ("densenet161", {"growth_rate": 4, "block_config": [1, 2], "num_init_features": 8,
                     "bn_size": 2}, 14),  # 8 + 4, halved to 6 by the transition, + 2 * 4
])
def test_layout_options_change_the_named_trunk(name, options, channels):
    """Non-standard VGG / ResNet / DenseNet layouts keep torchvision's parameter names."""
    trunk, out = build_backbone(name, **options)
    assert out == channels
    with torch.device("meta"):  # shapes only: no memory, no init
        reference = torchvision.models.get_model(name)
    reference_keys = {k.split(".", 1)[1] if name.startswith(("vgg", "densenet")) else k
                      for k in reference.state_dict()}
    assert set(trunk.state_dict()) <= reference_keys | {"final_relu"}
    with torch.no_grad():
        assert trunk.eval()(torch.zeros(1, 3, 64, 64)).shape[1] == channels


def test_bad_layouts_are_refused():
    with pytest.raises(ValueError, match="cfg"):
        build_backbone("vgg11", cfg=[4, "X"])
    with pytest.raises(ValueError, match="layers"):
        build_backbone("resnet18", layers=[1, 1])
