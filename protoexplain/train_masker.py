"""``protoexplain train-masker RUN_DIR``: train the amortized mask predictor of a run once and
store it in the run as ``masker.pt``, for the localization method ``amortized``.

``masker.pt`` holds (never a pickled module) the predictor's state dict and description
(``predictor``, ``predictor_description``), the resolved settings (``config``: ``predictor.*``
of :class:`prototypes.mask_predictor.MaskPredictorConfig` and ``training.*`` of
:class:`prototypes.mask_predictor_training.MaskerTrainingConfig`), the step reached, the
optimiser's state and the supervised pairs (for ``--resume``), and the training ``record``:
seconds, model passes (forward and backward images, counted on the model by
:func:`protoexplain.metrics.cost.counting_passes`) and the loss terms by step. The benchmark
reads the record to report what the predictor cost to train, and after how many pairs it
has paid for itself against HDM (:func:`add_training_cost`).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from protoexplain.checkpoint import (
    CheckpointError,
    load_checkpoint,
    require_fields,
    save_checkpoint,
)
from protoexplain.config import ConfigError, apply_override, parse_override
from protoexplain.config_schema import build, differences, to_dict
from protoexplain.factory import build_dataset
from protoexplain.metrics.cost import PassCount, counting_passes
from protoexplain.run_dir import LoadedRun
from protoexplain.run_lock import RunDirError, run_lock
from prototypes import ProtoPNet
from prototypes.mask_predictor import MaskPredictor, MaskPredictorConfig
from prototypes.mask_predictor_training import (
    MaskerTrainingConfig,
    MaskerTrainingState,
    train_mask_predictor,
)

log = logging.getLogger("protoexplain")

__all__ = ["MASKER_NAME", "MaskerConfig", "add_training_cost", "attach_masker", "load_masker",
           "masker_config", "train_masker"]

MASKER_NAME = "masker.pt"
"""The predictor's file inside a run directory."""

AMORTIZED = "amortized"
"""The localization method that uses the predictor."""

RESUMABLE_CHANGES = ("training.steps",)
"""Settings ``--resume`` may change (to train a finished predictor longer)."""


@dataclass
class MaskerConfig:
    """``train-masker``'s settings, set with ``--set predictor.KEY=VALUE`` and
    ``--set training.KEY=VALUE``."""

    predictor: MaskPredictorConfig = field(default_factory=MaskPredictorConfig)
    training: MaskerTrainingConfig = field(default_factory=MaskerTrainingConfig)


def masker_config(overrides: list[str], base: dict[str, Any] | None = None) -> MaskerConfig:
    """The settings: ``base`` (a saved config tree) or the defaults, with ``overrides``
    (``key.path=value``) applied; an unknown key or a bad value is a one-line ConfigError
    naming it."""
    tree = copy.deepcopy(base) if base is not None else {}
    for text in overrides:
        apply_override(tree, *parse_override(text))
    source = "train-masker --set" if overrides else "train-masker settings"
    return build(MaskerConfig, tree, source=source)


def _masker_path(run_dir: Path) -> Path:
    return Path(run_dir) / MASKER_NAME


def _read(path: Path) -> dict[str, Any]:
    saved = load_checkpoint(path)
    require_fields(saved, path, ("predictor", "predictor_description", "config", "step",
                                 "record"))
    return saved


def _predictor(model: ProtoPNet, saved: dict[str, Any], path: Path) -> MaskPredictor:
    config = masker_config([], saved["config"])
    predictor = MaskPredictor(model, config.predictor)
    if predictor.description() != saved["predictor_description"]:
        raise CheckpointError(f"{path} was trained for another model (its predictor reads "
                              f"{saved['predictor_description']}, this run's model gives "
                              f"{predictor.description()}); train it again with "
                              "'protoexplain train-masker RUN_DIR --overwrite'")
    try:
        predictor.load_state_dict(saved["predictor"])
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not fit its predictor settings "
                              f"({str(error).splitlines()[0][:200]})") from None
    return predictor


def load_masker(run_dir: str | Path, model: torch.nn.Module, device: torch.device | str
                ) -> tuple[MaskPredictor, dict[str, Any]]:
    """The run's trained predictor (eval mode, on ``device``) and its training record.

    Raises ConfigError naming ``protoexplain train-masker`` when the run has none, and
    CheckpointError when it is unfinished or does not fit the model."""
    path = _masker_path(Path(run_dir))
    if not path.is_file():
        raise ConfigError(f"localization method '{AMORTIZED}' needs the run's mask predictor, "
                          f"and {path} does not exist: train it with 'protoexplain "
                          f"train-masker {run_dir}'")
    saved = _read(path)
    steps = saved["config"]["training"]["steps"]
    if saved["step"] < steps:
        raise CheckpointError(f"{path} is unfinished ({saved['step']} of {steps} steps): "
                              f"continue it with 'protoexplain train-masker {run_dir} --resume'")
    if not isinstance(model, ProtoPNet):
        raise ConfigError(f"localization method '{AMORTIZED}' works on ProtoPNet runs, not "
                          f"{type(model).__name__}")
    predictor = _predictor(model, saved, path).to(device).eval()
    return predictor, saved["record"]


