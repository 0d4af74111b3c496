"""HDM: Hierarchical Dynamic Masks (Peng, Yang, Liu & He, arXiv:2301.04970, 2023).

Only the abstract is public. It says: a *dynamic masks* (DM) module lets several
small-sized *benchmark* masks roughly learn the critical regions by optimisation; the
benchmark masks then *guide* the learning of large-sized *auxiliary* masks, whose
*superimposed* mask learns fine-grained importance and is less sensitive to adversarial
perturbation; HDM *concatenates* DM modules, each finding and fusing the evidence that
*remains* once the regions found so far are masked out, for more complete maps.

Every open choice is a named option of :class:`HDM`:

- DM module: the benchmark grids (``benchmark_sizes``) are optimised for
  ``benchmark_steps`` as in MDM; their mean upsampled mask ``G`` is the *guide*. The
  auxiliary grids (``auxiliary_sizes``) are then optimised for ``auxiliary_steps`` with
  ``guidance``:

  * ``"product"``: the mask applied to the image is ``G * m_aux`` (auxiliary masks refine
    only inside the region the benchmarks found);
  * ``"mean"``: the applied mask is ``(G + m_aux) / 2`` (auxiliary masks add detail on top);
  * ``"init"``: auxiliary masks start from ``G`` (averaged onto their grids) and train freely.

  The module's output (the superimposed mask) is the mean (``superimpose="mean"``) or the
  geometric mean (``"product"``) of the benchmark masks and the applied auxiliary masks.
- Chaining: stage ``k > 1`` explains the *remaining* image
  ``x_k = x * (1 - C) + baseline * C``, where ``C`` is the evidence covered so far, the
  pixel-wise maximum over earlier stages of their normalised map (``stage_masking="soft"``)
  or of its Otsu-thresholded binary mask (``"otsu"``). The stage keeps the remaining
  image's score (``stage_reference="remaining"``) or the original one (``"original"``).
- Stopping: ``r_k = (f(x_k) - f(b)) / (f(x) - f(b))`` is the share of the target's
  evidence (score above the baseline image ``b``) left in the remaining image; a sample
  stops (later stages contribute nothing) once ``r_k < stop_ratio``, and the loop ends
  when every sample has stopped or after ``stages`` stages.
- Fusion of the normalised stage maps ``D_k``: ``"max"`` (pixel-wise maximum), ``"sum"``,
  or ``"weighted"`` (``sum_k r_k D_k``, so a stage counts as much as the evidence left
  for it).

Defaults were chosen with ``research/hdm_defaults.py`` (results in
``research/results/hdm_defaults.json``): on its controlled task they give energy 0.97
inside the evidence, pointing 1.0, both-copies balance 0.92, deletion 0.027 and
insertion 0.905 (the configuration the search starts from: 0.21 / 1.0 / 0.97 / 0.032 /
0.900). There the first DM
module already finds both copies of the evidence (the CNN averages over positions), so
the chaining options (``stages``, ``stage_masking``, ``stage_reference``, ``fusion``,
``stop_ratio``) change the scores by less than their noise; ``stages=2`` is kept because
chaining is what defines HDM and costs little when the stop rule ends it. On ProtoPNet
prototype scores with the deletion term (docs/method-design.md, HDM's structure;
``benchmarks/results/hdm_structure_*``, ``hdm_stages_*``) one stage moved no mean metric by
more than 0.01, for 0.53-0.76 of the model passes, and the other options did not help there
either.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from hdm.base import Explainer
from hdm.engine import GridSize
from hdm.maps import STACKINGS, normalize_maps, otsu_thresholds, stack_masks
from hdm.mdm import consistency_optimizer
from hdm.perturbation import BASELINES, blend, make_baseline
from hdm.targets import Target

GUIDANCES = ("product", "mean", "init")
STAGE_MASKINGS = ("soft", "otsu")
STAGE_REFERENCES = ("remaining", "original")
FUSIONS = ("max", "sum", "weighted")


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


class HDM(Explainer):
    """Chained dynamic-mask modules: coarse benchmark masks guide fine auxiliary masks.

    Args:
        model: images -> output.
        benchmark_sizes: small grids learnt first (each ``n``, ``(h, w)`` or ``None``).
        auxiliary_sizes: larger grids guided by the benchmark masks.
        benchmark_steps: optimisation steps of the benchmark masks per stage.
        auxiliary_steps: optimisation steps of the auxiliary masks per stage.
        guidance: ``"product"``, ``"mean"`` or ``"init"`` (module docstring).
        superimpose: ``"mean"`` or ``"product"`` (geometric mean) of a module's masks.
        stages: maximum number of chained DM modules.
        stage_masking: ``"soft"`` or ``"otsu"``: how found evidence is removed.
        stage_reference: ``"remaining"`` or ``"original"``: the score a later stage keeps.
        stop_ratio: a sample stops once its remaining evidence ratio falls below this.
        fusion: ``"max"``, ``"sum"`` or ``"weighted"``.
        lr: learning rate.
        optimizer: ``"adam"``, ``"sgd"``, ``"rmsprop"`` or ``"rmsprop_tf"``.
        constraint: ``"sigmoid"`` or ``"clamp"``.
        temperature: sigmoid temperature.
        init: initial mask value of every cell.
        baseline: ``"zero"``, ``"mean"`` or ``"blur"``.
        blur_sigma: sigma in pixels of the ``"blur"`` baseline.
        fidelity: ``"abs"``, ``"squared"``, ``"drop"`` or ``"cross_entropy"``.
        fidelity_normalization: unit of the score difference: ``"none"``, ``"reference"``
            (the reference score) or ``"evidence"`` (reference minus baseline score).
        fidelity_weight: weight of the activation-consistency term.
        deletion_weight: weight of the deletion term (the image without the mask's region
            must lose the score; :mod:`hdm.engine`); 0 turns it off and halves the cost.
        area_weight: weight of the mean mask value.
        tv_weight: weight of the total variation of each grid.
        tv_beta: exponent of the total variation.
        mixed_precision: bfloat16 autocast of the model on CUDA or the CPU (off by default:
            not yet validated on a GPU; docs/performance.md).
        compile: ``torch.compile`` the masked forward (blend and model): ``True`` or a
            name in :data:`hdm.engine.COMPILE_SETTINGS`; off by default
            (:class:`hdm.engine.MaskOptimizer`).
        progress: tqdm bars over steps.
    """

    def __init__(
        self,
        model: Callable[[Tensor], Any],
        *,
        benchmark_sizes: Sequence[GridSize] = (8, 16),
        auxiliary_sizes: Sequence[GridSize] = (32, 48),
        benchmark_steps: int = 50,
        auxiliary_steps: int = 50,
        guidance: str = "init",
        superimpose: str = "product",
        stages: int = 2,
        stage_masking: str = "soft",
        stage_reference: str = "remaining",
        stop_ratio: float = 0.1,
        fusion: str = "weighted",
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
        area_weight: float = 3.0,
        tv_weight: float = 0.0,
        tv_beta: float = 1.0,
        mixed_precision: bool = False,
        compile: bool | str = False,
        progress: bool = False,
    ) -> None:
        super().__init__(model, progress=progress)
        _check("guidance", guidance, GUIDANCES)
        _check("stage_masking", stage_masking, STAGE_MASKINGS)
        _check("stage_reference", stage_reference, STAGE_REFERENCES)
        _check("fusion", fusion, FUSIONS)
        _check("superimpose", superimpose, STACKINGS)
        _check("baseline", baseline, BASELINES)
        if stages < 1:
            raise ValueError(f"stages must be >= 1, got {stages}")
        self.benchmark = consistency_optimizer(
            grid_sizes=benchmark_sizes,
            steps=benchmark_steps,
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
        self.auxiliary = dataclasses.replace(
            self.benchmark, grid_sizes=tuple(auxiliary_sizes), steps=auxiliary_steps
        )
        self.guidance = guidance
        self.superimpose = superimpose
        self.stages = stages
        self.stage_masking = stage_masking
        self.stage_reference = stage_reference
        self.stop_ratio = stop_ratio
        self.fusion = fusion
        self.baseline = baseline
        self.blur_sigma = blur_sigma

    def dynamic_masks(
        self,
        images: Tensor,
        baseline: Tensor,
        target: Target,
        reference: Tensor,
        baseline_score: Tensor,
        stage: int,
    ) -> Tensor:
        """One DM module: the superimposed mask ``(B, H, W)`` of benchmark and auxiliary masks."""
        label = f"HDM stage {stage + 1}"
        bench = self.benchmark.run(
            self.model,
            images,
            baseline,
            target,
            reference,
            baseline_score=baseline_score,
            progress=self.progress,
            description=f"{label} benchmark",
        )
        guide = bench.masks.mean(dim=0)
        options: dict[str, Any] = {}
        if self.guidance == "product":
            options["transform"] = lambda masks: masks * guide
        elif self.guidance == "mean":
            options["transform"] = lambda masks: (masks + guide) / 2
        else:
            options["init_masks"] = guide
        aux = self.auxiliary.run(
            self.model,
            images,
            baseline,
            target,
            reference,
            baseline_score=baseline_score,
            progress=self.progress,
            description=f"{label} auxiliary",
            **options,
        )
        return stack_masks(torch.cat([bench.masks, aux.effective]), self.superimpose)

    def explain(self, images: Tensor, target: Target) -> Tensor:
        baseline = make_baseline(images, self.baseline, self.blur_sigma)
        reference = self.reference_scores(images, target)
        with torch.no_grad():
            baseline_score = target.score(self.model(baseline)).to(images.dtype)
        evidence = reference - baseline_score
        evidence = torch.where(evidence.abs() < 1e-6, torch.full_like(evidence, 1e-6), evidence)
        covered = torch.zeros_like(images[:, 0])
        active = torch.ones_like(reference, dtype=torch.bool)
        fused = torch.zeros_like(covered)
        for stage in range(self.stages):
            if stage == 0:
                remaining, stage_reference, ratio = images, reference, torch.ones_like(reference)
            else:
                remaining = blend(images, baseline, 1 - covered)
                with torch.no_grad():
                    stage_reference = target.score(self.model(remaining)).to(images.dtype)
                ratio = (stage_reference - baseline_score) / evidence
                if self.stage_reference == "original":
                    stage_reference = reference
                active = active & (ratio >= self.stop_ratio)
                if not bool(active.any()):
                    break
            stage_map = normalize_maps(
                self.dynamic_masks(
                    remaining, baseline, target, stage_reference, baseline_score, stage
                )
            )
            weight = active.to(images.dtype)
            if self.fusion == "weighted":
                weight = weight * ratio.clamp(0, 1)
            contribution = weight[:, None, None] * stage_map
            fused = (
                torch.maximum(fused, contribution) if self.fusion == "max" else fused + contribution
            )
            if self.stage_masking == "otsu":
                stage_map = (stage_map > otsu_thresholds(stage_map)[:, None, None]).to(images.dtype)
            covered = torch.maximum(covered, stage_map)
        return fused
