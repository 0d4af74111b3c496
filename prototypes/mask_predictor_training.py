"""Training a :class:`prototypes.mask_predictor.MaskPredictor` once per model.

The objective is that of the optimised masks (:mod:`hdm.engine`), made amortized as Dabkowski
& Gal ("Real time image saliency for black box classifiers", NeurIPS 2017, Eq. 4 and Sec. 4)
do for classes: for a pair's predicted mask ``m`` (on the decoder's grid), its upsampled mask
``M``, image ``x`` and baseline ``b`` (what removed pixels become, :func:`hdm.perturbation.
make_baseline`), the loss of the pair is

    fidelity_weight * ((s(b + M (x - b)) - s0) / (s0 - s_b))^2          (keep the score)
  + deletion_weight * max(0, (s(b + (1 - M)(x - b)) - s_b) / (s0 - s_b))^2   (lose it)
  + area_weight * mean(m) + tv_weight * TV_beta(m)                       (small, smooth)
  [+ supervision_weight * BCE(M, HDM's map)   on a fixed subset of pairs]

with ``s`` the prototype's score (:class:`prototypes.localization.scores.PairScores`: its
similarity at the position where it peaks in ``x``, or its pooled similarity), ``s0`` its
score on ``x`` and ``s_b`` on ``b``. The terms are those of :mod:`hdm`
(:class:`hdm.fidelity.Fidelity` ``"squared"`` with ``"evidence"`` normalisation,
:func:`hdm.fidelity.deletion_loss`, :class:`hdm.regularizers.MaskArea`,
:class:`hdm.regularizers.TotalVariation`), so the predictor learns to output the masks that HDM
and MDM optimise for; Dabkowski & Gal use a log-probability for the first term and a power of
the probability for the second, which a prototype's similarity (not a probability) has no
use for. Defaults follow HDM's prototype defaults (blurred baseline, area weight 3, deletion
weight 1, the peak score); each pair's fidelity and deletion terms are capped at 1 (the
whole evidence), so that pairs whose score barely differs from their baseline's do not
dominate the batch (``loss_cap``).

Training pairs are training images with prototypes of their own class (the pairs the
localization benchmark and push explain), ``prototypes_per_image`` per image. A step passes
the model over the step's images once without gradient (features, similarity maps, peaks),
once over their baselines, and once over the ``2 N`` kept and removed images of its ``N``
pairs with a backward pass to the predictor.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from hdm.fidelity import Fidelity, deletion_loss
from hdm.hooks import explaining
from hdm.maps import resize_maps
from hdm.perturbation import BASELINES, blend, make_baseline
from hdm.regularizers import MaskArea, TotalVariation
from hdm.targets import Target, slice_output
from prototypes.localization.scores import SCORES, PairScores
from prototypes.mask_predictor import MaskPredictor
from prototypes.model import ProtoPNet

__all__ = ["MaskerTrainingConfig", "MaskerTrainingState", "PairLoss", "masker_loss",
           "pair_rows", "train_mask_predictor"]


def _positive(name: str, value: Any, *, integer: bool = False, zero: bool = False) -> None:
    kind = int if integer else (int, float)
    low_ok = value >= 0 if zero else value > 0
    if isinstance(value, bool) or not isinstance(value, kind) or not low_ok:
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'} "
                         f"{'>= 0' if zero else '> 0'}, got {value!r}")


@dataclass(frozen=True)
class MaskerTrainingConfig:
    """How the predictor is trained (module docstring for the loss).

    Attributes:
        steps: optimisation steps.
        images_per_step: training images per step.
        prototypes_per_image: own-class prototypes drawn per image (at most the class's).
        lr: Adam's learning rate.
        baseline, blur_sigma: what removed pixels become (:data:`hdm.perturbation.BASELINES`).
        score: the score kept and removed, one of :data:`prototypes.localization.scores.SCORES`.
        fidelity_weight, deletion_weight, area_weight, tv_weight, tv_beta: the loss weights.
        loss_cap: each pair's fidelity and deletion terms (before their weights) are capped at
            this (None: no cap). Their unit is the pair's evidence ``s0 - s_b``; a pair whose
            score barely differs from its baseline's has a tiny unit and a huge term, which an
            optimised mask does not mind (each pair is optimised alone) but which dominates a
            predictor's batch mean. Without the cap the batch means of the terms reached 18 and
            27 and the masks were large (SyntheticParts) or unfaithful (FashionComposites); with
            1, fidelity rose from 0.22 to 0.30 and from 0.05 to 0.46 of the score removed
            (docs/amortized-masks.md).
        supervision_pairs: training pairs localized once with HDM (the ``hdm`` method's
            defaults) whose maps supervise the predictor (0: none).
        supervision_weight: weight of that term.
        supervision_batch: supervised pairs per step.
        rare_classes: classes whose training images are kept only with probability
            ``rare_share`` (to measure how the predictor does on classes and prototypes it
            saw less often).
        rare_share: that probability (0: those classes are never seen).
        seed: seeds the order of images, the prototypes drawn and the supervised pairs; with
            the step, so that a resumed training continues exactly.
        num_workers: data-loading processes.
        checkpoint_every: steps between saves (and at the end).
    """

    steps: int = 150
    images_per_step: int = 16
    prototypes_per_image: int = 2
    lr: float = 2e-3
    baseline: str = "blur"
    blur_sigma: float = 10.0
    score: str = "peak"
    fidelity_weight: float = 1.0
    deletion_weight: float = 1.0
    area_weight: float = 3.0
    tv_weight: float = 0.0
    tv_beta: float = 1.0
    loss_cap: float | None = 1.0
    supervision_pairs: int = 0
    supervision_weight: float = 1.0
    supervision_batch: int = 16
    rare_classes: list[int] = field(default_factory=list)
    rare_share: float = 1.0
    seed: int = 0
    num_workers: int = 0
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        for name in ("steps", "supervision_pairs", "num_workers"):
            _positive(name, getattr(self, name), integer=True, zero=True)
        for name in ("images_per_step", "prototypes_per_image", "supervision_batch",
                     "checkpoint_every"):
            _positive(name, getattr(self, name), integer=True)
        for name in ("lr",):
            _positive(name, getattr(self, name))
        for name in ("blur_sigma", "fidelity_weight", "deletion_weight", "area_weight",
                     "tv_weight", "tv_beta", "supervision_weight"):
            _positive(name, getattr(self, name), zero=True)
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if self.loss_cap is not None:
            _positive("loss_cap", self.loss_cap)
        if not 0 <= self.rare_share <= 1:
            raise ValueError(f"rare_share must lie in [0, 1], got {self.rare_share!r}")


@dataclass
class MaskerTrainingState:
    """Where a training stands: the step reached, the optimiser's state, the supervised pairs
    (dataset indices, prototype ids and HDM's maps) and the record (losses by step, seconds)."""

    step: int = 0
    optimizer: dict[str, Any] | None = None
    supervision: dict[str, Tensor] | None = None
    record: dict[str, Any] = field(default_factory=lambda: {"seconds": 0.0, "losses": []})


@dataclass
class PairLoss:
    """The loss terms, each ``(N,)`` per pair (weighted), and their sum."""

    fidelity: Tensor
    deletion: Tensor
    area: Tensor
    smoothness: Tensor

    @property
    def total(self) -> Tensor:
        return self.fidelity + self.deletion + self.area + self.smoothness


def pair_rows(output: Any, index: Tensor) -> Any:
    """A model output (a dataclass such as ``ProtoPNetOutput``) with its per-image tensors
    (those with one row per image) indexed by ``index``: one row per pair."""
    rows = int(output.similarities.shape[0])
    changes = {f.name: getattr(output, f.name)[index] for f in dataclasses.fields(output)
               if isinstance(getattr(output, f.name), Tensor)
               and getattr(output, f.name).dim() > 0 and getattr(output, f.name).shape[0] == rows}
    return dataclasses.replace(output, **changes)


def masker_loss(model: ProtoPNet, grid: Tensor, logits: Tensor, images: Tensor,
                baseline: Tensor, scores: PairScores, baseline_score: Tensor,
                config: MaskerTrainingConfig) -> PairLoss:
    """The loss terms of ``N`` pairs (module docstring).

    Args:
        model: the frozen model.
        grid: ``(N, h, w)`` predicted masks in [0, 1] on the decoder's grid.
        logits: ``(N, h, w)`` their logits (what the regularisers call parameters).
        images, baseline: ``(N, C, H, W)`` each pair's image and its baseline.
        scores: the pairs' score (its ``reference``: ``s0``).
        baseline_score: ``(N,)`` the score of each pair's baseline image.
        config: the weights.
    """
    count = grid.shape[0]
    masks = resize_maps(grid, tuple(images.shape[-2:]))
    deleting = config.deletion_weight > 0
    applied = torch.stack([masks, 1 - masks]) if deleting else masks[None]
    with explaining(model):
        output = model(blend(images, baseline, applied))
    rows = applied.shape[0] * count
    target = Target(scores, count, images.device)
    kept = slice_output(output, 0, count, rows)
    fidelity = Fidelity("squared", "evidence")(target, kept, scores.reference, baseline_score, 1)
    deletion = torch.zeros_like(fidelity)
    if deleting:
        removed = target.score(slice_output(output, count, rows, rows))
        deletion = deletion_loss(removed, scores.reference, baseline_score, 1)
    if config.loss_cap is not None:
        fidelity = fidelity.clamp(max=config.loss_cap)
        deletion = deletion.clamp(max=config.loss_cap)
    return PairLoss(fidelity=config.fidelity_weight * fidelity,
                    deletion=config.deletion_weight * deletion,
                    area=MaskArea(config.area_weight)(logits, grid),
                    smoothness=TotalVariation(config.tv_weight, config.tv_beta)(logits, grid))


def _images_and_labels(items: list[dict[str, Any]]) -> tuple[Tensor, Tensor]:
    labels = [item["label"] for item in items]
    if any(isinstance(label, Tensor) and label.dim() > 0 for label in labels):
        raise ValueError("the mask predictor trains on single-label data sets (an int label "
                         "per image)")
    return (torch.stack([item["image"] for item in items]),
            torch.tensor([int(label) for label in labels]))


def _step_batches(length: int, config: MaskerTrainingConfig, start: int) -> list[list[int]]:
    """The dataset indices of every step from ``start`` on: a fresh permutation per pass over
    the data, drawn from the seed and the pass number (so a resumed training sees the same
    images as an uninterrupted one)."""
    size = min(config.images_per_step, length)
    per_pass = length // size
    batches = []
    for step in range(start, config.steps):
        epoch, position = divmod(step, per_pass)
        order = torch.randperm(length, generator=torch.Generator().manual_seed(
            config.seed * 100_003 + epoch))
        batches.append(order[position * size:(position + 1) * size].tolist())
    return batches


def _draw_pairs(model: ProtoPNet, labels: Tensor, config: MaskerTrainingConfig, step: int
                ) -> tuple[Tensor, Tensor]:
    """``(image_index, prototype_ids)`` of a step's pairs: ``prototypes_per_image`` distinct
    own-class prototypes per image, images of ``rare_classes`` kept with ``rare_share``."""
    generator = torch.Generator().manual_seed(config.seed * 100_003 + 7 * step + 1)
    identity = model.prototype_class_identity.detach().cpu()
    own = identity.t()[labels]  # (I, P)
    count = min(config.prototypes_per_image, int(own.sum(dim=1).min()))
    ids = torch.multinomial(own, count, generator=generator)  # (I, count), without replacement
    keep = torch.ones(len(labels), dtype=torch.bool)
    if config.rare_classes:
        rare = torch.isin(labels, torch.tensor(config.rare_classes))
        keep = ~rare | (torch.rand(len(labels), generator=generator) < config.rare_share)
    image_index = torch.arange(len(labels)).repeat_interleave(count)
    chosen = keep.repeat_interleave(count)
    return image_index[chosen], ids.reshape(-1)[chosen]


def _supervision(model: ProtoPNet, dataset: Dataset, config: MaskerTrainingConfig,
                 device: torch.device, progress: bool) -> dict[str, Tensor]:
    """The supervised pairs: the first ``supervision_pairs`` pairs of the first steps'
    draws, localized with the ``hdm`` method (its prototype defaults)."""
    from prototypes.localization import localize

    indices, prototype_ids = [], []
    for step, batch in enumerate(_step_batches(len(dataset), config, 0)):
        _, labels = _images_and_labels([dataset[i] for i in batch])
        image_index, ids = _draw_pairs(model, labels, config, step)
        indices += [batch[i] for i in image_index.tolist()]
        prototype_ids += ids.tolist()
        if len(indices) >= config.supervision_pairs:
            break
    indices = indices[:config.supervision_pairs]
    prototype_ids = prototype_ids[:config.supervision_pairs]
    maps = []
    for start in tqdm(range(0, len(indices), 16), desc="HDM maps for supervision",
                      disable=not progress, leave=False):
        images, _ = _images_and_labels([dataset[i] for i in indices[start:start + 16]])
        ids = torch.tensor(prototype_ids[start:start + 16], device=device)
        maps.append(localize(model, images.to(device), ids, method="hdm").maps.cpu())
    return {"indices": torch.tensor(indices), "prototype_ids": torch.tensor(prototype_ids),
            "maps": torch.cat(maps) if maps else torch.zeros(0)}


def _baseline_scores(model: ProtoPNet, baseline: Tensor, image_index: Tensor,
                     scores: PairScores) -> Tensor:
    with torch.no_grad(), explaining(model):
        return scores(pair_rows(model(baseline), image_index))


def _supervised_loss(model: ProtoPNet, predictor: MaskPredictor, dataset: Dataset,
                     supervision: dict[str, Tensor], step: int, config: MaskerTrainingConfig,
                     device: torch.device) -> Tensor:
    """Binary cross-entropy of the predicted masks against HDM's maps, on a cycling window of
    ``supervision_batch`` supervised pairs."""
    total = len(supervision["indices"])
    take = (torch.arange(config.supervision_batch) + step * config.supervision_batch) % total
    images, _ = _images_and_labels([dataset[int(i)] for i in supervision["indices"][take]])
    ids = supervision["prototype_ids"][take].to(device)
    masks = predictor(model, images.to(device), ids)
    target = supervision["maps"][take].to(masks)
    return F.binary_cross_entropy(masks.clamp(1e-6, 1 - 1e-6), target)


def train_mask_predictor(model: ProtoPNet, dataset: Dataset, predictor: MaskPredictor,
                         config: MaskerTrainingConfig, *,
                         state: MaskerTrainingState | None = None,
                         save: Callable[[MaskerTrainingState], None] | None = None,
                         progress: bool = True) -> MaskerTrainingState:
    """Train ``predictor`` for ``model`` (frozen) on ``dataset`` (training images, items with
    ``image`` in [0, 1] and an int ``label``), from ``state`` (a resumed training) on.

    ``save`` is called with the state every ``checkpoint_every`` steps and at the end. The
    model and the predictor must be on the same device. Returns the final state, whose
    ``record`` holds the seconds spent (the HDM supervision's included) and the mean loss
    terms of every ``checkpoint_every`` steps.
    """
    if not isinstance(model, ProtoPNet):
        raise ValueError(f"the mask predictor is trained for a ProtoPNet, got "
                         f"{type(model).__name__}")
    if len(dataset) == 0:
        raise ValueError("the training set is empty")
    state = state or MaskerTrainingState()
    device = next(model.parameters()).device
    started = time.perf_counter()
    if config.supervision_pairs and state.supervision is None:
        state.supervision = _supervision(model, dataset, config, device, progress)
    optimizer = torch.optim.Adam(predictor.parameters(), lr=config.lr)
    if state.optimizer is not None:
        optimizer.load_state_dict(state.optimizer)
    batches = _step_batches(len(dataset), config, state.step)
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=_images_and_labels,
                        num_workers=config.num_workers)
    sums = torch.zeros(5, dtype=torch.float64)
    seen = 0
    predictor.train()
    bar = tqdm(loader, desc="training the mask predictor", initial=state.step,
               total=config.steps, disable=not progress)
    for step, (images, labels) in enumerate(bar, start=state.step):
        images = images.to(device)
        image_index, ids = _draw_pairs(model, labels, config, step)
        if len(ids) == 0:
            state.step = step + 1
            continue
        image_index, ids = image_index.to(device), ids.to(device)
        baseline = make_baseline(images, config.baseline, config.blur_sigma)
        found = predictor.features(model, images, ids, image_index)
        scores = PairScores(model, images, ids, config.score,
                            output=pair_rows(found.output, image_index))
        baseline_score = _baseline_scores(model, baseline, image_index, scores)
        logits = predictor.logits(model, found)
        grid = torch.sigmoid(logits)
        terms = masker_loss(model, grid, logits, images[image_index], baseline[image_index],
                            scores, baseline_score, config)
        loss = terms.total.mean()
        supervised = torch.zeros((), device=device)
        if state.supervision is not None and len(state.supervision["indices"]):
            supervised = _supervised_loss(model, predictor, dataset, state.supervision, step,
                                          config, device)
            loss = loss + config.supervision_weight * supervised
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sums += torch.stack([terms.fidelity.mean(), terms.deletion.mean(), terms.area.mean(),
                             terms.smoothness.mean(), supervised]).detach().cpu().double()
        seen += 1
        state.step = step + 1
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if state.step % config.checkpoint_every == 0 or state.step == config.steps:
            means = (sums / max(seen, 1)).tolist()
            state.record["losses"].append({"step": state.step, **dict(zip(
                ("fidelity", "deletion", "area", "smoothness", "supervision"), means,
                strict=True))})
            sums.zero_()
            seen = 0
            state.record["seconds"] += time.perf_counter() - started
            started = time.perf_counter()
            state.optimizer = optimizer.state_dict()
            if save is not None:
                save(state)
    predictor.eval()
    state.record["seconds"] += time.perf_counter() - started
    state.optimizer = optimizer.state_dict()
    return state
