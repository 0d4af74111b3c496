"""The engine's parts: constraints, regularisers, perturbation, optimisers, maps, layers."""

from __future__ import annotations

import math

import pytest
import torch

import hdm
from hdm.constraints import Clamp, Sigmoid
from hdm.engine import MaskOptimizer, grid_shape
from hdm.fidelity import Fidelity, deletion_loss
from hdm.hooks import evaluation_mode, explaining, record_activations
from hdm.layers import block_ends, last_convolution, resolve_layers
from hdm.maps import gaussian_bumps, normalize_maps, otsu_thresholds, resize_maps
from hdm.optimizers import TFRMSprop
from hdm.perturbation import blend, gaussian_blur, gaussian_kernel, make_baseline
from hdm.regularizers import LaplacianSmoothness, MaskArea, ParameterSparsity, TotalVariation
from hdm.rise import render_masks, sample_grids
from hdm.targets import Target
from tests.hdm.hdm_models import RegionModel


def test_sigmoid_constraint_inverts_and_respects_temperature():
    constraint = Sigmoid(temperature=0.3)
    masks = torch.tensor([0.1, 0.5, 0.9])
    torch.testing.assert_close(constraint(constraint.inverse(masks)), masks)
    torch.testing.assert_close(constraint(torch.tensor([0.3])), torch.tensor([1.0]).sigmoid())


def test_clamp_constraint_projects_parameters_into_unit_interval():
    parameters = torch.tensor([-0.5, 0.25, 1.5])
    Clamp().project_(parameters)
    assert parameters.tolist() == [0.0, 0.25, 1.0]


def test_regularisers_match_hand_computation():
    grid = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])
    assert MaskArea(2.0)(grid, grid).item() == 1.5
    # horizontal differences |1-0|, |1-1|; vertical |1-0|, |1-1|: means 0.5 + 0.5
    assert TotalVariation(3.0)(grid, grid).item() == 3.0
    spike = torch.zeros(1, 3, 3)
    spike[0, 1, 1] = 1.0
    # 8 at the spike, -1 at its 8 neighbours: (64 + 8) / 9
    assert LaplacianSmoothness(1.0, kernel_size=3)(spike, spike).item() == 8.0
    # the 5x5 kernel: 24 at the spike, -1 everywhere else
    assert LaplacianSmoothness(1.0, kernel_size=5)(spike, spike).item() == pytest.approx(584 / 9)
    for size in (3, 5):  # replicated borders keep a constant grid constant
        assert LaplacianSmoothness(1.0, kernel_size=size)(torch.ones(1, 4, 4), spike).item() == 0.0
    corner = torch.zeros(1, 3, 3)
    corner[0, 0, 0] = 1.0
    # The border is penalised too: the corner is a kernel centre (8 - 3 replicated copies = 5),
    # its two edge neighbours read it twice (-2), the diagonal one once (-1): (25 + 8 + 1) / 9.
    # A 'valid' convolution would only see it once, at the centre (-1): 1.
    assert LaplacianSmoothness(1.0, kernel_size=3)(corner, corner).item() == pytest.approx(34 / 9)
    parameters = torch.tensor([[[-10.0, -8.0]]])
    assert ParameterSparsity(0.5, offset=10.0)(parameters, parameters).item() == 0.5


def test_tensorflow_rmsprop_starts_its_square_average_at_one():
    weight = torch.tensor([1.0], requires_grad=True)
    optimizer = TFRMSprop([weight], lr=0.1)
    weight.grad = torch.tensor([2.0])
    optimizer.step()
    expected = 1.0 - 0.1 * 2.0 / (0.9 * 1.0 + 0.1 * 4.0 + 1e-10) ** 0.5
    torch.testing.assert_close(weight.detach(), torch.tensor([expected]))


def test_blend_keeps_image_where_mask_is_one_and_baseline_where_zero():
    images = torch.rand(2, 3, 4, 4)
    baseline = make_baseline(images, "mean")
    masks = torch.zeros(2, 2, 4, 4)
    masks[0] = 1.0
    stacked = blend(images, baseline, masks)
    assert stacked.shape == (4, 3, 4, 4)
    torch.testing.assert_close(stacked[:2], images)
    torch.testing.assert_close(stacked[2:], images.mean(dim=(2, 3), keepdim=True).expand_as(images))


