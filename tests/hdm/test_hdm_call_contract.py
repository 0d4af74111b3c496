"""The call contract: shapes, range, device, dtype, batching, seeds, model state, errors."""

from __future__ import annotations

import pytest
import torch

import hdm
from tests.hdm.hdm_methods import QUICK, build
from tests.hdm.hdm_models import SmallCNN

STOCHASTIC = ("neuromask", "rise")


@pytest.mark.parametrize("name", sorted(QUICK))
def test_map_has_one_value_per_pixel_in_unit_range_on_input_device(name, small_cnn, images):
    saliency = build(QUICK, name, small_cnn)(images, torch.tensor([0, 1, 2]))
    assert saliency.shape == (3, 32, 32)
    assert saliency.device == images.device and saliency.dtype == images.dtype
    assert float(saliency.min()) >= 0 and float(saliency.max()) <= 1
    assert not saliency.requires_grad


@pytest.mark.parametrize("name", sorted(QUICK))
def test_batch_explains_the_same_as_each_sample_alone(name, small_cnn, images):
    targets = torch.tensor([0, 3, 1])
    explainer = build(QUICK, name, small_cnn)
    together = explainer(images, targets)
    alone = torch.cat([explainer(images[i : i + 1], targets[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", sorted(QUICK))
def test_same_seed_gives_identical_maps(name, small_cnn, images):
    targets = torch.tensor([0, 1, 2])
    first = build(QUICK, name, small_cnn)(images, targets)
    second = build(QUICK, name, small_cnn)(images, targets)
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", STOCHASTIC)
def test_different_seeds_give_different_maps(name, small_cnn, images):
    targets = torch.tensor([0, 1, 2])
    first = build(QUICK, name, small_cnn, seed=0)(images, targets)
    second = build(QUICK, name, small_cnn, seed=1)(images, targets)
    assert not torch.allclose(first, second)


@pytest.mark.parametrize("name", sorted(QUICK))
def test_double_precision_images_give_double_precision_maps(name, images):
    torch.manual_seed(0)
    model = SmallCNN().double()
    saliency = build(QUICK, name, model)(images.double(), torch.tensor([0, 1, 2]))
    assert saliency.dtype == torch.float64


@pytest.mark.parametrize("name", sorted(QUICK))
def test_model_mode_and_weights_are_restored_and_never_updated(name, small_cnn, images):
    small_cnn.train()
    small_cnn.classifier.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in small_cnn.state_dict().items()}
    build(QUICK, name, small_cnn)(images, torch.tensor([0, 1, 2]))
    assert small_cnn.training
    assert not small_cnn.classifier.weight.requires_grad
    assert all(p.requires_grad for n, p in small_cnn.named_parameters() if n != "classifier.weight")
    assert all(p.grad is None for p in small_cnn.parameters())
    for key, value in small_cnn.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_model_state_is_restored_when_explaining_fails(small_cnn, images):
    small_cnn.train()
    with pytest.raises(ValueError, match="class indices must lie in"):
        hdm.MDM(small_cnn, steps=1)(images, torch.tensor([0, 1, 99]))
    assert small_cnn.training
    assert all(p.requires_grad for p in small_cnn.parameters())


def test_methods_are_registered_by_name():
    assert hdm.METHODS == {
        "mdm": hdm.MDM,
        "hdm": hdm.HDM,
        "neuromask": hdm.NeuroMask,
        "sise": hdm.SISE,
        "gradcam": hdm.GradCAM,
        "rise": hdm.RISE,
    }


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.rand(3, 32, 32), r"\(B, C, H, W\)"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "floating point"),
        ("not a tensor", "must be a Tensor"),
    ],
)
def test_bad_images_are_rejected_with_a_clear_message(small_cnn, images, message):
    with pytest.raises((TypeError, ValueError), match=message):
        hdm.GradCAM(small_cnn)(images, torch.tensor([0, 1]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"stacking": "median"}, "stacking"),
        ({"baseline": "noise"}, "baseline"),
        ({"fidelity": "kl"}, "fidelity"),
        ({"constraint": "tanh"}, "constraint"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"grid_sizes": ()}, "grid_sizes"),
    ],
)
def test_bad_mdm_options_are_rejected_by_name(small_cnn, images, options, message):
    with pytest.raises(ValueError, match=message):
        hdm.MDM(small_cnn, steps=1, **options)(images, torch.tensor([0, 1, 2]))


@pytest.mark.parametrize(
    "options",
    [{"guidance": "sum"}, {"stage_masking": "hard"}, {"fusion": "mean"}, {"stages": 0}],
)
def test_bad_hdm_options_are_rejected_by_name(small_cnn, options):
    name = next(iter(options))
    with pytest.raises(ValueError, match=name):
        hdm.HDM(small_cnn, **options)
