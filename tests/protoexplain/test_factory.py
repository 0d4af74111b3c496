"""Building the configured architecture and choosing its kernels."""

import inspect
import os
from pathlib import Path

import pytest
import torch
import yaml

from protoexplain.config import (
    XPROTONET_SHARED_ARGUMENTS,
    Config,
    ConfigError,
    load_config,
    xprotonet_option_names,
)
from protoexplain.config_schema import to_dict
from protoexplain.factory import build_dataset, build_model, use_deterministic_kernels
from prototypes import ProtoPNet, XProtoNet
from prototypes.efficientnet_lite import LITE_MEAN, LITE_STD, imagenet_weights_file

SMALL = ["model.backbone=small_cnn", "model.backbone_options={width: 2}",
         "model.prototypes_per_class=2", "model.prototype_dim=4", "model.mean=[0.5, 0.5, 0.5]"]


def test_protopnet_is_the_default_architecture():
    model = build_model(load_config(None, SMALL), 3, 16)
    assert type(model) is ProtoPNet and model.prototype_vectors.shape[0] == 6


def test_xprotonet_gets_the_shared_fields_and_its_own_options():
    config = load_config(None, [*SMALL, "model.architecture=xprotonet",
                                "data.dataset=SyntheticRadiographs",
                                "model.xprotonet={last_layer: full, incorrect_class_connection: "
                                "-0.25}"])
    model = build_model(config, 3, 16)
    assert isinstance(model, XProtoNet) and model.last_layer_type == "full"
    assert model.num_prototypes == 6 and model.prototype_dim == 4
    assert torch.equal(model.mean, torch.tensor([0.5, 0.5, 0.5]))
    own = model.prototype_class_identity.t()
    assert torch.equal(model.last_layer.weight, own - 0.25 * (1 - own))


def test_every_xprotonet_argument_is_either_shared_or_an_option():
    parameters = list(inspect.signature(XProtoNet).parameters)
    assert set(XPROTONET_SHARED_ARGUMENTS) <= set(parameters)
    assert sorted([*XPROTONET_SHARED_ARGUMENTS, *xprotonet_option_names()]) == sorted(parameters)
    assert set(xprotonet_option_names()) == {"latent_activation", "last_layer",
                                             "incorrect_class_connection"}


CONFIGS = Path(__file__).parents[2] / "configs"


def _leaves(tree: dict, prefix: tuple = ()):
    """(key path, value) of every leaf of a nested mapping (an empty mapping is a leaf)."""
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda path: path.name)
def test_every_shipped_config_loads_with_every_value_it_sets(path):
    written = yaml.safe_load(path.read_text())
    loaded = to_dict(load_config(path))
    for keys, value in _leaves(written):
        found = loaded
        for key in keys:
            found = found[key]
        assert found == value, ".".join(keys)
    assert loaded["model"]["architecture"] in ("protopnet", "xprotonet")


@pytest.mark.parametrize("name, latent", [("synthetic_protopnet", 8),
                                          ("synthetic_coarse_protopnet", 4),
                                          ("synthetic_coarse_resnet18", 4)])
def test_synthetic_configs_give_the_latent_map_their_comments_state(name, latent):
    config = load_config(CONFIGS / f"{name}.yaml")
    size = config.data.options["image_size"]
    model = build_model(config, 8, size).eval()
    with torch.no_grad():
        maps = model(torch.zeros(1, 3, size, size)).similarity_maps
    assert maps.shape == (1, 40, latent, latent)


@pytest.mark.parametrize("name", ["synthetic_protopnet_lite0", "fashion_protopnet_lite0",
                                  "synthetic_xprotonet_lite0"])
def test_pretrained_lite0_configs_load_the_imagenet_trunk_and_give_a_7x7_map(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    size = config.data.options["image_size"]
    model = build_model(config, 4, size).eval()
    weights = torch.load(imagenet_weights_file("efficientnet_lite0"), weights_only=True)
    assert torch.equal(model.features._conv_head.weight, weights["_conv_head.weight"])
    assert model.mean.tolist() == pytest.approx(LITE_MEAN, abs=1e-6)
    assert model.std.tolist() == pytest.approx(LITE_STD, abs=1e-6)
    with torch.no_grad():
        assert model.features(torch.zeros(1, 3, size, size)).shape == (1, 1280, 7, 7)


def test_deterministic_kernels_are_switched_on_for_a_gpu_only(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert not torch.are_deterministic_algorithms_enabled()
    use_deterministic_kernels(torch.device("cpu"), True)
    assert not torch.are_deterministic_algorithms_enabled()  # the CPU path is left as it is
    try:
        # PyTorch's switch and cuBLAS's setting need no GPU to be set, only to take effect
        use_deterministic_kernels(torch.device("cuda"), True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        use_deterministic_kernels(torch.device("cuda"), False)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_determinism_is_on_by_default_and_configurable():
    assert Config().deterministic is True
    assert not load_config(None, ["deterministic=false"]).deterministic


def test_an_option_value_the_data_set_refuses_is_a_config_error_naming_it():
    config = load_config(None, ["data.dataset=SyntheticParts",
                                "data.options={image_size: 4, num_samples: 2}"])
    refused = (r"data set SyntheticParts \(train split, data.options .*'image_size': 4.*\): "
               r"SyntheticParts: image_size must be")
    with pytest.raises(ConfigError, match=refused):
        build_dataset(config, "train")
