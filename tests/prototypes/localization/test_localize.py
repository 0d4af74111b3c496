"""The registry and ``localize``: methods looked up by name, the option check, and the
behaviour every method shares (shapes, ranges, devices, batching, leaving the model as it
was)."""

import pytest
import torch

from prototypes import LOCALIZATION_METHODS, Localization, check_localization_options, localize
from prototypes.mask_predictor import MaskPredictor, MaskPredictorConfig
from tests.prototypes.tiny_protopnet import make_model

torch.manual_seed(0)
UNTRAINED_MASKER = MaskPredictor(make_model(image_size=32), MaskPredictorConfig(channels=4))
"""An (untrained) mask predictor for the tiny model's layout, which every test model shares."""

FAST_OPTIONS = {
    "upsample": {},
    "receptive_field": {},
    "mdm": {"steps": 6},
    "hdm": {"benchmark_steps": 3, "auxiliary_steps": 3},
    "neuromask": {"steps": 6},
    "smoothgrad": {"samples": 4},
    "amortized": {"masker": UNTRAINED_MASKER},
    "random": {},
    "centre": {},
}
"""Every registered method with options small enough for a unit test."""

BATCH_INVARIANT = ["upsample", "receptive_field", "mdm", "hdm", "neuromask", "smoothgrad",
                   "amortized", "centre"]
"""Methods whose map of a pair does not depend on the rest of the batch (``random`` draws
one independent map per pair, in batch order)."""


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return make_model(image_size=32)


@pytest.fixture(scope="module")
def pairs():
    """Five pairs mixing three images and several prototypes of different classes."""
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    return images[[0, 1, 0, 2, 1]], torch.tensor([0, 5, 3, 3, 1])


def test_every_registered_method_has_fast_test_options():
    assert set(FAST_OPTIONS) == set(LOCALIZATION_METHODS)


@pytest.mark.parametrize("method", sorted(FAST_OPTIONS))
def test_method_returns_maps_in_unit_range_and_boxes_inside_the_image(method, model, pairs):
    images, ids = pairs
    found = localize(model, images, ids, method=method, **FAST_OPTIONS[method])
    assert found.maps.shape == (5, 32, 32) and found.maps.dtype == images.dtype
    assert found.maps.device == images.device and found.boxes.device == images.device
    assert found.maps.min() >= 0 and found.maps.max() <= 1
    assert torch.isfinite(found.maps).all()
    assert found.boxes.shape == (5, 4) and found.boxes.dtype == torch.int64
    y0, y1, x0, x1 = found.boxes.unbind(1)
    assert ((0 <= y0) & (y0 < y1) & (y1 <= 32) & (0 <= x0) & (x0 < x1) & (x1 <= 32)).all()


@pytest.mark.parametrize("method", BATCH_INVARIANT)
def test_a_batch_gives_each_pair_the_map_it_gets_alone(method, model, pairs):
    images, ids = pairs
    options = {**FAST_OPTIONS[method], "steps": 15} if method in ("mdm", "neuromask") \
        else FAST_OPTIONS[method]
    together = localize(model, images, ids, method=method, **options)
    for b in range(len(ids)):
        alone = localize(model, images[b:b + 1], ids[b:b + 1], method=method, **options)
        # Optimised masks amplify rounding (which differs with a row's place in a batch on
        # some CPUs: up to 3e-4 after 15 MDM steps on an H100 machine's CPU); a real coupling
        # between pairs would move whole regions.
        torch.testing.assert_close(together.maps[b], alone.maps[0], atol=2e-3, rtol=0)
        assert torch.equal(together.boxes[b], alone.boxes[0])


