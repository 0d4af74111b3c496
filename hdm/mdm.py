"""MDM: Multiple Dynamic Masks (Peng, Yang, Liu & He, arXiv:2207.08046, 2022).

Only the abstract is public. It says: mask vectors of *different sizes* are trained
under two constraints, *small mask values* and *activation consistency* (the masked image
keeps the target's activation), and the CAM *stacks* the masks of all scales. Here:

- every scale ``s`` is a grid of ``grid_sizes[s]`` cells with values ``m_s`` in [0, 1]
  (clamped, or ``sigmoid(w_s / T)``), bilinearly upsampled to the image;
- per sample and scale the loss is
  ``fidelity_weight * ((f(x_s) - f(x)) / (f(x) - f(b)))^2 + area_weight * mean(m_s)
  + tv_weight * TV(m_s)`` with ``x_s = m_s * x + (1 - m_s) * b``, ``b`` the baseline image
  and ``f`` the target's score (the fidelity kind and its unit are options);
- the map stacks the upsampled masks of all scales by their geometric (or arithmetic) mean.

All scales and samples are optimised together by :class:`hdm.engine.MaskOptimizer`.

Defaults were chosen with ``research/hdm_defaults.py`` (results in
``research/results/hdm_defaults.json``): on its controlled task they give energy 0.87
inside the evidence, pointing 1.0, both-copies balance 0.92, deletion 0.029 and
insertion 0.905, against 0.18 / 1.0 / 0.98 / 0.034 / 0.897 for the configuration the
search starts from (grids 4, 8, 16, sigmoid, zero baseline, absolute fidelity, area
weight 1, mean stacking). Grid counts are relative to the image (cells per side), so they carry over
to other image sizes; downstream tasks should re-tune ``area_weight`` and ``grid_sizes``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

from hdm.base import Explainer
from hdm.constraints import make_constraint
from hdm.engine import GridSize, MaskOptimizer
from hdm.fidelity import Fidelity
from hdm.maps import STACKINGS, stack_masks
from hdm.perturbation import BASELINES, make_baseline
from hdm.regularizers import MaskArea, Regularizer, TotalVariation
from hdm.targets import Target


def consistency_optimizer(
    *,
    grid_sizes: Sequence[GridSize],
    steps: int,
    lr: float,
    optimizer: str,
    constraint: str,
    temperature: float,
    init: float,
    fidelity: str,
    fidelity_normalization: str,
    fidelity_weight: float,
    area_weight: float,
    tv_weight: float,
    tv_beta: float,
    mixed_precision: bool,
    deletion_weight: float = 0.0,
    compile: bool | str = False,
) -> MaskOptimizer:
    """The engine set up for MDM's objective: keep the score, small (and smooth) masks.

    Shared by :class:`MDM` and the dynamic-mask modules of :class:`hdm.hierarchical.HDM`;
    the keywords are those of :class:`MDM`.
    """
    regularizers: list[Regularizer] = [MaskArea(area_weight)]
    if tv_weight:
        regularizers.append(TotalVariation(tv_weight, tv_beta))
    return MaskOptimizer(
        grid_sizes=tuple(grid_sizes),
        steps=steps,
        constraint=make_constraint(constraint, temperature),
        init=init,
        fidelity=Fidelity(fidelity, normalize=fidelity_normalization),
        fidelity_weight=fidelity_weight,
        deletion_weight=deletion_weight,
        regularizers=regularizers,
        optimizer=optimizer,
        lr=lr,
        mixed_precision=mixed_precision,
        compile=compile,
    )


class MDM(Explainer):
    """Multi-scale masks trained to keep the target's score with small values, then stacked.

    Args:
        model: images -> output.
        grid_sizes: the mask scales, each ``n`` (n x n cells), ``(h, w)`` or ``None`` (full
            resolution).
        steps: optimisation steps (all scales together).
        lr: learning rate.
        optimizer: ``"adam"``, ``"sgd"``, ``"rmsprop"`` or ``"rmsprop_tf"``.
        constraint: ``"sigmoid"`` (``m = sigmoid(w / temperature)``) or ``"clamp"``.
        temperature: sigmoid temperature.
        init: initial mask value of every cell.
        baseline: what masked-out pixels become: ``"zero"``, ``"mean"`` or ``"blur"``.
        blur_sigma: Gaussian sigma in pixels for the ``"blur"`` baseline.
        fidelity: ``"abs"``, ``"squared"``, ``"drop"`` or ``"cross_entropy"``
            (:class:`hdm.fidelity.Fidelity`).
        fidelity_normalization: unit of the score difference: ``"none"``, ``"reference"``
            (the unmasked score) or ``"evidence"`` (unmasked minus baseline score).
        fidelity_weight: weight of the activation-consistency term.
        deletion_weight: weight of the deletion term (the image without the mask's region
            must lose the score; :mod:`hdm.engine`); 0 turns it off and halves the cost.
        area_weight: weight of the mean mask value (small-mask constraint).
        tv_weight: weight of the total variation of each grid.
        tv_beta: exponent of the total variation.
        stacking: ``"mean"`` or ``"product"`` (geometric mean) over scales.
        mixed_precision: bfloat16 autocast of the model on CUDA or the CPU (off by default:
            not yet validated on a GPU; docs/performance.md).
        compile: ``torch.compile`` the masked forward (blend and model): ``True`` or a
            name in :data:`hdm.engine.COMPILE_SETTINGS`; off by default
            (:class:`hdm.engine.MaskOptimizer`).
        progress: tqdm bar over steps.
    """

    def __init__(
        self,
        model: Callable[[Tensor], Any],
        *,
        grid_sizes: Sequence[GridSize] = (16, 32),
        steps: int = 100,
        lr: float = 0.05,
        optimizer: str = "adam",
        constraint: str = "clamp",
        temperature: float = 1.0,
        init: float = 0.5,
        baseline: str = "blur",
        blur_sigma: float = 10.0,
        fidelity: str = "squared",
        fidelity_normalization: str = "evidence",
        fidelity_weight: float = 1.0,
        deletion_weight: float = 0.0,
        area_weight: float = 5.0,
        tv_weight: float = 0.0,
        tv_beta: float = 1.0,
        stacking: str = "product",
        mixed_precision: bool = False,
        compile: bool | str = False,
        progress: bool = False,
    ) -> None:
        super().__init__(model, progress=progress)
        if stacking not in STACKINGS:
            raise ValueError(f"stacking must be one of {STACKINGS}, got {stacking!r}")
        if baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
        self.optimization = consistency_optimizer(
            grid_sizes=grid_sizes,
            steps=steps,
            lr=lr,
            optimizer=optimizer,
            constraint=constraint,
            temperature=temperature,
            init=init,
            fidelity=fidelity,
            fidelity_normalization=fidelity_normalization,
            fidelity_weight=fidelity_weight,
            deletion_weight=deletion_weight,
            area_weight=area_weight,
            tv_weight=tv_weight,
            tv_beta=tv_beta,
            mixed_precision=mixed_precision,
            compile=compile,
        )
        self.baseline = baseline
        self.blur_sigma = blur_sigma
        self.stacking = stacking

    def explain(self, images: Tensor, target: Target) -> Tensor:
        baseline = make_baseline(images, self.baseline, self.blur_sigma)
        reference = self.reference_scores(images, target)
        result = self.optimization.run(
            self.model,
            images,
            baseline,
            target,
            reference,
            progress=self.progress,
            description="MDM",
        )
        return stack_masks(result.masks, self.stacking)
