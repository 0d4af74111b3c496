"""The batched mask optimiser shared by every mask-learning method (MDM, HDM, NeuroMask).

For a batch of ``B`` (image, target) pairs and ``S`` mask grids, all ``B * S`` masks live
in **one** parameter tensor and are optimised together; each step runs the model once on
the ``S * B`` masked images::

    w_s (B, h_s, w_s) --constraint--> m_s in [0, 1] --bilinear--> M_s (B, H, W)
    M = transform(stack_s M_s)                       (S, B, H, W)
    x_masked = baseline + M * (x - baseline)          (S * B, C, H, W)
    loss = sum_{s, b} fidelity_weight * fidelity(model(x_masked)[s, b], s0[b])
                      + deletion_weight * deletion(model(x_deleted)[s, b])
                      + sum_r reg_r(w_s[b], m_s[b])

where ``x_deleted = baseline + (1 - M) * (x - baseline)`` is the image with the mask's
region removed (only computed when ``deletion_weight > 0``; the same model call then runs
``2 * S * B`` images) and :func:`hdm.fidelity.deletion_loss` is small when removing the
region destroys the score: the mask must be sufficient *and* necessary, the combined
preservation/deletion objective of Dabkowski & Gal, "Real time image saliency for black
box classifiers", NeurIPS 2017 (Eq. 4), here with squared, evidence-normalised terms.

The loss is a sum of per-(scale, sample) terms and the optimisers act element-wise, so
each mask evolves exactly as if it were optimised alone (up to floating-point rounding).
Gradients are taken with respect to the mask parameters only; the model is expected to
be frozen (:func:`hdm.hooks.explaining`).

Speed: what a step does beside the model is built once per :meth:`MaskOptimizer.run`
(the upsampling matrices, ``x - baseline``), and nothing in the loop reads a value back to
the host (no ``.item()``, no data-dependent branch), so a GPU runs the steps without waiting
for the host. ``mixed_precision`` runs the model under
bfloat16 autocast; ``compile`` hands the masked forward (blend and model) to
:func:`torch.compile` (``benchmarks/hdm_speed.py`` measures both; docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from hdm.constraints import Constraint, Sigmoid
from hdm.fidelity import Fidelity, deletion_loss
from hdm.maps import resize_maps, resize_matrices
from hdm.optimizers import make_optimizer
from hdm.perturbation import blend_difference
from hdm.regularizers import Regularizer
from hdm.targets import Target, slice_output

GridSize = int | tuple[int, int] | None
"""A mask grid: ``n`` (n x n cells), ``(h, w)``, or ``None`` for the full image resolution."""

AUTOCAST_DEVICES = ("cuda", "cpu")
"""Devices where ``mixed_precision`` applies bfloat16 autocast (elsewhere it is ignored)."""

COMPILE_SETTINGS: dict[str, dict[str, str]] = {
    "default": {"mode": "default"},
    "reduce-overhead": {"mode": "reduce-overhead"},
    "max-autotune": {"mode": "max-autotune"},
    "max-autotune-no-cudagraphs": {"mode": "max-autotune-no-cudagraphs"},
    "cudagraphs": {"backend": "cudagraphs"},
    "aot_eager": {"backend": "aot_eager"},
}
"""What ``compile`` accepts by name, as :func:`torch.compile` keywords (``True``: ``"default"``):
the inductor modes (generated kernels; ``"reduce-overhead"`` also replays CUDA graphs),
``"cudagraphs"`` (CUDA graphs of the unchanged kernels, no code generation) and
``"aot_eager"`` (traces forward and backward, runs them eagerly: a check of the tracing, not
faster)."""


def masked_forward(
    model: Callable[[Tensor], Any],
    baseline: Tensor,
    difference: Tensor,
    masks: Tensor,
    autocast_device: str | None,
) -> Any:
    """The model's output on the masked images ``baseline + masks * difference``
    (:func:`hdm.perturbation.blend_difference`; ``masks`` ``(S, B, H, W)``, output rows
    scale-major), under bfloat16 autocast on ``autocast_device`` when it is not ``None``."""
    with torch.autocast(
        device_type=autocast_device or "cpu",
        dtype=torch.bfloat16,
        enabled=autocast_device is not None,
    ):
        return model(blend_difference(baseline, difference, masks))


_COMPILED: dict[str, Callable[..., Any]] = {}


def compiled_masked_forward(setting: str) -> Callable[..., Any]:
    """:func:`masked_forward` compiled with :func:`torch.compile` as ``setting`` of
    :data:`COMPILE_SETTINGS` says (one compiled function per setting for the process; torch
    recompiles it per model and input shape)."""
    if setting not in COMPILE_SETTINGS:
        raise ValueError(
            f"compile must be a bool or one of {tuple(COMPILE_SETTINGS)}, got {setting!r}"
        )
    if setting not in _COMPILED:
        _COMPILED[setting] = torch.compile(masked_forward, **COMPILE_SETTINGS[setting])
    return _COMPILED[setting]


def grid_shape(size: GridSize, image_size: tuple[int, int]) -> tuple[int, int]:
    """Cells ``(h, w)`` of a grid, capped at the image size."""
    if size is None:
        return image_size
    h, w = (size, size) if isinstance(size, int) else size
    if h < 1 or w < 1:
        raise ValueError(f"mask grid sizes must be positive, got {size}")
    return min(h, image_size[0]), min(w, image_size[1])


@dataclass
class MaskResult:
    """Outcome of one optimisation.

    Attributes:
        masks: ``(S, B, H, W)`` constrained masks upsampled to the image, before ``transform``.
        effective: ``(S, B, H, W)`` the masks actually applied to the image (after ``transform``).
        grids: per scale, the constrained mask values on the grid ``(B, h_s, w_s)``.
        scores: ``(S, B)`` the target's score on the final masked images.
    """

    masks: Tensor
    effective: Tensor
    grids: list[Tensor]
    scores: Tensor


@dataclass
class MaskOptimizer:
    """Pluggable batched mask optimisation.

    Attributes:
        grid_sizes: one entry per mask scale (see :data:`GridSize`).
        steps: optimisation steps.
        constraint: parameters -> mask values (:class:`~hdm.constraints.Sigmoid`, ``Clamp``).
        init: a mask value in (0, 1) for every cell, or ``(low, high)`` to draw the raw
            parameters uniformly (NeuroMask draws them in [-10, 10]); the random field is
            drawn once per grid and shared by the batch.
        fidelity: the score-keeping term.
        fidelity_weight: its weight.
        deletion_weight: weight of the deletion term (module docstring); 0 turns it off.
        regularizers: penalties on each grid (see :mod:`hdm.regularizers`).
        optimizer: ``"adam"``, ``"sgd"``, ``"rmsprop"`` or ``"rmsprop_tf"``.
        lr: learning rate.
        optimizer_options: extra keyword arguments for the optimiser.
        mixed_precision: run the model under bfloat16 autocast on CUDA or the CPU
            (:data:`AUTOCAST_DEVICES`; masks, losses and the optimiser stay in the images'
            dtype); ignored on other devices. Off by default: not yet validated on a GPU
            (docs/performance.md, Mixed precision).
        compile: compile the masked forward (blend and model, :func:`masked_forward`) with
            :func:`torch.compile`: ``True`` or a name in :data:`COMPILE_SETTINGS`; ``False``
            (default) runs it eagerly. The first call per model and shape pays the
            compilation.
    """

    grid_sizes: Sequence[GridSize]
    steps: int = 100
    constraint: Constraint = field(default_factory=Sigmoid)
    init: float | tuple[float, float] = 0.5
    fidelity: Fidelity = field(default_factory=Fidelity)
    fidelity_weight: float = 1.0
    deletion_weight: float = 0.0
    regularizers: Sequence[Regularizer] = ()
    optimizer: str = "adam"
    lr: float = 0.1
    optimizer_options: Mapping[str, Any] = field(default_factory=dict)
    mixed_precision: bool = False
    compile: bool | str = False

    def __post_init__(self) -> None:
        if len(self.grid_sizes) == 0:
            raise ValueError("grid_sizes must list at least one mask grid")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.deletion_weight < 0:
            raise ValueError(f"deletion_weight must be >= 0, got {self.deletion_weight}")
        if isinstance(self.compile, str) and self.compile not in COMPILE_SETTINGS:
            raise ValueError(
                f"compile must be a bool or one of {tuple(COMPILE_SETTINGS)}, "
                f"got {self.compile!r}"
            )

    def run(
        self,
        model: Callable[[Tensor], Any],
        images: Tensor,
        baseline: Tensor,
        target: Target,
        reference: Tensor,
        *,
        baseline_score: Tensor | None = None,
        transform: Callable[[Tensor], Tensor] | None = None,
        init_masks: Tensor | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
        description: str = "masks",
    ) -> MaskResult:
        """Optimise the masks of every (image, target) pair and every grid at once.

        Args:
            model: frozen model, images -> output.
            images: ``(B, C, H, W)``.
            baseline: ``(B, C, H, W)`` what masked-out pixels become.
            target: the scores to keep.
            reference: ``(B,)`` the score to keep (``fidelity`` ``abs``/``squared``).
            baseline_score: ``(B,)`` the score of ``baseline``, for ``"evidence"``
                normalisation; computed here when needed and not given.
            transform: maps stacked masks ``(S, B, H, W)`` to the masks applied (HDM guidance).
            init_masks: ``(B, H, W)`` initial mask values in [0, 1], averaged onto every grid
                (overrides ``init``).
            generator: random source for a ``(low, high)`` ``init``.
            progress: show a tqdm bar over steps.
            description: the bar's label.
        """
        batch, _, height, width = images.shape
        shapes = [grid_shape(size, (height, width)) for size in self.grid_sizes]
        counts = [batch * h * w for h, w in shapes]
        parameters = self._initial_parameters(images, shapes, counts, init_masks, generator)
        optimizer = make_optimizer(self.optimizer, [parameters], self.lr, self.optimizer_options)
        device_type = images.device.type
        autocast_device = (
            device_type if self.mixed_precision and device_type in AUTOCAST_DEVICES else None
        )
        model_pass = masked_forward
        if self.compile:
            model_pass = compiled_masked_forward(
                "default" if self.compile is True else str(self.compile)
            )
        # Built once: every step reuses them.
        difference = images - baseline
        matrices = [
            resize_matrices((h, w), (height, width), images) if (h, w) != (height, width) else None
            for h, w in shapes
        ]
        repeats = len(shapes)
        deleting = self.deletion_weight > 0
        needs_baseline_score = self.fidelity.needs_baseline_score or deleting
        if baseline_score is None and needs_baseline_score:
            with torch.no_grad():
                baseline_score = target.score(model(baseline))

        def forward(
            with_deletion: bool,
        ) -> tuple[Tensor, Tensor, list[Tensor], list[Tensor], Any, Any]:
            grids = [
                p.view(batch, h, w)
                for p, (h, w) in zip(parameters.split(counts), shapes, strict=True)
            ]
            values = [self.constraint(g) for g in grids]
            masks = torch.stack(
                [
                    resize_maps(v, (height, width), matrices=m)
                    for v, m in zip(values, matrices, strict=True)
                ]
            )
            effective = transform(masks) if transform is not None else masks
            applied = torch.cat([effective, 1 - effective]) if with_deletion else effective
            output = model_pass(model, baseline, difference, applied, autocast_device)
            if not with_deletion:
                return masks, effective, grids, values, output, None
            rows = 2 * repeats * batch
            kept = slice_output(output, 0, repeats * batch, rows)
            deleted = slice_output(output, repeats * batch, rows, rows)
            return masks, effective, grids, values, kept, deleted

        for _ in tqdm(range(self.steps), desc=description, disable=not progress, leave=False):
            with torch.enable_grad():
                _, _, grids, values, output, deleted = forward(deleting)
                loss = (
                    self.fidelity_weight
                    * self.fidelity(target, output, reference, baseline_score, repeats).sum()
                )
                if deleted is not None:
                    assert baseline_score is not None
                    deleted_scores = target.score(deleted, repeats)
                    loss = (
                        loss
                        + self.deletion_weight
                        * deletion_loss(deleted_scores, reference, baseline_score, repeats).sum()
                    )
                for grid, value in zip(grids, values, strict=True):
                    for regularizer in self.regularizers:
                        loss = loss + regularizer(grid, value).sum()
                (parameters.grad,) = torch.autograd.grad(loss, parameters)
            optimizer.step()
            with torch.no_grad():
                self.constraint.project_(parameters)

        with torch.no_grad():
            masks, effective, _, values, output, _ = forward(False)
        scores = target.score(output, repeats).view(repeats, batch)
        return MaskResult(
            masks=masks, effective=effective, grids=values, scores=scores.to(images.dtype)
        )

    def _initial_parameters(
        self,
        images: Tensor,
        shapes: list[tuple[int, int]],
        counts: list[int],
        init_masks: Tensor | None,
        generator: torch.Generator | None,
    ) -> Tensor:
        dtype, device = images.dtype, images.device
        if init_masks is not None:
            values = [
                F.adaptive_avg_pool2d(init_masks[:, None].to(dtype), shape).flatten()
                for shape in shapes
            ]
            parameters = self.constraint.inverse(torch.cat(values))
        elif isinstance(self.init, tuple):
            # One random field per grid, shared by the whole batch, so that a sample's
            # masks do not depend on which other samples are explained with it.
            low, high = self.init
            source = generator.device if generator is not None else device
            fields = [
                torch.rand(1, h * w, generator=generator, dtype=dtype, device=source)
                for h, w in shapes
            ]
            draw = torch.cat([f.expand(len(images), -1).flatten() for f in fields]).to(device)
            parameters = low + (high - low) * draw
        else:
            if not 0 < self.init < 1:
                raise ValueError(f"init mask value must lie in (0, 1), got {self.init}")
            parameters = self.constraint.inverse(
                torch.full((sum(counts),), float(self.init), dtype=dtype, device=device)
            )
        return parameters.detach().clone().requires_grad_(True)