def test_blur_keeps_a_flat_image_flat_and_smooths_an_impulse():
    flat = torch.full((1, 2, 9, 9), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, sigma=2.0), flat)
    impulse = torch.zeros(1, 1, 9, 9)
    impulse[..., 4, 4] = 1.0
    blurred = gaussian_blur(impulse, sigma=1.0)
    assert blurred[..., 4, 4].item() < 1.0 and blurred[..., 4, 5].item() > 0.0
    torch.testing.assert_close(blurred.sum(), torch.tensor(1.0))


def test_gaussian_kernel_by_hand():
    kernel = gaussian_kernel(1.0, 5, dtype=torch.float64)
    weights = torch.tensor([math.exp(-2), math.exp(-0.5), 1.0, math.exp(-0.5), math.exp(-2)],
                           dtype=torch.float64)
    torch.testing.assert_close(kernel, weights / weights.sum())
    with pytest.raises(ValueError, match="odd"):
        gaussian_kernel(1.0, 4)


def test_unknown_baseline_is_rejected():
    with pytest.raises(ValueError, match="baseline"):
        make_baseline(torch.rand(1, 3, 4, 4), "noise")


def test_fidelity_normalisations():
    target = Target(torch.tensor([0, 0]), batch_size=2, device=torch.device("cpu"))
    output = torch.tensor([[1.0], [3.0]])
    reference = torch.tensor([2.0, 2.0])
    baseline_score = torch.tensor([0.0, 1.0])
    loss = Fidelity("abs", "none")(target, output, reference, baseline_score, 1)
    assert loss.tolist() == [1.0, 1.0]
    loss = Fidelity("squared", "reference")(target, output, reference, baseline_score, 1)
    assert loss.tolist() == [0.25, 0.25]
    loss = Fidelity("abs", "evidence")(target, output, reference, baseline_score, 1)
    assert loss.tolist() == [0.5, 1.0]


def test_deletion_loss_counts_only_the_evidence_left_above_the_baseline():
    reference = torch.tensor([3.0, 3.0])
    baseline_score = torch.tensor([1.0, 1.0])
    # Two copies (repeats=2) of two samples: left 2 of 2 evidence, 1 of 2, none, below baseline.
    deleted = torch.tensor([3.0, 2.0, 1.0, 0.0])
    loss = deletion_loss(deleted, reference, baseline_score, repeats=2)
    assert loss.tolist() == [1.0, 0.25, 0.0, 0.0]


def test_deletion_term_makes_the_mask_cover_every_copy_of_the_evidence():
    # The score is the best of two boxes (as a prototype's max-pooled similarity): keeping
    # either box keeps the score, so only the deletion term asks for both.
    boxes = torch.zeros(2, 16, 16)
    boxes[0, 2:6, 2:6] = 1
    boxes[1, 10:14, 10:14] = 1
    rows_seen: list[int] = []

    def model(images: torch.Tensor) -> torch.Tensor:
        rows_seen.append(images.shape[0])
        inside = (images.mean(dim=1)[:, None] * boxes).sum(dim=(2, 3)) / boxes.sum(dim=(1, 2))
        return inside.max(dim=1).values[:, None]

    images = torch.ones(2, 3, 16, 16)
    baseline = torch.zeros_like(images)
    target = Target(torch.tensor([0, 0]), batch_size=2, device=images.device)
    reference = model(images)[:, 0]
    left = {}
    for weight in (0.0, 1.0):
        rows_seen.clear()
        optimizer = MaskOptimizer(grid_sizes=(8,), steps=150, regularizers=[MaskArea(0.5)],
                                  deletion_weight=weight, init=0.9)
        result = optimizer.run(model, images, baseline, target, reference)
        # The deletion term needs the baseline's score (one call of B rows), then runs
        # 2 B rows per step instead of B; the final masks are scored once.
        per_step = [2 * (1 + (weight > 0))] * 150
        assert rows_seen == [2] * (weight > 0) + per_step + [2]
        assert bool((result.scores > 0.8 * reference).all())
        left[weight] = model(blend(images, baseline, 1 - result.masks[0]))[:, 0] / reference
    assert float(left[0.0].min()) > 0.8  # one box is left whole without the deletion term
    assert float(left[1.0].max()) < 0.3


def test_gaussian_bumps_peak_at_each_centre_and_fall_to_exp_minus_half_at_sigma():
    bumps = gaussian_bumps(torch.tensor([[2.0, 3.0], [0.5, 0.5]]), (5, 6), sigma=2.0)
    assert bumps.shape == (2, 5, 6)
    assert float(bumps[0, 2, 3]) == 1.0
    assert bumps[0, 2, 5].item() == pytest.approx(math.exp(-0.5))  # 2 px = sigma away
    assert bumps[0, 4, 5].item() == pytest.approx(math.exp(-1.0))  # (2, 2) px away
    torch.testing.assert_close(bumps[1, 0, 0], bumps[1, 1, 1])  # between pixel centres


