"""``protoexplain prune``: the original ProtoPNet's prototype pruning, as a new run directory.

Source: cfchen-duke/ProtoPNet ``prune.py`` and ``run_pruning.py``. For every prototype the k
nearest patches of the unaugmented training set are found, one per image, over *all* classes
(:func:`prototypes.nearest_patches`); the prototype is removed when fewer than ``threshold``
of them come from images of its own class (the original's k = 6, threshold = 3). Then the
last layer alone is fine-tuned with the run's last-layer optimiser and loss (Adam, the
original's cross-entropy + cluster + separation + L1 objective), on the augmented training
set.

Differences from the original, on purpose: the original fine-tunes for 100 epochs and saves
a model after each, leaving the choice to the user; here ``epochs`` defaults to the run's
``training.last_layer_epochs`` and the model kept is the one with the best validation
accuracy among the pruned model before fine-tuning and after each epoch (the validation
split, never the test split, as training's model selection).

The pruned run is a new directory (default ``RUN_DIR-pruned``): the source run is never
changed. It holds ``pruning.json`` (every prototype's decision: its class, the classes of its
k nearest training patches, how many are its own, kept or removed, and its id in the pruned
model), ``metrics.json`` with ``test_accuracy_before_pruning``,
``test_accuracy_after_pruning`` (before fine-tuning) and ``test_accuracy`` (the pruned,
fine-tuned model), and the source's projection records of the kept prototypes, renumbered.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from protoexplain.atomic_io import atomic_write_json
from protoexplain.checkpoint import CHECKPOINT_NAME, save_checkpoint
from protoexplain.config import ConfigError, save_config
from protoexplain.config_schema import to_dict
from protoexplain.evaluation import classification_metrics
from protoexplain.factory import build_dataset, make_loader
from protoexplain.run_dir import LoadedRun, load_run
from protoexplain.training_run import loss_coefficients
from prototypes import (
    ProtoPNet,
    build_optimizer,
    nearest_patches,
    pruning_decisions,
    run_epoch,
    select_prototypes,
    set_phase,
)

log = logging.getLogger("protoexplain")

__all__ = ["PRUNING_RECORD", "default_pruned_dir", "prune_run"]

PRUNING_RECORD = "pruning.json"


def default_pruned_dir(run_dir: Path) -> Path:
    """``RUN_DIR-pruned``, or ``RUN_DIR-pruned-2``... when taken."""
    candidate = run_dir.with_name(f"{run_dir.name}-pruned")
    number = 1
    while candidate.exists():
        number += 1
        candidate = run_dir.with_name(f"{run_dir.name}-pruned-{number}")
    return candidate


def _fine_tune(run: LoadedRun, model: ProtoPNet, epochs: int, progress: bool
               ) -> tuple[ProtoPNet, list[dict[str, Any]], int]:
    """Last-layer epochs; returns the model with the best validation accuracy (epoch 0:
    none trained), the history and that epoch."""
    config, device = run.config, run.device
    train_set = build_dataset(config, "train", augment=True)
    val_loader = make_loader(build_dataset(config, "val", augment=False),
                             config.data.eval_batch_size, config)
    coefs = loss_coefficients(config)
    set_phase(model, "last_layer")
    optimizer = build_optimizer(model, "last_layer", config.training.learning_rates)
    val = run_epoch(model, val_loader, None, coefs, train=False, device=device)
    history = [{"epoch": 0, "val_accuracy": val["accuracy"]}]
    best = (val["accuracy"], 0, model.last_layer.weight.detach().clone())
    for epoch in range(1, epochs + 1):
        loader = make_loader(train_set, config.data.batch_size, config,
                             shuffle_seed=config.seed * 1_000_003 + 900_000 + epoch)
        stats = run_epoch(model, loader, optimizer.optimizer, coefs, train=True, device=device,
                          progress=progress, epoch=epoch)
        optimizer.after_epoch()
        val = run_epoch(model, val_loader, None, coefs, train=False, device=device)
        history.append({"epoch": epoch, "train_loss": stats["loss"],
                        "train_accuracy": stats["accuracy"], "val_accuracy": val["accuracy"]})
        log.info("pruned model, last-layer epoch %d/%d: train acc %.3f, val acc %.3f", epoch,
                 epochs, stats["accuracy"], val["accuracy"])
        if val["accuracy"] > best[0]:
            best = (val["accuracy"], epoch, model.last_layer.weight.detach().clone())
    with torch.no_grad():
        model.last_layer.weight.copy_(best[2])
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model.eval(), history, best[1]


def prune_run(run_dir: str | Path, out: str | Path | None = None, *, k: int = 6,
              threshold: int = 3, epochs: int | None = None, device: str | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Prune the run in ``run_dir`` into ``out`` (see the module docstring); returns the
    pruned run's metrics."""
    from protoexplain.pipeline import write_projection
    from protoexplain.run_lock import run_lock

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else default_pruned_dir(run_dir)
    if (out / CHECKPOINT_NAME).exists():
        raise ConfigError(f"{out} already holds a run; choose another --out")
    if k < 1 or threshold < 0:
        raise ConfigError(f"prune: k must be >= 1 and threshold >= 0, got k={k}, "
                          f"threshold={threshold}")
    run = load_run(run_dir, device)
    if not isinstance(run.model, ProtoPNet):
        raise ConfigError(f"{run_dir} holds a {type(run.model).__name__}; pruning is "
                          "ProtoPNet's (single-label data)")
    config = run.config
    epochs = config.training.last_layer_epochs if epochs is None else epochs
    started = time.perf_counter()
    push_set = build_dataset(config, "train", augment=False)
    test_set = build_dataset(config, "test", augment=False)
    before = classification_metrics(run.model, test_set, config, run.device,
                                     progress=progress)["test_accuracy"]
    nearest = nearest_patches(run.model, make_loader(push_set, config.data.eval_batch_size,
                                                     config), k, progress=progress)
    decisions = pruning_decisions(nearest, run.model.prototype_classes, threshold)
    keep = [d.prototype for d in decisions if not d.removed]
    if not keep:
        raise ConfigError(f"prune: every prototype fails the rule (k={k}, threshold="
                          f"{threshold}); nothing would be left")
    missing = sorted(set(range(run.model.num_classes))
                     - set(run.model.prototype_classes[keep].tolist()))
    if missing:
        log.warning("after pruning, classes %s have no prototype of their own", missing)
    pruned = select_prototypes(run.model, keep)
    after = classification_metrics(pruned, test_set, config, run.device,
                                   progress=progress)["test_accuracy"]
    log.info("pruning removes %d of %d prototypes (k=%d, threshold=%d); test accuracy %.4f "
             "-> %.4f before fine-tuning", len(decisions) - len(keep), len(decisions), k,
             threshold, before, after)
    pruned, history, best_epoch = _fine_tune(run, pruned, epochs, progress)
    final = classification_metrics(pruned, test_set, config, run.device, progress=progress)
    new_id = {old: new for new, old in enumerate(keep)}
    records = []
    for record in sorted(run.records, key=lambda r: r.prototype):
        if record.prototype in new_id:
            row = record.to_dict()
            row["prototype"] = new_id[record.prototype]
            records.append(row)
    metrics = {**final, "test_accuracy_before_pruning": before,
               "test_accuracy_after_pruning": after,
               "num_prototypes_before_pruning": len(decisions), "num_prototypes": len(keep),
               "pruning_seconds": round(time.perf_counter() - started, 1)}
    pruning = {"source_run": str(run_dir), "k": k, "threshold": threshold,
               "rule": "a prototype is removed when fewer than 'threshold' of its k nearest "
                       "training patches (one per image, all classes) come from its class",
               "removed": [d.prototype for d in decisions if d.removed],
               "last_layer_epochs": epochs, "selected_epoch": best_epoch,
               "history": history,
               "prototypes": [{**d.to_dict(), "new_id": new_id.get(d.prototype)}
                              for d in decisions]}
    out.mkdir(parents=True, exist_ok=True)
    with run_lock(out, "protoexplain prune"):
        save_config(config, out / "config.yaml")
        save_checkpoint(out / CHECKPOINT_NAME, {
            "config": to_dict(config), "image_size": int(pruned.image_size[0]),
            "model": {key: value.cpu() for key, value in pruned.state_dict().items()},
            "records": records, "selected_stage": None, "pruned_from": str(run_dir)})
        atomic_write_json(out / PRUNING_RECORD, pruning)
        atomic_write_json(out / "metrics.json", metrics)
        if records:
            write_projection(load_run(out, device), progress=progress)
    log.info("pruned run %s: %d prototypes, test accuracy %.4f (before pruning %.4f)", out,
             len(keep), final["test_accuracy"], before)
    return metrics
