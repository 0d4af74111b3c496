"""A training run: the phase schedule with checkpoints, resume and model selection.

The stages come from :func:`prototypes.training.plan_schedule` (warm-up, joint, push, last
layer, as the original ``main.py``), after optional ``pretrain`` stages that warm-start a
trunk without ImageNet weights (:mod:`prototypes.backbone_pretraining`). After every stage
the whole training state is written atomically to ``checkpoint.pt``, so an interrupted run
continues with ``--resume`` and ends exactly where an uninterrupted one would: each stage
shuffles with a generator seeded from (seed, stage index), and the global RNG state is saved
too.

Model selection uses the validation split only, and only among projected models (right after
a push and during the last-layer epochs that follow it), whose prototypes are real patches:
the validation accuracy for single-label data sets, the validation mean AUROC (over classes)
for multi-label ones.

``model.architecture`` chooses the model, its loss and its push (ProtoPNet:
:func:`prototypes.protopnet_loss`, :func:`prototypes.push`; XProtoNet:
:func:`prototypes.xprotonet_loss`, :func:`prototypes.push_xprotonet`); both share the phases
and optimisers of :mod:`prototypes.training`. XProtoNet's transformation loss draws from
torch's global RNG (the CUDA one on a GPU): both RNG states are saved in every checkpoint, so
resuming stays exact.

Under torchrun (:mod:`protoexplain.distributed`, docs/distributed.md) every stage trains a
``DistributedDataParallel`` wrapper of the model, built after the stage's
:func:`~prototypes.training.set_phase` so that it averages the gradients of exactly the
parameters the phase trains (prototypes and last layer included). Each process takes
``data.batch_size / W`` samples per step from a ``DistributedSampler`` seeded with the
stage's seed, so that a step of all processes sees the global batch one process would; the
global RNG of process ``r`` (augmentations, XProtoNet's transformations) is seeded at every
training stage from (seed, stage, r) (:func:`process_seed`), which also makes a resume on the
same number of processes exact. Batch norm normalises with each process's own batch by
default (its running statistics are rank 0's, which DDP broadcasts before every forward
pass); ``training.sync_batchnorm`` uses the statistics of the global batch (SyncBatchNorm,
CUDA only). Validation runs whole on every process. Push searches each process's share of the
push set and agrees on the single-process projection
(:func:`prototypes.push.nearest_across_processes`). Only rank 0 writes the run directory
and checkpoints; the optimiser states are the same on every process, so a checkpoint
resumes on any number of processes.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from protoexplain import distributed
from protoexplain.checkpoint import CHECKPOINT_NAME, load_model_state, save_checkpoint
from protoexplain.config import Config, ConfigError, loss_section, save_config
from protoexplain.config_schema import to_dict
from protoexplain.data.labels import class_names_of, is_multi_label
from protoexplain.evaluation import ScoreRecorder
from protoexplain.factory import (
    build_model,
    build_run_data,
    make_loader,
    resolve_device,
    skipped_images,
    use_deterministic_kernels,
)
from protoexplain.frozen_trunk_cache import FrozenTrunkCache, check_cacheable
from protoexplain.run_start import resume_point
from prototypes import (
    LossCoefficients,
    ProjectionRecord,
    XProtoNetLossCoefficients,
    protopnet_loss,
    push,
    push_xprotonet,
    xprotonet_loss,
)
from prototypes.backbone_pretraining import BackbonePretrainer, pretraining_loss
from prototypes.training import (
    BatchLoss,
    NonFiniteLossError,
    PhaseOptimizer,
    Stage,
    build_optimizer,
    plan_schedule,
    run_epoch,
    set_phase,
)

log = logging.getLogger("protoexplain")

PROJECTED_STAGES = ("push", "last_layer")


class TrainingStopped(RuntimeError):
    """Training stopped on a non-finite loss; the last good checkpoint is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: ``checkpoint.pt`` keeps the last completed stage
    (``completed`` stages of ``total``; none when ``completed`` is 0)."""

    def __init__(self, completed: int, total: int, checkpoint: Path) -> None:
        super().__init__(f"interrupted after {completed} of {total} stages")
        self.completed = completed
        self.total = total
        self.checkpoint = checkpoint


@dataclass(frozen=True)
class ArchitectureTraining:
    """What trains one architecture: its objective, its push and its loss coefficients."""

    loss_fn: BatchLoss
    push: Callable[..., list[ProjectionRecord]]
    coefficients: type


TRAINING_PARTS = {
    "protopnet": ArchitectureTraining(protopnet_loss, push, LossCoefficients),
    "xprotonet": ArchitectureTraining(xprotonet_loss, push_xprotonet, XProtoNetLossCoefficients),
}
"""``model.architecture`` -> its training parts."""


@dataclass
class TrainingResult:
    """What a finished run hands to evaluation: the selected model, its projection, the
    history, and the selected stage with its validation score (``selection_metric`` is
    ``val_accuracy`` or, for multi-label data, ``val_auroc``)."""

    model: torch.nn.Module
    records: list[ProjectionRecord]
    history: list[dict[str, Any]]
    best_stage: int
    selection_metric: str
    best_val_score: float
    config_changes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """The config changes that resuming accepted (``stage``: where the run was resumed,
    ``key``, ``old``, ``new``); empty for a run never resumed with a change."""
    skipped_images: dict[str, list[dict[str, str]]] = dataclasses.field(default_factory=dict)
    """Per split, the unreadable images that ``on_bad_image: skip`` left out (file and
    reason); empty when none were."""


def loss_coefficients(config: Config) -> Any:
    """The loss coefficients of ``model.architecture`` from ``training.loss``."""
    architecture = config.model.architecture
    if not isinstance(config.training.loss, loss_section(architecture)):
        raise ConfigError(f"training.loss is a {type(config.training.loss).__name__}, not the "
                          f"loss coefficients of model.architecture '{architecture}' (load "
                          "configs with protoexplain.config.load_config)")
    return TRAINING_PARTS[architecture].coefficients(**to_dict(config.training.loss))


def _stage_seed(seed: int, stage_index: int) -> int:
    return seed * 1_000_003 + stage_index


def process_seed(seed: int, stage_index: int, rank: int) -> int:
    """The seed of process ``rank``'s global RNG in training stage ``stage_index`` of a run
    on several processes (up to 65,536): distinct for every (stage, process)."""
    return _stage_seed(seed, stage_index) * 65_536 + rank


def _parallel(module: torch.nn.Module, device: torch.device, *, pretraining: bool
              ) -> DistributedDataParallel | None:
    """``module`` wrapped for a training stage on several processes (None on one): the
    parameters that require gradients now are the ones whose gradients it averages. The
    warm start trains only the trunk and its head, so its wrapper lets the rest go unused."""
    if not distributed.is_distributed():
        return None
    return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None,
                                   find_unused_parameters=pretraining)


def _use_sync_batchnorm(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` with SyncBatchNorm layers (``training.sync_batchnorm``) when it trains on
    several processes; a ConfigError on the CPU, where torch's SyncBatchNorm does not run."""
    if not distributed.is_distributed():
        return model
    if device.type != "cuda":
        raise ConfigError("'training.sync_batchnorm' needs CUDA devices (torch's SyncBatchNorm "
                          "does not run on the CPU); set it to false for CPU processes")
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def _format_stage(stage, total: int, stats: dict[str, float], val: dict[str, float],
                  seconds: float) -> str:
    """One log line: the stage, every loss term ``stats`` has, accuracies (per decision for
    multi-label data), the validation AUROC when computed, and the time."""
    parts = [f"stage {stage.index + 1:>3}/{total} {stage.kind:<10} epoch {stage.epoch:>3}"]
    if "loss" in stats:
        terms = " ".join(f"{k} {v:.3f}" for k, v in stats.items()
                         if k not in ("loss", "accuracy"))
        parts.append(f"loss {stats['loss']:.3f} ({terms})")
        parts.append(f"train acc {stats['accuracy']:.3f}")
    if "mean_distance" in stats:
        parts.append(f"pushed, mean distance {stats['mean_distance']:.4f}")
    parts.append(f"val acc {val['accuracy']:.3f}")
    if "auroc" in val:
        parts.append(f"val auroc {val['auroc']:.3f}")
    parts.append(f"{seconds:.1f} s")
    return " | ".join(parts)