def test_grid_sizes_are_capped_at_the_image_size():
    assert grid_shape(None, (20, 30)) == (20, 30)
    assert grid_shape(8, (20, 30)) == (8, 8)
    assert grid_shape((40, 4), (20, 30)) == (20, 4)


def test_engine_keeps_the_score_with_a_small_mask():
    torch.manual_seed(0)
    model = RegionModel()
    images = torch.rand(2, 3, 32, 32)
    target = Target(torch.tensor([0, 0]), batch_size=2, device=images.device)
    reference = model(images)[:, 0].detach()
    optimizer = MaskOptimizer(grid_sizes=(8, 16), steps=60, regularizers=[MaskArea(1.0)])
    with explaining(model):
        result = optimizer.run(model, images, torch.zeros_like(images), target, reference)
    assert result.masks.shape == (2, 2, 32, 32) and len(result.grids) == 2
    assert result.grids[0].shape == (2, 8, 8) and result.grids[1].shape == (2, 16, 16)
    assert float(result.masks.mean()) < 0.3
    assert bool(((result.scores - reference).abs() < 0.2 * reference).all())


def test_random_initial_mask_is_shared_by_the_batch():
    optimizer = MaskOptimizer(grid_sizes=(4,), steps=0, init=(-1.0, 1.0))
    images = torch.rand(3, 3, 8, 8)
    target = Target(lambda out: out.flatten(1).sum(dim=1), batch_size=3, device=images.device)
    generator = torch.Generator().manual_seed(0)
    result = optimizer.run(lambda x: x, images, images, target, torch.zeros(3), generator=generator)
    # Equal up to rounding: vectorised kernels may round the tail of a tensor differently
    # (one sample differed in the last bit on torch 2.11 on an H100 machine's CPU).
    torch.testing.assert_close(result.grids[0][0], result.grids[0][2], rtol=1e-6, atol=0)
    assert not torch.allclose(result.grids[0][0], result.grids[0][0].mean())


def test_normalised_maps_span_the_unit_interval_and_flat_maps_vanish():
    maps = torch.stack([torch.arange(4.0).view(2, 2), torch.full((2, 2), 7.0)])
    normalised = normalize_maps(maps)
    torch.testing.assert_close(normalised[0].flatten(), torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]))
    assert normalised[1].abs().sum().item() == 0.0


def test_otsu_threshold_separates_two_modes():
    values = torch.cat([torch.full((50,), 0.1), torch.full((50,), 0.9)]).view(1, 10, 10)
    threshold = otsu_thresholds(values).item()
    assert 0.1 < threshold < 0.9


def test_block_ends_are_the_last_module_at_each_resolution(small_cnn):
    images = torch.rand(1, 3, 32, 32)
    features = small_cnn.features
    assert block_ends(small_cnn, images) == [features[1], features[4], features]
    assert last_convolution(small_cnn, images) is features[6]


def test_layers_are_resolved_by_name_and_bad_names_are_reported(small_cnn):
    assert resolve_layers(small_cnn, ["features.3"]) == [small_cnn.features[3]]
    with pytest.raises(ValueError, match="no submodule named 'features.99'"):
        hdm.GradCAM(small_cnn, layers=["features.99"])


def test_gradcam_on_a_named_layer_and_sise_on_given_layers_run(small_cnn):
    images = torch.rand(2, 3, 32, 32)
    targets = torch.tensor([0, 1])
    assert hdm.GradCAM(small_cnn, layers="features.3")(images, targets).shape == (2, 32, 32)
    sise = hdm.SISE(small_cnn, layers=["features.1", "features.7"])
    assert sise(images, targets).shape == (2, 32, 32)


def test_hooks_are_removed_after_explaining_even_on_error(small_cnn):
    images = torch.rand(2, 3, 32, 32)
    hdm.SISE(small_cnn)(images, torch.tensor([0, 1]))
    with pytest.raises(ValueError):
        hdm.GradCAM(small_cnn)(images, torch.tensor([0, 9]))
    assert all(not m._forward_hooks and not m._backward_hooks for m in small_cnn.modules())


