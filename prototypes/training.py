"""The ProtoPNet training phases: which parameters train, with which optimiser, in which order.

Source: cfchen-duke/ProtoPNet ``train_and_test.py`` (``warm_only``, ``joint``, ``last_only``,
``_train_or_test``), ``main.py`` (optimiser groups, the epoch loop) and ``settings.py``
(learning rates, schedule). These are pure, composable functions: the caller orchestrates
stages, checkpoints and evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from prototypes.losses import LossCoefficients, protopnet_loss
from prototypes.model import ProtoPNet

__all__ = ["PHASES", "BatchLoss", "LearningRates", "LossCoefficients", "NonFiniteLossError",
           "PhaseOptimizer", "Stage", "build_optimizer", "plan_schedule", "run_epoch",
           "set_phase"]

Phase = Literal["warm", "joint", "last_layer"]
PHASES: tuple[str, ...] = ("warm", "joint", "last_layer")

BatchLoss = Callable[[Any, torch.Tensor, nn.Module, Any], dict[str, torch.Tensor]]
"""A training objective ``(output, labels, model, coefs) -> {"total": ..., term: ...}`` with
scalar terms, such as :func:`~prototypes.losses.protopnet_loss` or
:func:`~prototypes.xprotonet_losses.xprotonet_loss`."""


def set_phase(model: ProtoPNet | nn.Module, phase: Phase) -> None:
    """Set ``requires_grad`` for ``phase`` exactly as the original.

    Works for any model with ``features``, ``add_on_layers``, ``prototype_vectors`` and
    ``last_layer`` (ProtoPNet; XProtoNet, whose ``add_on_layers`` hold its feature and
    occurrence modules).

    ============  ========  ======  ==========  ==========
    phase         features  add-on  prototypes  last layer
    ============  ========  ======  ==========  ==========
    warm          frozen    train   train       train*
    joint         train     train   train       train*
    last_layer    frozen    frozen  frozen      train
    ============  ========  ======  ==========  ==========

    (*) The original leaves the last layer trainable in these phases, but its warm and joint
    optimisers do not contain it, so it only changes in the last-layer phase.
    """
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; choose one of {PHASES}")
    trains = {"features": phase == "joint", "add_on_layers": phase != "last_layer",
              "prototype_vectors": phase != "last_layer", "last_layer": True}
    for name, flag in trains.items():
        part = getattr(model, name)
        for parameter in part.parameters() if isinstance(part, nn.Module) else [part]:
            parameter.requires_grad_(flag)


@dataclass(frozen=True)
class LearningRates:
    """Optimiser settings of the original (``settings.py`` and ``main.py``).

    Joint: Adam groups features (``joint_features``, weight decay), add-on layers
    (``joint_add_on``, weight decay) and prototypes (``joint_prototypes``, no decay), with a
    step decay of ``joint_gamma`` every ``joint_step_size`` joint epochs. Warm: Adam groups
    add-on layers (``warm_add_on``, weight decay) and prototypes (``warm_prototypes``). Last
    layer: Adam on the last layer (``last_layer``, no decay).
    """

    joint_features: float = 1e-4
    joint_add_on: float = 3e-3
    joint_prototypes: float = 3e-3
    joint_step_size: int = 5
    joint_gamma: float = 0.1
    warm_add_on: float = 3e-3
    warm_prototypes: float = 3e-3
    last_layer: float = 1e-4
    weight_decay: float = 1e-3


@dataclass
class PhaseOptimizer:
    """A phase's optimiser and, for the joint phase, its learning-rate schedule.

    Call :meth:`after_epoch` once after every epoch trained in this phase.
    """

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None

    def after_epoch(self) -> None:
        """Advance the learning-rate schedule by one epoch (no-op without one)."""
        if self.scheduler is not None:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])


def build_optimizer(model: ProtoPNet | nn.Module, phase: Phase,
                    lrs: LearningRates = LearningRates()) -> PhaseOptimizer:
    """The Adam optimiser of ``phase`` with the original's parameter groups (``main.py``),
    for any model :func:`set_phase` accepts.

    The joint schedule reproduces the original's learning rates: ``main.py`` steps its
    ``StepLR(step_size, gamma)`` at the *start* of every joint epoch, so joint epoch ``j``
    (counting from 0) runs at ``lr * gamma ** ((j + 1) // step_size)`` (with the defaults:
    4 epochs at the base rate, then 5 at a tenth, ...). Here the same factor is a
    ``LambdaLR`` advanced by :meth:`PhaseOptimizer.after_epoch`.
    """
    decay = lrs.weight_decay
    if phase == "warm":
        groups = [
            {"params": model.add_on_layers.parameters(), "lr": lrs.warm_add_on,
             "weight_decay": decay},
            {"params": [model.prototype_vectors], "lr": lrs.warm_prototypes},
        ]
        return PhaseOptimizer(torch.optim.Adam(groups))
    if phase == "joint":
        groups = [
            {"params": model.features.parameters(), "lr": lrs.joint_features,
             "weight_decay": decay},
            {"params": model.add_on_layers.parameters(), "lr": lrs.joint_add_on,
             "weight_decay": decay},
            {"params": [model.prototype_vectors], "lr": lrs.joint_prototypes},
        ]
        optimizer = torch.optim.Adam(groups)
        step, gamma = lrs.joint_step_size, lrs.joint_gamma
        if step < 1:
            raise ValueError(f"joint_step_size must be >= 1, got {step}")
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: gamma ** ((epoch + 1) // step))
        return PhaseOptimizer(optimizer, scheduler)
    if phase == "last_layer":
        return PhaseOptimizer(torch.optim.Adam(
            [{"params": model.last_layer.parameters(), "lr": lrs.last_layer}]))
    raise ValueError(f"unknown phase {phase!r}; choose one of {PHASES}")


@dataclass(frozen=True)
class Stage:
    """One step of the schedule: ``kind`` is ``warm``, ``joint``, ``push`` or ``last_layer``;
    ``epoch`` the training epoch it belongs to; ``index`` its position in the schedule."""

    kind: str
    epoch: int
    index: int


def plan_schedule(epochs: int, *, warm_epochs: int = 5, push_start: int = 10,
                  push_every: int = 10, last_layer_epochs: int = 20,
                  final_push: bool = False) -> list[Stage]:
    """The original's epoch loop (``main.py``) as a list of stages.

    For each epoch ``e`` in ``range(epochs)``: a ``warm`` epoch if ``e < warm_epochs``,
    else a ``joint`` epoch; then, if ``e >= push_start`` and ``e % push_every == 0``, a
    ``push`` followed by ``last_layer_epochs`` last-layer epochs. (The original runs no
    last-layer epochs with the ``linear`` activation: pass 0.) With ``final_push``, a push
    and its last-layer epochs are appended after the last epoch when it was not a push
    epoch, so the schedule ends with projected prototypes (the original does not).
    Defaults are ``settings.py``'s.
    """
    if epochs < 1 or warm_epochs < 0 or push_every < 1 or last_layer_epochs < 0:
        raise ValueError("need epochs >= 1, warm_epochs >= 0, push_every >= 1 and "
                         f"last_layer_epochs >= 0; got {epochs}, {warm_epochs}, {push_every}, "
                         f"{last_layer_epochs}")
    kinds: list[tuple[str, int]] = []

    def push_at(epoch: int) -> None:
        kinds.append(("push", epoch))
        kinds.extend(("last_layer", epoch) for _ in range(last_layer_epochs))

    for epoch in range(epochs):
        kinds.append(("warm" if epoch < warm_epochs else "joint", epoch))
        if epoch >= push_start and epoch % push_every == 0:
            push_at(epoch)
    if final_push and kinds[-1][0] in PHASES[:2]:
        push_at(epochs - 1)
    return [Stage(kind, epoch, index) for index, (kind, epoch) in enumerate(kinds)]


class NonFiniteLossError(RuntimeError):
    """A training loss was NaN or infinite; raised before the optimiser step, so the
    model's parameters are those before the offending batch (batch norms in train mode have
    already seen it in their running statistics)."""

    def __init__(self, step: int, epoch: int | None, terms: dict[str, float]) -> None:
        self.step = step
        self.epoch = epoch
        self.terms = terms
        where = f"step {step}" + ("" if epoch is None else f" of epoch {epoch}")
        values = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
        super().__init__(f"non-finite loss at {where} ({values}); the weights were not "
                         "updated with it (try lower learning rates)")


def _set_training_mode(model: nn.Module, train: bool, update_frozen_batchnorm: bool) -> None:
    model.train(train)
    if not train or update_frozen_batchnorm:
        return
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            parameters = list(module.parameters(recurse=False))
            if parameters and not any(p.requires_grad for p in parameters):
                module.eval()


def run_epoch(model: nn.Module, loader: Iterable[dict[str, Any]],
              optimizer: torch.optim.Optimizer | None, coefs: Any,
              *, train: bool, device: torch.device | str, progress: bool = False,
              epoch: int | None = None, update_frozen_batchnorm: bool = False,
              loss_fn: BatchLoss = protopnet_loss,
              forward: Callable[[torch.Tensor], Any] | None = None,
              reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
    """One pass over ``loader``, training with ``optimizer`` when ``train``.

    Args:
        model: the model, already on ``device`` and set up with :func:`set_phase`.
        loader: yields dicts with ``image`` (B, 3, H, W) in [0, 1] and ``label``: (B,)
            integer classes, or (B, K) multi-hot float labels for multi-label models.
        optimizer: the phase's optimiser (``PhaseOptimizer.optimizer``); ``None`` to evaluate.
        coefs: loss weights, as ``loss_fn`` takes them (:class:`LossCoefficients` for the
            default).
        train: train (grad, optimiser steps, train mode) or evaluate (no grad, eval mode).
        device: where batches go.
        progress: show a tqdm bar.
        epoch: only used in messages.
        update_frozen_batchnorm: the original trains in ``model.train()`` mode, so batch norms
            of frozen parts (the trunk in warm-up and last-layer epochs) still update their
            running statistics. By default they are kept in eval mode instead, so frozen
            parts do not change at all (and pushed prototypes stay exact patches during the
            last-layer epochs); ``True`` reproduces the original.
        loss_fn: the objective, called as ``loss_fn(output, labels, model, coefs)``
            (default: ProtoPNet's).
        forward: what computes the outputs from images (default: ``model``), e.g. a
            ``DistributedDataParallel`` wrapper of ``model``, whose backward pass averages
            the gradients over processes (terms the loss takes from ``model`` directly, such as
            the last layer's L1, reach the same parameters and are averaged with them).
        reduce: sums a tensor over processes (e.g. an all-reduce), when each process passes
            its own part of the data: the returned means, and the check for a non-finite
            loss, are then over all processes' samples, the same on every process.
            ``None``: ``loader`` is all the data.

    Returns:
        Sample-weighted means of the loss terms (``loss`` is the total, then the other terms
        ``loss_fn`` returns: for ProtoPNet ``cross_entropy``, ``cluster``, ``separation``,
        ``avg_separation``, ``l1``) and ``accuracy``: the fraction of images whose largest
        logit is their class, or, with multi-hot labels, the fraction of (image, class)
        decisions that are right at logit 0 (probability 0.5).

    Raises:
        NonFiniteLossError: when training and a batch's total loss is not finite (checked
            before the optimiser step).
    """
    if train and optimizer is None:
        raise ValueError("run_epoch(train=True) needs an optimizer")
    _set_training_mode(model, train, update_frozen_batchnorm)
    sums: dict[str, torch.Tensor] = {}
    correct = torch.zeros((), device=device)
    samples = 0
    description = "train" if train else "evaluate"
    if epoch is not None:
        description += f" (epoch {epoch})"
    with torch.set_grad_enabled(train):
        for step, batch in enumerate(tqdm(loader, desc=description, disable=not progress,
                                          leave=False)):
            images = batch["image"].to(device)
            labels = batch["label"].to(device)
            output = (forward or model)(images)
            terms = loss_fn(output, labels, model, coefs)
            if train:
                finite = torch.isfinite(terms["total"].detach())
                if reduce is not None:  # every process stops when any process's loss is bad
                    finite = reduce((~finite).float().view(1)) == 0
                if not finite.all():
                    raise NonFiniteLossError(step, epoch,
                                             {k: float(v.detach()) for k, v in terms.items()})
                model.zero_grad(set_to_none=True)
                terms["total"].backward()
                optimizer.step()
            size = labels.shape[0]
            for name, value in terms.items():
                key = "loss" if name == "total" else name
                sums[key] = sums.get(key, 0) + value.detach() * size
            if labels.ndim == 2:
                decisions = (output.logits > 0) == (labels > 0.5)
                correct += decisions.float().mean(dim=1).sum()
            else:
                correct += (output.logits.argmax(dim=1) == labels).sum()
            samples += size
    names = list(sums)
    if reduce is not None:
        totals = reduce(torch.stack([*(torch.as_tensor(sums[name], device=device).float()
                                       for name in names), correct.float(),
                                     torch.tensor(float(samples), device=device)]))
        sums = dict(zip(names, totals[:-2], strict=True))
        correct, samples = totals[-2], int(totals[-1])
    if samples == 0:
        raise ValueError("run_epoch: the loader yielded no samples")
    stats = {name: float(sums[name]) / samples for name in names}
    stats["accuracy"] = float(correct) / samples
    return stats