def _validate(model: torch.nn.Module, loader: Any, coefs: Any, loss_fn: BatchLoss,
              device: torch.device, classes: list[str] | None,
              forward: Callable[[torch.Tensor], Any] | None = None) -> dict[str, float]:
    """Validation loss terms and accuracy, plus ``auroc`` (the mean over classes whose AUROC
    is defined; NaN when none is) when ``classes`` are given (multi-label data)."""
    if classes is None:
        return run_epoch(model, loader, None, coefs, train=False, device=device,
                         loss_fn=loss_fn, forward=forward)
    recorder = ScoreRecorder(loss_fn)
    stats = run_epoch(model, loader, None, coefs, train=False, device=device,
                      loss_fn=recorder, forward=forward)
    mean = recorder.auroc(classes).mean
    stats["auroc"] = float("nan") if mean is None else mean
    return stats


def _is_better(score: float, best: dict[str, Any] | None) -> bool:
    """The first projected stage is always taken; later ones when their score is higher
    (an undefined score, NaN, never is)."""
    return best is None or score > best["val_score"]


def train(config: Config, run_dir: str | Path, *, resume: bool = False,
          progress: bool = True) -> TrainingResult:
    """Train, push and select the model ``config`` describes, writing into ``run_dir``.

    Raises :class:`TrainingStopped` (naming the stage and step) when a loss is not finite,
    and :class:`TrainingInterrupted` on Ctrl-C; ``checkpoint.pt`` then still holds the last
    completed stage. With ``resume``, a directory without a checkpoint, or a config that
    differs from the checkpoint's in more than the keys that may change, is a
    :class:`~protoexplain.run_lock.RunDirError` (:func:`protoexplain.run_start.resume_point`).
    """
    run_dir = Path(run_dir)
    checkpoint_path = run_dir / CHECKPOINT_NAME
    device = resolve_device(config.device)  # under torchrun: joins the process group
    main = distributed.is_main_process()
    world = distributed.world_size()
    batch_size = distributed.per_process_batch(config.data.batch_size)
    resumed = resume_point(run_dir, config) if resume else None
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    progress = progress and main
    use_deterministic_kernels(device, config.deterministic)
    torch.manual_seed(config.seed)

    data = build_run_data(config)
    check_cacheable(config, data)
    model = build_model(config, data.num_classes, data.image_size)
    if config.training.sync_batchnorm:
        model = _use_sync_batchnorm(model, device)
    model = model.to(device)
    parts = TRAINING_PARTS[config.model.architecture]
    multi_label = is_multi_label(data.train)
    selection_metric = "val_auroc" if multi_label else "val_accuracy"
    classes = class_names_of(data.val) if multi_label else None
    stages = schedule(config)
    lrs = config.training.learning_rates
    coefs = loss_coefficients(config)
    if getattr(coefs, "alignment", 0):  # ProtoPNet's feature-alignment term
        model.keep_shallow_map()
    optimizers = {phase: build_optimizer(model, phase, lrs)
                  for phase in ("warm", "joint", "last_layer")}
    pretrainer = BackbonePretrainer(model)
    optimizers["pretrain"] = PhaseOptimizer(torch.optim.Adam(
        pretrainer.parameters_to_train(), lr=config.training.pretrain_lr))

    state: dict[str, Any] = {"next_stage": 0, "history": [], "records": [],
                             "best": None, "config_changes": []}
    if resumed is not None:
        training_state = resumed.training_state
        load_model_state(model, training_state["model"], checkpoint_path)
        load_model_state(pretrainer.head, training_state["pretrain_head"], checkpoint_path)
        for phase, optimizer in optimizers.items():
            optimizer.load_state_dict(training_state["optimizers"][phase])
        torch.set_rng_state(training_state["rng"])
        if training_state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(training_state["cuda_rng"])
        state = {key: training_state[key] for key in ("next_stage", "history", "records", "best")}
        state["config_changes"] = list(training_state.get("config_changes", []))
        log.info("resuming %s at stage %d/%d on %d process%s (it ran on %d)", run_dir,
                 state["next_stage"] + 1, len(stages), world, "" if world == 1 else "es",
                 training_state.get("world_size", 1))
        if resumed.changes:
            state["config_changes"] += [{"stage": state["next_stage"], "key": key, "old": old,
                                         "new": new} for key, old, new in resumed.changes]
            log.info("resumed with changed settings (recorded in metrics.json and "
                     "config.yaml): %s", "; ".join(f"{key} {old!r} -> {new!r}"
                                                  for key, old, new in resumed.changes))
            if main:
                save_config(config, run_dir / "config.yaml")
    elif main:
        save_config(config, run_dir / "config.yaml")
    state["world_size"] = world

    val_loader = make_loader(data.val, config.data.eval_batch_size, config)
    push_loader = make_loader(data.push, config.data.eval_batch_size, config, shard=True)
    reduce = distributed.all_reduce_sum if world > 1 else None
    trunk_cache = (FrozenTrunkCache(model, data, config, device, progress=progress)
                   if config.training.cache_frozen_trunk else None)
    stage_bar = tqdm(total=len(stages), initial=state["next_stage"], desc="training",
                     unit="stage", disable=not progress)
    saved = state["next_stage"]  # the stages checkpoint.pt holds
    try:
        for stage in stages[state["next_stage"]:]:
            started = time.perf_counter()
            cached = trunk_cache is not None and trunk_cache.covers(stage.kind)
            if stage.kind == "push":
                records = parts.push(model, push_loader, progress=progress)
                state["records"] = [record.to_dict() for record in records]
                distances = [record.distance for record in records]
                stats = {"mean_distance": sum(distances) / len(distances)}
            else:
                pretraining = stage.kind == "pretrain"
                set_phase(model, "joint" if pretraining else stage.kind)
                seed = _stage_seed(config.seed, stage.index)
                loader = (trunk_cache.train_batches(batch_size, seed) if cached else
                          make_loader(data.train, batch_size, config, shard=True,
                                      shuffle_seed=seed))
                trainee = pretrainer if pretraining else model
                forward = (model.forward_from_trunk if cached else
                           _parallel(trainee, device, pretraining=pretraining))
                if world > 1:
                    torch.manual_seed(process_seed(config.seed, stage.index,
                                                   distributed.rank()))
                try:
                    stats = run_epoch(trainee, loader,
                                      optimizers[stage.kind].optimizer, coefs, train=True,
                                      device=device, progress=progress, epoch=stage.epoch,
                                      loss_fn=pretraining_loss if pretraining else parts.loss_fn,
                                      forward=forward,
                                      reduce=reduce)
                except NonFiniteLossError as error:
                    stage_bar.close()
                    raise TrainingStopped(
                        f"{error}; training stopped in stage {stage.index + 1} ({stage.kind}, "
                        f"epoch {stage.epoch}); the last good checkpoint is {checkpoint_path}"
                    ) from error
                optimizers[stage.kind].after_epoch()
            if stage.kind == "pretrain":
                val = run_epoch(pretrainer, val_loader, None, coefs, train=False, device=device,
                                loss_fn=pretraining_loss)
            elif cached:
                val = _validate(model, trunk_cache.val_batches(), coefs, parts.loss_fn, device,
                                classes, forward=model.forward_from_trunk)
            else:
                val = _validate(model, val_loader, coefs, parts.loss_fn, device, classes)
            if trunk_cache is not None:
                trunk_cache.after_stage(stage.kind)
            seconds = time.perf_counter() - started
            entry = {"stage": stage.index, "kind": stage.kind, "epoch": stage.epoch,
                     "seconds": round(seconds, 3),
                     **{f"train_{k}": v for k, v in stats.items()},
                     **{f"val_{k}": v for k, v in val.items()}}
            state["history"].append(entry)
            log.info(_format_stage(stage, len(stages), stats, val, seconds))
            score = val["auroc"] if multi_label else val["accuracy"]
            if stage.kind in PROJECTED_STAGES and _is_better(score, state["best"]):
                state["best"] = {"stage": stage.index, "val_score": score,
                                 "model": copy.deepcopy(model.state_dict()),
                                 "records": list(state["records"])}
            state["next_stage"] = stage.index + 1
            if main:
                save_checkpoint(checkpoint_path,
                                _checkpoint_payload(config, model, pretrainer, optimizers, state))
            saved = state["next_stage"]
            stage_bar.update(1)
    except KeyboardInterrupt:  # the checkpoint keeps the last completed stage
        stage_bar.close()
        raise TrainingInterrupted(saved, len(stages), checkpoint_path) from None
    stage_bar.close()

    best = state["best"]
    if best is None:
        raise TrainingStopped("the schedule has no push stage, so there is no projected model "
                              "to select; set training.push_start <= training.epochs")
    model.load_state_dict(best["model"])
    records = [ProjectionRecord.from_dict(record) for record in best["records"]]
    return TrainingResult(model=model, records=records, history=state["history"],
                          best_stage=best["stage"], selection_metric=selection_metric,
                          best_val_score=best["val_score"],
                          config_changes=state["config_changes"],
                          skipped_images=skipped_images(data))


