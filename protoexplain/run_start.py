"""Starting or resuming a run in a directory without losing another run.

- A new run refuses a directory that holds run files (:data:`RUN_FILES`; a ``train.log``
  alone, left by a start that failed before training, does not count), unless asked to
  overwrite; then exactly those files are removed and every other file is left alone.
- ``--resume`` needs a checkpoint to continue; a missing directory or checkpoint is an
  error, never a fresh start.
- ``--resume`` continues the run the checkpoint holds: the config may differ from the
  checkpoint's only in the keys whose rule allows it (:func:`protoexplain.config_schema.
  may_change_on_resume`: ``device``, ``data.num_workers``, ``training.cache_frozen_trunk``
  and the ``localization`` section, which change where or how fast the run computes or what
  is measured after training, not what is trained). Any other difference is refused with
  the list of differences; an allowed one is logged, recorded in the checkpoint's
  ``training_state["config_changes"]`` and in ``metrics.json``, and ``config.yaml`` is
  rewritten.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from protoexplain.checkpoint import CHECKPOINT_NAME, load_checkpoint, require_fields
from protoexplain.config import Config
from protoexplain.config_schema import differences, may_change_on_resume, to_dict
from protoexplain.run_lock import LOCK_NAME, RunDirError

log = logging.getLogger("protoexplain")

__all__ = ["RUN_FILES", "ResumePoint", "prepare_new_run", "resume_point", "run_files"]

RUN_FILES = ("config.yaml", CHECKPOINT_NAME, "metrics.json", "projection.json", "history.json",
             "benchmark.json", "benchmark.md", "report.html", "report", "train.log",
             "prototypes", "explanations", "masker.pt")
"""What the commands write into a run directory: files, and folders (``prototypes/``,
``explanations/``, ``report/``). ``--overwrite`` removes these and nothing else."""

LOG_NAME = "train.log"
"""The log of ``train``; alone (a start that failed before training) it does not make a
directory hold a run, and a new run appends to it."""

TRAINING_STATE_FIELDS = ("model", "pretrain_head", "optimizers", "rng", "next_stage", "history",
                         "records", "best")
"""What ``--resume`` reads from a checkpoint's ``training_state``."""


def run_files(run_dir: str | Path) -> list[str]:
    """The names of :data:`RUN_FILES` present in ``run_dir``."""
    run_dir = Path(run_dir)
    return [name for name in RUN_FILES if (run_dir / name).exists()]


def prepare_new_run(run_dir: str | Path, *, overwrite: bool = False) -> None:
    """Make sure a new run may write ``run_dir``: refuse a directory that holds run files
    (a :class:`RunDirError` naming them), or with ``overwrite`` remove them."""
    run_dir = Path(run_dir)
    found = run_files(run_dir)
    if not overwrite and found in ([], [LOG_NAME]):
        return  # a train.log alone is the log of a start that failed before training
    if not overwrite:
        advice = ("pass --resume to continue it, " if CHECKPOINT_NAME in found else "")
        raise RunDirError(f"{run_dir} already holds a run ({', '.join(found)}); {advice}"
                          "pass --overwrite to replace it, or --out to start a new one "
                          "elsewhere")
    for name in found:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    log.info("--overwrite: removed %s from %s", ", ".join(found), run_dir)


def check_resumable(run_dir: str | Path) -> None:
    """Refuse ``--resume`` when ``run_dir`` has no checkpoint to continue."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"--resume: {run_dir} does not exist, so there is nothing to resume "
                          "(check --out)")
    if not (run_dir / CHECKPOINT_NAME).is_file():
        found = [name for name in run_files(run_dir) if name != LOCK_NAME]
        held = f" (it holds {', '.join(found)})" if found else ""
        raise RunDirError(f"--resume: {run_dir} holds no {CHECKPOINT_NAME}, so there is "
                          f"nothing to resume{held}; start the run again without --resume"
                          + (" and with --overwrite" if found else ""))


class ResumePoint:
    """What a resumed run continues from: the checkpoint and the allowed config changes."""

    def __init__(self, payload: dict[str, Any], changes: list[tuple[str, Any, Any]]) -> None:
        self.payload = payload
        self.training_state: dict[str, Any] = payload["training_state"]
        self.changes = changes
        """(key, value in the run, value now) for each allowed difference."""


def _describe(changes: list[tuple[str, Any, Any]], limit: int = 8) -> str:
    shown = [f"{key}: {old!r} in the run, {new!r} now" for key, old, new in changes[:limit]]
    more = f"; and {len(changes) - limit} more" if len(changes) > limit else ""
    return "; ".join(shown) + more


def resume_point(run_dir: str | Path, config: Config) -> ResumePoint:
    """Read ``run_dir``'s checkpoint for ``--resume`` and compare its config with
    ``config``: a difference outside the keys that may change is a :class:`RunDirError`
    listing every difference."""
    run_dir = Path(run_dir)
    check_resumable(run_dir)
    path = run_dir / CHECKPOINT_NAME
    # read onto the CPU: load_state_dict copies each tensor to where its model or optimizer
    # lives, and the random generators take their states as CPU byte tensors
    payload = load_checkpoint(path, map_location="cpu")
    require_fields(payload, path, ("config", "training_state"))
    require_fields(payload["training_state"], path, TRAINING_STATE_FIELDS,
                   within="training_state")
    found = differences(payload["config"], to_dict(config))
    refused = [change for change in found if not may_change_on_resume(Config, change[0])]
    if refused:
        allowed = ", ".join(_resume_keys())
        raise RunDirError(f"--resume: the config differs from the one {run_dir} was trained "
                          f"with ({_describe(refused)}); pass the run's config and --set "
                          f"values (its config.yaml), or start a new run with --out. Only "
                          f"{allowed} may change on resume")
    return ResumePoint(payload, found)


def _resume_keys() -> list[str]:
    """The top-level or section keys that may change on resume, for messages."""
    import dataclasses

    names = []

    def walk(cls: type, prefix: str) -> None:
        import typing

        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            key = f"{prefix}{field.name}"
            if may_change_on_resume(Config, key):
                names.append(key if not dataclasses.is_dataclass(hints[field.name])
                             else f"{key}.*")
            elif dataclasses.is_dataclass(hints[field.name]):
                walk(hints[field.name], f"{key}.")

    walk(Config, "")
    return names
