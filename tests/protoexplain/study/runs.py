"""What the study tests share: a small study of the tiny report run, simulated participants'
response documents from its key, and answering policies."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from protoexplain.study import design_study
from protoexplain.study.config import StudyConfig, TrialCounts
from protoexplain.study.page import FORMAT_VERSION, RESPONSES_FORMAT
from tests.protoexplain.report_runs import report_run

Policy = Callable[[dict[str, Any]], str]


def small_config(**changes: Any) -> StudyConfig:
    """Two conditions (no explanation, upsample), two main trials per task, one practice
    trial per task, one attention check, 64 px tiles: a study of 10 trials per list that the
    12 test images of the tiny report run can fill."""
    values = {"name": "tiny", "design": "between", "conditions": ["none", "upsample"],
              "trials": TrialCounts(distinction=2, agreement=2, similarity=2), "practice": 1,
              "attention_checks": 1, "candidates": 3, "tile": 64, **changes}
    return StudyConfig(**values)


def small_study(root: Path, **changes: Any) -> Path:
    """:func:`small_config`'s study of an untrained pushed 3-class run, in ``root/study``."""
    run = report_run(root / "run", benchmark=False)
    return design_study(run, small_config(**changes), root / "study", progress=False).path


def read_key(study: Path) -> dict[str, Any]:
    return json.loads((study / "key.json").read_text())


def accurate_with(probability: float, rng: np.random.Generator) -> Policy:
    """Answer as the model would with ``probability``, else a wrong answer at random;
    attention checks always right."""
    def policy(row: dict[str, Any]) -> str:
        if row["kind"] == "attention" or rng.random() < probability:
            return row["expected"][0]
        wrong = [a for a in row["answers"] if a not in row["expected"]]
        return wrong[int(rng.integers(len(wrong)))]
    return policy


def at_chance(rng: np.random.Generator) -> Policy:
    """Any offered answer, uniformly; attention checks right."""
    def policy(row: dict[str, Any]) -> str:
        if row["kind"] == "attention":
            return row["expected"][0]
        return row["answers"][int(rng.integers(len(row["answers"])))]
    return policy


def responses(key: dict[str, Any], list_name: str, participant: str, policy: Policy,
              rng: np.random.Generator) -> dict[str, Any]:
    """The document the study page exports, for a participant answering every trial of
    ``list_name`` by ``policy``."""
    rows = [row for row in key["trials"] if row["list"] == list_name]
    return {"format": RESPONSES_FORMAT, "version": FORMAT_VERSION, "study_id": key["study_id"],
            "list": list_name, "participant": participant, "started_at": None,
            "finished_at": None, "user_agent": "simulated", "responses": [
                {"trial_id": row["trial_id"], "kind": row["kind"], "task": row["task"],
                 "answer": policy(row), "confidence": 3 if row["task"] == "distinction"
                 else None, "rt_ms": float(rng.integers(400, 3000)), "answered_at": None}
                for row in rows]}


def write_responses(folder: Path, document: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{document.get('participant', 'unnamed')}.json"
    path.write_text(json.dumps(document))
    return path