@pytest.mark.parametrize("context", [explaining, evaluation_mode])
def test_model_modes_come_back_module_by_module(context):
    """A batch norm kept in eval (frozen statistics) inside a model in training mode stays in
    eval after the block, which ``model.train(was_training)`` would undo."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                                torch.nn.ReLU()).train()
    model[1].eval()
    with context(model):
        assert not any(module.training for module in model.modules())
        assert context is explaining or not torch.is_grad_enabled()
        assert context is evaluation_mode or not any(p.requires_grad for p in model.parameters())
    assert [module.training for module in model.modules()] == [True, True, False, True]
    assert all(p.requires_grad for p in model.parameters()) and torch.is_grad_enabled()


def test_hdm_stops_after_the_first_stage_when_no_evidence_remains(small_cnn):
    images = torch.rand(2, 3, 32, 32)
    targets = torch.tensor([0, 1])
    options = {"benchmark_steps": 5, "auxiliary_steps": 5}
    one_stage = hdm.HDM(small_cnn, stages=1, **options)(images, targets)
    stopped = hdm.HDM(small_cnn, stages=3, stop_ratio=10.0, **options)(images, targets)
    torch.testing.assert_close(one_stage, stopped)


@pytest.mark.parametrize(
    ("size_in", "size_out"), [((4, 4), (32, 32)), ((7, 5), (48, 30)), ((48, 48), (12, 12))]
)
def test_resize_equals_bilinear_interpolation(size_in, size_out):
    maps = torch.rand(3, *size_in)
    expected = torch.nn.functional.interpolate(
        maps[:, None], size=size_out, mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(resize_maps(maps, size_out), expected[:, 0])


def _activation_and_gradient(model, layer, images, targets):
    """The layer's activation (detached) and the gradient of the targets' summed logits with
    respect to it, computed by hand for the reference values below."""
    with torch.enable_grad(), record_activations([layer]) as recorded:
        output = model(images.clone().requires_grad_(True))
        (gradient,) = torch.autograd.grad(
            output[torch.arange(len(targets)), targets].sum(), recorded[0]
        )
    return recorded[0].detach(), gradient

def test_sise_layer_map_weighs_each_kept_feature_map_by_its_masked_score(small_cnn):
    images = torch.rand(2, 3, 32, 32)
    targets = torch.tensor([1, 3])
    layer = small_cnn.features[4]
    with explaining(small_cnn):
        activation, gradient = _activation_and_gradient(small_cnn, layer, images, targets)
        target = Target(targets, batch_size=2, device=images.device)
        sise = hdm.SISE(small_cnn, batch_size=6)
        layer_map = sise.layer_map(images, target, activation, gradient)
        for b in range(2):
            expected = torch.zeros(32, 32)
            for channel in (gradient[b].mean(dim=(1, 2)) > 0).nonzero().flatten():
                mask = normalize_maps(resize_maps(activation[b, channel][None], (32, 32)))
                score = small_cnn(images[b : b + 1] * mask).softmax(dim=1)[0, targets[b]]
                expected += score * mask[0]
            torch.testing.assert_close(layer_map[b], expected, atol=1e-5, rtol=1e-5)


def test_rise_is_the_score_weighted_mean_of_its_masks(small_cnn):
    images = torch.rand(2, 3, 32, 32)
    targets = torch.tensor([0, 2])
    rise = hdm.RISE(small_cnn, num_masks=10, cells=4, probability=0.5, batch_size=6, seed=3)
    with explaining(small_cnn):
        raw = rise.explain(images, Target(targets, batch_size=2, device=images.device))
        grids, shifts = sample_grids(10, 4, 0.5, torch.Generator().manual_seed(3))
        masks = render_masks(grids, shifts, (32, 32), images.dtype, images.device)
        scores = torch.stack([small_cnn(images * m).softmax(dim=1)[[0, 1], targets] for m in masks])
    expected = torch.einsum("nb,nhw->bhw", scores, masks) / (10 * 0.5)
    torch.testing.assert_close(raw, expected)
    assert masks.shape == (10, 32, 32)
    assert float(masks.min()) > -1e-6 and float(masks.max()) < 1 + 1e-6


def test_gradcam_is_the_relu_of_gradient_weighted_activations(small_cnn):
    images = torch.rand(2, 3, 32, 32)
    targets = torch.tensor([4, 1])
    layer = small_cnn.features[3]
    with explaining(small_cnn):
        activation, gradient = _activation_and_gradient(small_cnn, layer, images, targets)
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = (weights * activation).sum(dim=1).relu()
    expected = normalize_maps(resize_maps(cam, (32, 32)))
    torch.testing.assert_close(hdm.GradCAM(small_cnn, layers=[layer])(images, targets), expected)
