"""Reading the participants' response files and checking each against the study's key.

A response file is what the study page exports (``<participant>.json``, or the same rows as
``<participant>.csv``); its format is documented in ``docs/user-studies.md``. Every problem
that means the file does not belong to this study, or was altered, is an error of one line
naming the file: the wrong study id, an unknown list, unknown trial ids, a trial answered
twice, an answer that was not offered, a participant code given in two files. Two problems
are *exclusions*, counted and reported by the analysis, never silent: a participant who did
not answer every main trial, and one who failed an attention check.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protoexplain.config_schema import ConfigError
from protoexplain.study.key import Key
from protoexplain.study.page import FORMAT_VERSION, RESPONSES_FORMAT

REQUIRED = ("study_id", "list", "participant", "responses")
INCOMPLETE = "incomplete"
FAILED_ATTENTION = "failed attention checks"


class ResponseFileError(ConfigError):
    """A response file that cannot be used; the message names the file."""


@dataclass
class Participant:
    """One checked response file: who, which list, the responses (with the key's columns
    added) and, if the participant is excluded, why."""

    path: Path
    participant: str
    list: str
    rows: list[dict[str, Any]]
    main_trials: int
    attention_total: int
    attention_passed: int
    exclusion: str | None = None
    """Why the participant is excluded, in words (None: included)."""
    excluded_for: str | None = None
    """The kind of exclusion: :data:`INCOMPLETE` or :data:`FAILED_ATTENTION`."""


def _shorten(values: list[str], count: int = 5) -> str:
    shown = ", ".join(values[:count])
    return shown + (f" and {len(values) - count} more" if len(values) > count else "")


def read_response_file(path: str | Path) -> dict[str, Any]:
    """A response file as the exported JSON document (a CSV export is turned into one)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ResponseFileError(f"response file {path} cannot be read: {error}") from None
    if path.suffix.lower() == ".csv":
        return _from_csv(path, text)
    try:
        document = json.loads(text)
    except ValueError as error:
        raise ResponseFileError(f"response file {path} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise ResponseFileError(f"response file {path}: expected a JSON object, got "
                                f"{type(document).__name__}")
    if document.get("format") != RESPONSES_FORMAT or document.get("version") != FORMAT_VERSION:
        raise ResponseFileError(
            f"response file {path}: 'format' must be '{RESPONSES_FORMAT}' version "
            f"{FORMAT_VERSION}, got {document.get('format')!r} version "
            f"{document.get('version')!r}")
    missing = [name for name in REQUIRED if name not in document]
    if missing:
        raise ResponseFileError(f"response file {path} lacks {', '.join(missing)}")
    if not isinstance(document["responses"], list) or not all(
            isinstance(r, dict) for r in document["responses"]):
        raise ResponseFileError(f"response file {path}: 'responses' must be a list of objects")
    return document


def _from_csv(path: Path, text: str) -> dict[str, Any]:
    rows = list(csv.DictReader(text.splitlines()))
    needed = {"study_id", "list", "participant", "trial_id", "answer", "rt_ms"}
    if not rows:
        raise ResponseFileError(f"response file {path} holds no responses")
    if not needed <= set(rows[0]):
        raise ResponseFileError(f"response file {path} lacks the columns "
                                f"{', '.join(sorted(needed - set(rows[0])))}")
    for column in ("study_id", "list", "participant"):
        values = {row[column] for row in rows}
        if len(values) != 1:
            raise ResponseFileError(f"response file {path}: column '{column}' must hold one "
                                    f"value, holds {_shorten(sorted(values))}")

    def number(value: str | None) -> float | None:
        return None if value in (None, "") else float(value)

    try:
        responses = [{"trial_id": row["trial_id"], "kind": row.get("kind"),
                      "task": row.get("task"), "answer": row["answer"],
                      "confidence": number(row.get("confidence")),
                      "rt_ms": number(row["rt_ms"]), "answered_at": row.get("answered_at")}
                     for row in rows]
    except ValueError as error:
        raise ResponseFileError(f"response file {path}: {error}") from None
    first = rows[0]
    return {"format": RESPONSES_FORMAT, "version": FORMAT_VERSION,
            "study_id": first["study_id"], "list": first["list"],
            "participant": first["participant"], "responses": responses}


