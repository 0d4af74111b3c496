"""``protoexplain study analyze``: the participants' response files, checked against the key
(:mod:`protoexplain.study.responses`), merged and summarised per condition.

Only main trials of included participants count (practice trials and attention checks do
not). For each task, and for all tasks together: accuracy per condition with its cluster
bootstrap 95 % interval, every pair of conditions' difference (the later condition of the
design minus the earlier) with its interval, permutation p-value and Holm-adjusted p-value
(:mod:`protoexplain.study.statistics`), reaction times (median and quartiles, ms) and, for the
distinction task, the mean confidence. Then a summary per participant, and the exclusions
with their reasons.

Writes ``OUT/summary.md``, ``summary.html``, ``summary.json`` (the same numbers) and
``responses.csv`` (every response of every file, with the key's columns, and whether its
participant is included).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from protoexplain.atomic_io import atomic_write_json, atomic_write_text
from protoexplain.study.key import read_key
from protoexplain.study.responses import Participant, check_responses
from protoexplain.study.statistics import cluster_bootstrap, holm, interval, permutation_test

GENERATOR = "protoexplain study analyze"
ANALYSIS_DIR = "analysis"
DEFAULT_ROUNDS = 10_000
RESPONSE_COLUMNS = ["participant", "list", "file", "included", "exclusion", "trial_id", "kind",
                    "task", "condition", "answer", "accurate", "confidence", "rt_ms",
                    "test_index", "stratum", "model_correct", "answered_at"]


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _rt(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    times = np.array([row["rt_ms"] for row in rows if row["rt_ms"] is not None], dtype=float)
    if len(times) == 0:
        return {"median": None, "q1": None, "q3": None}
    q1, median, q3 = np.percentile(times, [25, 50, 75])
    return {"median": float(median), "q1": float(q1), "q3": float(q3)}


def summarise_scope(rows: list[dict[str, Any]], participants: list[str], lists: list[str],
                    conditions: list[str], *, rounds: int, seed: int) -> dict[str, Any]:
    """Per condition and per pair of conditions, for the main-trial ``rows`` of the
    included ``participants`` (their lists in ``lists``)."""
    rng = np.random.default_rng(seed)
    person = {name: n for n, name in enumerate(participants)}
    column = {name: c for c, name in enumerate(conditions)}
    who = np.array([person[row["participant"]] for row in rows], dtype=int)
    where = np.array([column[row["condition"]] for row in rows], dtype=int)
    accurate = np.array([row["accurate"] for row in rows], dtype=float)
    shape = (len(participants), len(conditions))
    correct = np.zeros(shape)
    total = np.zeros(shape)
    np.add.at(correct, (who, where), accurate)
    np.add.at(total, (who, where), 1)
    groups = np.unique(np.array(lists), return_inverse=True)[1] if lists else np.zeros(0, int)
    boot = cluster_bootstrap(correct, total, groups, rounds=rounds, rng=rng)
    per_condition = []
    for c, name in enumerate(conditions):
        chosen = [row for row, w in zip(rows, where, strict=True) if w == c]
        confidence = [row["confidence"] for row in chosen if row["confidence"] is not None]
        per_condition.append({
            "condition": name, "participants": int((total[:, c] > 0).sum()),
            "trials": int(total[:, c].sum()), "accurate": int(correct[:, c].sum()),
            "accuracy": _finite(boot.estimate[c]), "low": _finite(boot.low[c]),
            "high": _finite(boot.high[c]), "rt_ms": _rt(chosen),
            "mean_confidence": float(np.mean(confidence)) if confidence else None})
    pairs = []
    for first, second in combinations(range(len(conditions)), 2):
        low, high = interval((boot.draws[:, second] - boot.draws[:, first])[:, None])
        both = (total[:, first] > 0) & (total[:, second] > 0)
        either = (total[:, first] > 0) | (total[:, second] > 0)
        if either.any() and both[either].all():  # within-subject: shuffle each one's trials
            chosen = (where == first) | (where == second)
            difference, p = permutation_test(
                accurate[chosen], np.ones(int(chosen.sum())), where[chosen] == second,
                who[chosen], rounds=rounds, rng=rng)
            unit = "trials within participants"
        else:  # between-subject: shuffle whole participants' conditions
            cells = [(n, c) for n in range(len(participants)) for c in (first, second)
                     if total[n, c] > 0]
            n_index = np.array([n for n, _ in cells], dtype=int)
            c_index = np.array([c for _, c in cells], dtype=int)
            difference, p = permutation_test(
                correct[n_index, c_index], total[n_index, c_index], c_index == second,
                np.zeros(len(cells), dtype=int), rounds=rounds, rng=rng)
            unit = "participants"
        pairs.append({"comparison": f"{conditions[second]} - {conditions[first]}",
                      "first": conditions[first], "second": conditions[second],
                      "difference": _finite(difference), "low": _finite(float(low[0])),
                      "high": _finite(float(high[0])), "p": _finite(p), "permuted": unit})
    for pair, adjusted in zip(pairs, holm([pair["p"] if pair["p"] is not None else math.nan
                                           for pair in pairs]), strict=True):
        pair["p_holm"] = _finite(adjusted)
    return {"conditions": per_condition, "differences": pairs, "trials": len(rows)}


def _participant_summary(checked: Participant) -> dict[str, Any]:
    main = [row for row in checked.rows if row["kind"] == "main"]
    return {"participant": checked.participant, "list": checked.list, "file": str(checked.path),
            "included": checked.exclusion is None, "exclusion": checked.exclusion,
            "main_trials": len(main),
            "accuracy": float(np.mean([row["accurate"] for row in main])) if main else None,
            "median_rt_ms": _rt(main)["median"],
            "attention": f"{checked.attention_passed}/{checked.attention_total}"}


def analyze_study(study_dir: str | Path, paths: list[str | Path], out: str | Path | None = None,
                  *, rounds: int = DEFAULT_ROUNDS, seed: int = 0) -> dict[str, Any]:
    """Check, merge and summarise the response files ``paths`` of the study in ``study_dir``;
    write the summary into ``out`` (default ``STUDY_DIR/analysis``; an earlier analysis
    there is replaced, any other non-empty folder refused). Returns ``summary.json``'s
    content."""
    study_dir = Path(study_dir)
    key = read_key(study_dir)
    out = Path(out) if out is not None else study_dir / ANALYSIS_DIR
    _check_out(out)
    checked = check_responses([Path(p) for p in paths], key)
    included = [c for c in checked if c.exclusion is None]
    names = [c.participant for c in included]
    lists = [c.list for c in included]
    rows = [row for c in included for row in c.rows if row["kind"] == "main"]
    scopes = {task: summarise_scope([r for r in rows if r["task"] == task], names, lists,
                                    key.conditions, rounds=rounds, seed=seed)
              for task in key.tasks}
    if len(key.tasks) > 1:
        scopes["all tasks"] = summarise_scope(rows, names, lists, key.conditions,
                                              rounds=rounds, seed=seed)
    exclusions = dict(Counter(c.excluded_for for c in checked if c.excluded_for is not None))
    summary = {"generator": GENERATOR, "study_id": key.study_id, "files": len(checked),
               "included": len(included), "excluded": len(checked) - len(included),
               "exclusions": exclusions, "rounds": rounds, "seed": seed,
               "conditions": key.conditions, "scopes": scopes,
               "participants": [_participant_summary(c) for c in checked]}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.md", _render("summary.md", summary))
    atomic_write_text(out / "summary.html", _render("summary.html", summary))
    atomic_write_text(out / "responses.csv", responses_csv(checked))
    return summary


def _check_out(out: Path) -> None:
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    try:
        earlier = json.loads((out / "summary.json").read_text()).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        earlier = False
    if not earlier:
        raise FileExistsError(f"--out {out} exists and holds no earlier study analysis; "
                              "choose another folder")


def responses_csv(checked: list[Participant]) -> str:
    """Every response of every file, with its participant's inclusion."""
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=RESPONSE_COLUMNS, lineterminator="\n",
                            extrasaction="ignore")
    writer.writeheader()
    for c in checked:
        for row in c.rows:
            writer.writerow({**row, "included": c.exclusion is None,
                             "exclusion": c.exclusion or ""})
    return stream.getvalue()


def _render(template: str, summary: dict[str, Any]) -> str:
    env = Environment(loader=PackageLoader("protoexplain.study", "templates"),
                      autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["pct"] = lambda v: "n/a" if v is None else f"{100 * v:.1f} %"
    env.filters["signed_pct"] = lambda v: "n/a" if v is None else f"{100 * v:+.1f} pp"
    env.filters["p"] = lambda v: "n/a" if v is None else (f"{v:.4f}" if v >= 1e-4 else "<0.0001")
    env.filters["ms"] = lambda v: "n/a" if v is None else f"{v:.0f}"
    env.filters["num"] = lambda v: "n/a" if v is None else f"{v:.2f}"
    return env.get_template(template).render(**summary)
