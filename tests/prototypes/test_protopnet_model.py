"""ProtoPNet's structure and initialisation, as the original model.py."""

import pytest
import torch
from torch import nn

from prototypes import ProtoPNet
from prototypes.model import build_add_on_layers
from tests.prototypes.tiny_protopnet import make_model


def test_output_shapes(tiny_model):
    out = tiny_model(torch.rand(5, 3, 16, 16))
    assert out.logits.shape == (5, 3)
    assert out.similarity_maps.shape == out.distance_maps.shape == (5, 6, 2, 2)
    assert out.similarities.shape == out.min_distances.shape == (5, 6)
    assert out.latent.shape == (5, 4, 2, 2)


def test_class_identity_assigns_consecutive_prototypes_to_each_class(tiny_model):
    expected = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1.0]])
    torch.testing.assert_close(tiny_model.prototype_class_identity, expected)
    assert tiny_model.prototype_classes.tolist() == [0, 0, 1, 1, 2, 2]


def test_last_layer_starts_at_one_for_own_class_and_minus_half_elsewhere(tiny_model):
    weight = tiny_model.last_layer.weight
    identity = tiny_model.prototype_class_identity.t()
    assert weight.shape == (3, 6) and tiny_model.last_layer.bias is None
    assert (weight[identity == 1] == 1).all() and (weight[identity == 0] == -0.5).all()


def test_prototypes_start_uniform_in_unit_interval_and_add_on_biases_at_zero(tiny_model):
    assert tiny_model.prototype_vectors.shape == (6, 4, 1, 1)
    assert ((tiny_model.prototype_vectors >= 0) & (tiny_model.prototype_vectors < 1)).all()
    for module in tiny_model.add_on_layers.modules():
        if isinstance(module, nn.Conv2d):
            assert (module.bias == 0).all()


def test_forward_normalises_with_its_own_mean_and_std_buffers():
    model = make_model(mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4)).eval()
    images = torch.rand(2, 3, 16, 16)
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.3, 0.4]).view(1, 3, 1, 1)
    expected = model.add_on_layers(model.features((images - mean) / std))
    torch.testing.assert_close(model(images).latent, expected)
    state = model.state_dict()
    torch.testing.assert_close(state["mean"], mean.flatten())
    torch.testing.assert_close(state["std"], std.flatten())
    assert "prototype_class_identity" in state


def _conv_channels(layers):
    return [(m.in_channels, m.out_channels) for m in layers if isinstance(m, nn.Conv2d)]


def _activations(layers):
    return [type(m).__name__ for m in layers if not isinstance(m, nn.Conv2d)]


def test_regular_add_on_is_two_convolutions_ending_in_sigmoid():
    layers = build_add_on_layers("regular", 512, 128)
    assert _conv_channels(layers) == [(512, 128), (128, 128)]
    assert _activations(layers) == ["ReLU", "Sigmoid"]


def test_bottleneck_add_on_halves_channels_down_to_prototype_dim():
    layers = build_add_on_layers("bottleneck", 512, 128)
    assert _conv_channels(layers) == [(512, 256), (256, 256), (256, 128), (128, 128)]
    assert _activations(layers) == ["ReLU", "ReLU", "ReLU", "Sigmoid"]
    small = build_add_on_layers("bottleneck", 64, 128)  # fewer channels than D: one pair
    assert _conv_channels(small) == [(64, 128), (128, 128)]
    assert _activations(small) == ["ReLU", "Sigmoid"]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="activation"):
        make_model(activation="cosine")
    with pytest.raises(ValueError, match="add_on"):
        make_model(add_on="wide")
    with pytest.raises(ValueError, match="unknown backbone"):
        ProtoPNet("alexnet", 3)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        make_model()(torch.rand(2, 1, 16, 16))