def schedule(config: Config) -> list[Stage]:
    """``training.pretrain_epochs`` warm-start stages, then the original's schedule."""
    training = config.training
    pretrain = training.pretrain_epochs
    stages = plan_schedule(epochs=training.epochs, warm_epochs=training.warm_epochs,
                           push_start=training.push_start, push_every=training.push_every,
                           last_layer_epochs=training.last_layer_epochs,
                           final_push=training.final_push)
    return ([Stage("pretrain", epoch, epoch) for epoch in range(pretrain)]
            + [Stage(s.kind, s.epoch, s.index + pretrain) for s in stages])


def _checkpoint_payload(config: Config, model: torch.nn.Module, pretrainer: BackbonePretrainer,
                        optimizers: dict, state: dict[str, Any]) -> dict[str, Any]:
    """The selected model for evaluation plus everything needed to resume."""
    best = state["best"]
    return {
        "config": to_dict(config),
        "image_size": int(model.image_size[0]),
        "model": best["model"] if best else model.state_dict(),
        "records": best["records"] if best else state["records"],
        "selected_stage": best["stage"] if best else None,
        "training_state": {
            "model": model.state_dict(),
            "pretrain_head": pretrainer.head.state_dict(),
            "optimizers": {phase: opt.state_dict() for phase, opt in optimizers.items()},
            "rng": torch.get_rng_state(),
            "cuda_rng": (torch.cuda.get_rng_state_all()
                         if next(model.parameters()).is_cuda else None),
            **state,
        },
    }
