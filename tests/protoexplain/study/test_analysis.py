"""study analyze: the analysis recovers a planted difference between conditions, reports
exclusions, and writes its summary and the merged responses."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from protoexplain.cli import main
from protoexplain.study import analyze_study
from tests.protoexplain.study.runs import accurate_with, read_key, responses, write_responses

PLANTED = {"none": 0.5, "upsample": 0.9}
"""The probability of answering as the model would, per condition."""


def _simulate(study, folder, people_per_list: int, seed: int = 1):
    key = read_key(study)
    rng = np.random.default_rng(seed)
    files = []
    for list_name in ("list-1", "list-2"):
        for n in range(people_per_list):
            def policy(row, rng=rng):
                condition = next(r["condition"] for r in key["trials"]
                                 if (r["list"], r["trial_id"]) == (row["list"], row["trial_id"]))
                return accurate_with(PLANTED.get(condition, 1.0), rng)(row)
            files.append(write_responses(folder, responses(
                key, list_name, f"{list_name}-p{n:02d}", policy, rng)))
    return files


@pytest.mark.parametrize("design", ["between", "within"])
def test_the_analysis_recovers_a_planted_difference_within_its_interval(
        design, between_study, within_study, tmp_path):
    """Seeded (a 95 % interval misses its value 1 time in 20: test_statistics checks the
    intervals' coverage over many simulated studies)."""
    study = between_study if design == "between" else within_study
    files = _simulate(study, tmp_path / "responses", people_per_list=40)
    summary = analyze_study(study, files, tmp_path / "analysis", rounds=2000)
    scope = summary["scopes"]["all tasks"]
    accuracy = {c["condition"]: c for c in scope["conditions"]}
    for condition, planted in PLANTED.items():
        assert accuracy[condition]["low"] <= planted <= accuracy[condition]["high"]
        assert accuracy[condition]["trials"] == 40 * (6 if design == "between" else 8)
    (difference,) = scope["differences"]
    assert difference["comparison"] == "upsample - none"
    assert difference["low"] <= 0.4 <= difference["high"]
    assert difference["p"] < 0.001
    assert difference["permuted"] == ("participants" if design == "between"
                                      else "trials within participants")


def test_the_same_seed_gives_the_same_summary_and_exclusions_are_reported(between_study,
                                                                          tmp_path):
    files = _simulate(between_study, tmp_path / "responses", people_per_list=3)
    key = read_key(between_study)
    quitter = responses(key, "list-1", "quitter", accurate_with(1.0, np.random.default_rng(0)),
                        np.random.default_rng(0))
    quitter["responses"] = quitter["responses"][:3]
    files.append(write_responses(tmp_path / "responses", quitter))
    first = analyze_study(between_study, files, tmp_path / "a", rounds=500, seed=3)
    again = analyze_study(between_study, files, tmp_path / "b", rounds=500, seed=3)
    assert first == {**again}
    assert (first["files"], first["included"], first["excluded"]) == (7, 6, 1)
    assert first["exclusions"] == {"incomplete": 1}
    text = (tmp_path / "a" / "summary.md").read_text()
    assert "6 participants included, 1 excluded (1 incomplete)" in text
    assert "no: incomplete: 1 of 6 main trials answered" in text
    assert 'data-condition="upsample"' in (tmp_path / "a" / "summary.html").read_text()
    rows = list(csv.DictReader((tmp_path / "a" / "responses.csv").open()))
    assert len(rows) == 6 * 10 + 3
    assert {r["included"] for r in rows if r["participant"] == "quitter"} == {"False"}


def test_the_command_summarises_and_names_a_bad_file(between_study, tmp_path, capsys):
    files = _simulate(between_study, tmp_path / "responses", people_per_list=1)
    out = tmp_path / "analysis"
    assert main(["study", "analyze", str(between_study), *map(str, files), "--out", str(out),
                 "--rounds", "200"]) == 0
    assert "2 of 2 participants included" in capsys.readouterr().out
    assert {"summary.md", "summary.html", "summary.json", "responses.csv"} <= \
        {p.name for p in out.iterdir()}
    assert main(["study", "analyze", str(between_study), *map(str, files), "--out", str(out),
                 "--rounds", "200"]) == 0  # an earlier analysis is replaced
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    assert main(["study", "analyze", str(between_study), str(bad), "--out", str(out)]) == 2
    assert f"response file {bad}: expected a JSON object" in capsys.readouterr().err
    assert main(["study", "analyze", str(between_study), *map(str, files), "--out",
                 str(tmp_path / "responses")]) == 2  # not an analysis folder: refused
    assert "holds no earlier study analysis" in capsys.readouterr().err