def check_file(path: Path, document: dict[str, Any], key: Key) -> Participant:
    """Check one response document against ``key``; errors name ``path``."""
    where = f"response file {path}"
    if document["study_id"] != key.study_id:
        raise ResponseFileError(f"{where} is for study '{document['study_id']}', not this "
                                f"study ('{key.study_id}')")
    list_name = document["list"]
    if list_name not in key.lists:
        raise ResponseFileError(f"{where}: unknown list '{list_name}' (this study has "
                                f"{', '.join(key.lists)})")
    participant = str(document["participant"]).strip()
    if not participant:
        raise ResponseFileError(f"{where} has an empty participant code")
    ids = [str(r.get("trial_id")) for r in document["responses"]]
    unknown = [i for i in ids if (list_name, i) not in key.trials]
    if unknown:
        raise ResponseFileError(f"{where}: unknown trial ids for {list_name}: "
                                f"{_shorten(unknown)}")
    seen: set[str] = set()
    twice = sorted({i for i in ids if i in seen or seen.add(i)})
    if twice:
        raise ResponseFileError(f"{where}: trials answered more than once: {_shorten(twice)}")
    rows = []
    for response in document["responses"]:
        trial = key.trials[list_name, str(response["trial_id"])]
        answer = response.get("answer")
        answer = None if answer is None else str(answer)
        if answer not in trial["answers"]:
            raise ResponseFileError(f"{where}: answer {answer!r} to trial {trial['trial_id']} "
                                    f"is not one it offered ({'|'.join(trial['answers'])})")
        for name in ("kind", "task"):
            given = response.get(name)
            if given not in (None, "") and given != trial[name]:
                raise ResponseFileError(f"{where}: trial {trial['trial_id']} is a {trial[name]} "
                                        f"trial in the key, the file says {name} {given!r}")
        rt = response.get("rt_ms")
        if rt is not None and (isinstance(rt, bool) or not isinstance(rt, (int, float))
                               or not math.isfinite(rt) or rt < 0):
            raise ResponseFileError(f"{where}: 'rt_ms' of trial {trial['trial_id']} must be a "
                                    f"number >= 0, got {rt!r}")
        rows.append({"participant": participant, "list": list_name, "file": str(path),
                     "trial_id": trial["trial_id"], "kind": trial["kind"], "task": trial["task"],
                     "condition": trial["condition"], "answer": answer,
                     "confidence": response.get("confidence"), "rt_ms": rt,
                     "accurate": answer in trial["expected"],
                     "test_index": trial["test_index"], "stratum": trial["stratum"],
                     "model_correct": trial["model_correct"],
                     "answered_at": response.get("answered_at")})
    expected_main = sum(1 for (name, _), t in key.trials.items()
                        if name == list_name and t["kind"] == "main")
    attention = [t for (name, _), t in key.trials.items()
                 if name == list_name and t["kind"] == "attention"]
    answered = {row["trial_id"]: row for row in rows}
    passed = sum(1 for t in attention if t["trial_id"] in answered
                 and answered[t["trial_id"]]["accurate"])
    main = sum(1 for row in rows if row["kind"] == "main")
    result = Participant(path=path, participant=participant, list=list_name, rows=rows,
                         main_trials=main, attention_total=len(attention),
                         attention_passed=passed)
    if main < expected_main:
        result.excluded_for = INCOMPLETE
        result.exclusion = f"incomplete: {main} of {expected_main} main trials answered"
    elif passed < len(attention):
        result.excluded_for = FAILED_ATTENTION
        result.exclusion = f"failed {len(attention) - passed} of {len(attention)} attention checks"
    return result


def check_responses(paths: list[Path], key: Key) -> list[Participant]:
    """Read and check every file; a participant code in two files is an error naming
    both."""
    participants: list[Participant] = []
    owners: dict[str, Path] = {}
    for path in paths:
        checked = check_file(Path(path), read_response_file(path), key)
        if checked.participant in owners:
            raise ResponseFileError(f"participant '{checked.participant}' has two response "
                                    f"files: {owners[checked.participant]} and {path}")
        owners[checked.participant] = Path(path)
        participants.append(checked)
    return participants