def attach_masker(options: dict[str, dict[str, Any]], run: LoadedRun) -> None:
    """Give the ``amortized`` entry of ``options`` (method -> options) the run's trained
    predictor, when the entry is there and names none."""
    if AMORTIZED in options and "masker" not in options[AMORTIZED]:
        options[AMORTIZED]["masker"] = load_masker(run.path, run.model, run.device)[0]


def _resume_config(saved: dict[str, Any], overrides: list[str], path: Path) -> MaskerConfig:
    """The saved settings with ``overrides`` over them; only :data:`RESUMABLE_CHANGES` may
    differ."""
    config = masker_config(overrides, saved["config"])
    for key, old, new in differences(saved["config"], to_dict(config)):
        if key not in RESUMABLE_CHANGES:
            raise ConfigError(f"--resume continues {path} with its own settings; '{key}' "
                              f"would change from {old!r} to {new!r} (only "
                              f"{', '.join(RESUMABLE_CHANGES)} may change on resume)")
    return config


def train_masker(run: LoadedRun, overrides: list[str] = (), *, resume: bool = False,
                 overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train the run's predictor on its training split and write ``RUN_DIR/masker.pt``
    (every ``training.checkpoint_every`` steps and at the end), holding the run's lock.

    An existing ``masker.pt`` is refused unless ``resume`` (continue it: its settings, with
    ``training.steps`` allowed to grow) or ``overwrite`` (train a new one). Returns the
    training record."""
    if resume and overwrite:
        raise ConfigError("--resume continues the run's masker.pt and --overwrite replaces "
                          "it: pass one of them")
    if not isinstance(run.model, ProtoPNet):
        raise ConfigError(f"train-masker works on ProtoPNet runs; {run.path} holds a "
                          f"{type(run.model).__name__}")
    path = _masker_path(run.path)
    fresh = masker_config(list(overrides))  # an unknown key is named before anything else
    saved = None
    if path.exists() and not overwrite:
        if not resume:
            raise RunDirError(f"{path} exists: pass --resume to continue it (or train it "
                              "longer with --set training.steps=N) or --overwrite to train a "
                              "new one")
        saved = _read(path)
    elif resume:
        raise RunDirError(f"--resume: {path} does not exist; start with 'protoexplain "
                          f"train-masker {run.path}'")
    config = _resume_config(saved, list(overrides), path) if saved is not None else fresh
    with run_lock(run.path, "protoexplain train-masker"):
        model = run.model.eval()
        if saved is not None:
            predictor = _predictor(model, saved, path)
            state = MaskerTrainingState(step=saved["step"], optimizer=saved.get("optimizer"),
                                        supervision=saved.get("supervision"),
                                        record=saved["record"])
        else:
            torch.manual_seed(config.training.seed)
            predictor = MaskPredictor(model, config.predictor)
            state = MaskerTrainingState(record={"seconds": 0.0, "losses": [],
                                                "forward_images": 0, "backward_images": 0})
        predictor = predictor.to(run.device)
        dataset = build_dataset(run.config, "train", augment=False)
        count = PassCount()
        counted_before = (state.record["forward_images"], state.record["backward_images"])

        def save(current: MaskerTrainingState) -> None:
            current.record["forward_images"] = counted_before[0] + count.forward_images
            current.record["backward_images"] = counted_before[1] + count.backward_images
            save_checkpoint(path, {
                "predictor": predictor.state_dict(),
                "predictor_description": predictor.description(),
                "config": to_dict(config), "step": current.step,
                "optimizer": current.optimizer, "supervision": current.supervision,
                "record": current.record})

        with counting_passes(model, count):
            state = train_mask_predictor(model, dataset, predictor, config.training,
                                         state=state, save=save, progress=progress)
        save(state)
    log.info("mask predictor: %d steps, %.0f s, %d forward and %d backward model passes -> %s",
             state.step, state.record["seconds"], state.record["forward_images"],
             state.record["backward_images"], path)
    return state.record


def add_training_cost(results: dict[str, dict[str, float]], record: dict[str, Any],
                      reference: str = "hdm") -> None:
    """Add the predictor's training cost to the ``amortized`` row of benchmark ``results``:
    ``masker_training_seconds``, ``masker_training_passes`` (forward plus backward images)
    and, when ``reference`` (HDM) is in the results, ``break_even_pairs``: the training
    seconds over the seconds saved per pair, and ``break_even_pairs_by_passes``: the same in
    model passes (NaN when the method saves nothing per pair)."""
    row = results[AMORTIZED]
    passes = float(record["forward_images"] + record["backward_images"])
    row["masker_training_seconds"] = float(record["seconds"])
    row["masker_training_passes"] = passes
    if reference not in results:
        return
    other = results[reference]

    def per_pair(values: dict[str, float]) -> float:
        return values["forward_passes_per_pair"] + values["backward_passes_per_pair"]

    saved_seconds = other["seconds_per_pair"] - row["seconds_per_pair"]
    saved_passes = per_pair(other) - per_pair(row)
    row["break_even_pairs"] = (row["masker_training_seconds"] / saved_seconds
                               if saved_seconds > 0 else math.nan)
    row["break_even_pairs_by_passes"] = passes / saved_passes if saved_passes > 0 else math.nan
