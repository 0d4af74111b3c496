"""The study's key: what the participants do not see. One row per trial of every list: its
condition, the test image, the model's prediction, correctness, confidence and stratum, and
the answers that match the model (``expected``) among those offered (``answers``).

``key.json`` is what ``protoexplain study analyze`` reads; ``key.csv`` is the same table for
a spreadsheet (lists joined with ``|``, the candidate classes of a distinction trial as
``A=name|B=name``).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protoexplain.atomic_io import atomic_write_json, atomic_write_text
from protoexplain.config_schema import ConfigError

KEY_FORMAT = 1
KEY_NAME = "key.json"
KEY_COLUMNS = ["list", "trial_id", "kind", "task", "condition", "test_index", "stratum",
               "true_class", "predicted_class", "model_correct", "model_confidence",
               "expected", "answers", "candidates", "similarity"]


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        return "|".join(str(v) for v in value)
    if isinstance(value, dict):
        return "|".join(f"{k}={v}" for k, v in value.items())
    return "" if value is None else value


def write_key(folder: Path, study_id: str, rows: list[dict[str, Any]]) -> None:
    """Write ``key.json`` and ``key.csv`` into ``folder``."""
    atomic_write_json(folder / KEY_NAME, {"study_id": study_id, "format": KEY_FORMAT,
                                          "trials": rows})
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=["study_id", *KEY_COLUMNS], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({"study_id": study_id,
                         **{column: _cell(row.get(column)) for column in KEY_COLUMNS}})
    atomic_write_text(folder / "key.csv", stream.getvalue())


@dataclass
class Key:
    """A study's key: its id, conditions and tasks in design order, and its trials by
    (list, trial id)."""

    study_id: str
    conditions: list[str]
    tasks: list[str]
    trials: dict[tuple[str, str], dict[str, Any]]

    @property
    def lists(self) -> list[str]:
        return list(dict.fromkeys(list_name for list_name, _ in self.trials))


def read_key(study_dir: str | Path) -> Key:
    """Read ``STUDY_DIR/key.json`` and ``study.json``; errors name the file."""
    study_dir = Path(study_dir)
    path = study_dir / KEY_NAME
    if not path.is_file():
        raise ConfigError(f"{study_dir} is not a study folder: it has no {KEY_NAME} (write one "
                          "with 'protoexplain study design RUN_DIR --out STUDY_DIR')")
    try:
        key = json.loads(path.read_text())
        study = json.loads((study_dir / "study.json").read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path} or study.json cannot be read: {error}") from None
    if key.get("format") != KEY_FORMAT:
        raise ConfigError(f"{path}: format {key.get('format')!r}, this protoexplain reads "
                          f"format {KEY_FORMAT}")
    trials = {(row["list"], row["trial_id"]): row for row in key["trials"]}
    return Key(study_id=key["study_id"], conditions=list(study["config"]["conditions"]),
               tasks=list(study["config"]["tasks"]), trials=trials)
