"""The engine's speed options keep its results: reused upsampling matrices and blend, the
compiled masked forward, and bfloat16 autocast (``mixed_precision``) on the CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import hdm
from hdm.constraints import Clamp
from hdm.engine import MaskOptimizer, masked_forward
from hdm.fidelity import Fidelity
from hdm.hooks import explaining
from hdm.maps import resize_maps, resize_matrices
from hdm.perturbation import blend, blend_difference, make_baseline
from hdm.regularizers import MaskArea
from hdm.targets import Target

GRIDS = (4, 8)
STEPS = 6
AREA = 3.0
DELETION = 1.0
LR = 0.05


def _reference_masks(model, images, baseline, labels):
    """The engine's equations (hdm/engine.py docstring) written out one (grid, sample) at a
    time, each mask with its own Adam, with ``F.interpolate`` and the literal blend."""
    with torch.no_grad():
        reference = model(images)[torch.arange(len(labels)), labels]
        baseline_score = model(baseline)[torch.arange(len(labels)), labels]
    masks = torch.empty(len(GRIDS), *images.shape[:1], *images.shape[2:])
    for s, cells in enumerate(GRIDS):
        for b in range(len(images)):
            x, base = images[b : b + 1], baseline[b : b + 1]
            scale = (reference[b] - baseline_score[b]).abs().clamp_min(1e-6)
            parameters = torch.full((1, 1, cells, cells), 0.5, requires_grad=True)
            optimizer = torch.optim.Adam([parameters], lr=LR)

            def upsampled(p):
                return F.interpolate(p.clamp(0, 1), size=images.shape[2:], mode="bilinear",
                                     align_corners=False)

            for _ in range(STEPS):
                mask = upsampled(parameters)
                kept = model(mask * x + (1 - mask) * base)[0, labels[b]]
                deleted = model((1 - mask) * x + mask * base)[0, labels[b]]
                loss = (
                    ((kept - reference[b]) / scale) ** 2
                    + DELETION * ((deleted - baseline_score[b]) / scale).clamp_min(0) ** 2
                    + AREA * parameters.clamp(0, 1).mean()
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    parameters.clamp_(0, 1)
            masks[s, b] = upsampled(parameters).detach()[0, 0]
    return masks


def _engine(**options) -> MaskOptimizer:
    return MaskOptimizer(
        grid_sizes=GRIDS, steps=STEPS, constraint=Clamp(), init=0.5,
        fidelity=Fidelity("squared", normalize="evidence"), deletion_weight=DELETION,
        regularizers=[MaskArea(AREA)], lr=LR, **options,
    )


def _run(engine, model, images, baseline, labels):
    target = Target(labels, len(labels), images.device)
    with explaining(model):
        reference = model(images)[torch.arange(len(labels)), labels]
        return engine.run(model, images, baseline, target, reference)


def test_batched_engine_gives_the_masks_of_the_equations_one_mask_at_a_time(small_cnn, images):
    labels = torch.tensor([0, 3, 1])
    baseline = make_baseline(images, "blur", 3.0)
    result = _run(_engine(), small_cnn, images, baseline, labels)
    with explaining(small_cnn):
        expected = _reference_masks(small_cnn, images, baseline, labels)
    assert (expected - 0.5).abs().max() > 0.05  # the masks moved
    torch.testing.assert_close(result.masks, expected, atol=1e-5, rtol=0)


def test_compiled_masked_forward_gives_the_same_masks(small_cnn, images):
    if not hasattr(torch, "compile"):
        pytest.skip("torch.compile is not available")
    labels = torch.tensor([2, 0, 1])
    baseline = make_baseline(images, "blur", 3.0)
    eager = _run(_engine(), small_cnn, images, baseline, labels)
    # aot_eager traces the forward and the backward as torch.compile does, without the
    # code generation that takes minutes on a CPU; the GPU suite times the inductor modes.
    compiled = _run(_engine(compile="aot_eager"), small_cnn, images, baseline, labels)
    torch.testing.assert_close(compiled.masks, eager.masks, atol=1e-5, rtol=0)
    torch.testing.assert_close(compiled.scores, eager.scores, atol=1e-5, rtol=1e-5)


def test_unknown_compile_setting_is_refused():
    with pytest.raises(ValueError, match="compile must be a bool or one of"):
        _engine(compile="fastest")
    with pytest.raises(ValueError, match="compile must be a bool or one of"):
        hdm.MDM(torch.nn.Identity(), compile="fastest")


class _DtypeRecorder(torch.nn.Module):
    """Wraps a model and records the dtype of its output."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.dtypes: list[torch.dtype] = []

    def forward(self, x):
        out = self.model(x)
        self.dtypes.append(out.dtype)
        return out


def test_mixed_precision_runs_the_model_in_bfloat16_on_the_cpu_and_keeps_float32_masks(
    small_cnn, images
):
    recorder = _DtypeRecorder(small_cnn)
    labels = torch.tensor([0, 3, 1])
    fp32 = hdm.MDM(recorder, steps=4)(images, labels)
    assert set(recorder.dtypes) == {torch.float32}
    recorder.dtypes.clear()
    bf16 = hdm.MDM(recorder, steps=4, mixed_precision=True)(images, labels)
    assert torch.bfloat16 in recorder.dtypes
    assert bf16.dtype == torch.float32
    # Close, not equal: bfloat16 keeps 8 bits of mantissa.
    assert (bf16 - fp32).abs().mean() < 0.1


def test_precomputed_resize_matrices_and_difference_give_the_same_values():
    maps = torch.rand(2, 5, 7)
    torch.testing.assert_close(
        resize_maps(maps, (20, 21), matrices=resize_matrices((5, 7), (20, 21), maps)),
        resize_maps(maps, (20, 21)),
        atol=0, rtol=0,
    )
    images, baseline, masks = torch.rand(2, 3, 6, 6), torch.rand(2, 3, 6, 6), torch.rand(4, 2, 6, 6)
    torch.testing.assert_close(
        blend_difference(baseline, images - baseline, masks), blend(images, baseline, masks),
        atol=0, rtol=0,
    )
    model = torch.nn.Conv2d(3, 1, 3)
    with torch.no_grad():
        torch.testing.assert_close(
            masked_forward(model, baseline, images - baseline, masks, None),
            model(blend(images, baseline, masks)),
        )