@pytest.mark.parametrize("method", sorted(FAST_OPTIONS))
def test_method_leaves_modes_flags_and_parameters_of_the_model_unchanged(method):
    model = make_model(image_size=32).train()
    model.features[1].eval()  # a batch norm kept in eval during training
    model.prototype_vectors.requires_grad_(False)
    modes = {name: module.training for name, module in model.named_modules()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    state = {name: value.clone() for name, value in model.state_dict().items()}
    localize(model, torch.rand(2, 3, 32, 32), [1, 4], method=method, **FAST_OPTIONS[method])
    assert {name: module.training for name, module in model.named_modules()} == modes
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name
    assert all(p.grad is None for p in model.parameters())


DETERMINISTIC = ["upsample", "receptive_field", "mdm", "hdm", "amortized", "centre"]
"""Methods whose maps depend on the model and images alone (``smoothgrad``, ``random`` and
NeuroMask's initial mask draw from the device's generator, whose streams differ between CPU and
CUDA)."""
OPTIMISED = {"mdm", "hdm"}
"""Methods that learn their maps by gradient steps."""


@pytest.mark.cuda
@pytest.mark.parametrize("method", DETERMINISTIC)
def test_method_on_cuda_keeps_everything_there_and_matches_the_cpu(method, model, pairs):
    images, ids = pairs
    on_cpu = localize(model, images, ids, method=method, **FAST_OPTIONS[method])
    gpu_model = make_model(image_size=32)
    gpu_model.load_state_dict(model.state_dict())
    gpu_model = gpu_model.cuda()
    on_gpu = localize(gpu_model, images.cuda(), ids.cuda(), method=method,
                      **FAST_OPTIONS[method])
    assert on_gpu.maps.is_cuda and on_gpu.boxes.is_cuda
    difference = (on_gpu.maps.cpu() - on_cpu.maps).abs()
    if method in OPTIMISED:
        # Adam's first steps move each cell by about the learning rate in the direction of
        # its gradient's sign, which rounding flips where a gradient is near zero (HDM after
        # 3 + 3 steps on an H100: 9 % of pixels off by more than 2e-3, the largest by 0.09).
        assert float(difference.mean()) < 0.02
    else:
        assert float(difference.max()) < 2e-3


@pytest.mark.parametrize("method", sorted(FAST_OPTIONS))
def test_option_check_accepts_every_method_with_its_options(method):
    check_localization_options(method, FAST_OPTIONS[method])
    check_localization_options(method, {})


BAD_OPTIONS = [
    ("no_such_method", {}, "unknown localization method 'no_such_method'"),
    ("upsample", {"percentil": 90}, "'upsample'.*'percentil'.*its options: percentile"),
    ("upsample", {"percentile": 101}, r"percentile must be a number in \[0, 100\], got 101"),
    ("centre", {"relative_threshold": "high"}, "relative_threshold must be a number"),
    ("receptive_field", {"percentile": 90}, "'receptive_field'.*its options: none"),
    ("smoothgrad", {"sample": 4}, "'smoothgrad'.*'sample'.*samples"),
    ("hdm", {"benchmark_step": 3}, "'hdm'.*'benchmark_step'.*benchmark_steps"),
    ("hdm", {"guidance": "nope"}, "guidance must be one of"),
    ("mdm", {"score": "peek"}, "score must be one of"),
    ("mdm", {"density_sigma": -1}, "density_sigma must be a number >= 0"),
    ("neuromask", {"peak_candidates": 1.5}, "peak_candidates must be an integer >= 0"),
    ("neuromask", {"percentile": -5}, "percentile must be a number in"),
    ("amortized", {"mask": None}, "'amortized'.*'mask'.*masker"),
    ("amortized", {"density_sigma": -1}, "density_sigma must be a number >= 0"),
]
"""Options ``localize`` refuses, with what its error says."""


@pytest.mark.parametrize(("method", "options", "message"), BAD_OPTIONS,
                         ids=[f"{m}-{next(iter(o), '')}" for m, o, _ in BAD_OPTIONS])
def test_option_check_refuses_what_localize_refuses_with_the_same_message(
        method, options, message, model, pairs):
    with pytest.raises(ValueError, match=message) as checked:
        check_localization_options(method, options)
    images, ids = pairs
    with pytest.raises(ValueError, match=message) as localized:
        localize(model, images[:1], ids[:1], method=method, **options)
    assert str(checked.value) == str(localized.value)


def test_methods_are_looked_up_by_name(tiny_model, monkeypatch):
    def centre(model, images, prototype_ids, *, size):
        return Localization(maps=torch.zeros(len(images), 16, 16),
                            boxes=torch.full((len(images), 4), size))

    monkeypatch.setitem(LOCALIZATION_METHODS, "centre", centre)
    found = localize(tiny_model, torch.rand(1, 3, 16, 16), [0], method="centre", size=3)
    assert found.boxes.tolist() == [[3, 3, 3, 3]]
    with pytest.raises(ValueError, match="unknown localization method 'no_such_method'.*upsample"):
        localize(tiny_model, torch.rand(1, 3, 16, 16), [0], method="no_such_method")


def test_localize_is_batched_over_image_prototype_pairs(tiny_model):
    images = torch.rand(4, 3, 16, 16)
    ids = [5, 0, 2, 2]
    together = localize(tiny_model, images, ids)
    for b in range(4):
        alone = localize(tiny_model, images[b:b + 1], ids[b:b + 1])
        torch.testing.assert_close(together.maps[b], alone.maps[0])
        assert torch.equal(together.boxes[b], alone.boxes[0])


def test_localize_checks_prototype_ids(tiny_model):
    with pytest.raises(ValueError, match="one prototype id per image"):
        localize(tiny_model, torch.rand(2, 3, 16, 16), [0])
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        localize(tiny_model, torch.rand(1, 3, 16, 16), [6])
