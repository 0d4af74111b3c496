"""study design: the lists, the balance of the Latin square, the blinding of participant
files, the trial selection, and the command line."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import cv2
import pytest

from protoexplain.cli import main
from protoexplain.config_schema import ConfigError
from protoexplain.study import design_study
from protoexplain.study.config import TrialCounts
from tests.protoexplain.report_runs import report_run
from tests.protoexplain.study.runs import read_key, small_config


def _trials(study: Path, list_name: str) -> dict:
    return json.loads((study / "lists" / list_name / "trials.json").read_text())


def test_every_test_image_appears_under_every_condition_across_lists(within_study):
    key = read_key(within_study)
    conditions = {}
    for row in key["trials"]:
        if row["kind"] == "main":
            conditions.setdefault((row["task"], row["test_index"]), []).append(row["condition"])
    assert len(conditions) == 8  # 2 images per task, 4 for agreement
    for shown in conditions.values():
        assert sorted(shown) == ["none", "upsample"]  # once under each, across the 2 lists
    per_list = Counter((row["list"], row["condition"]) for row in key["trials"]
                       if row["kind"] == "main")
    assert per_list == {(name, c): 4 for name in ("list-1", "list-2")
                        for c in ("none", "upsample")}  # within: each condition equally often
    # and each condition a participant sees shows one correct and one incorrect prediction
    agreement = Counter((row["list"], row["condition"], row["model_correct"])
                        for row in key["trials"]
                        if row["kind"] == "main" and row["task"] == "agreement")
    assert set(agreement.values()) == {1} and len(agreement) == 8


def test_a_between_subject_list_shows_one_condition_on_the_same_images(between_study):
    key = read_key(between_study)
    main = [row for row in key["trials"] if row["kind"] == "main"]
    assert {(r["list"], r["condition"]) for r in main} == {("list-1", "none"),
                                                           ("list-2", "upsample")}
    images = {name: sorted((r["task"], r["test_index"]) for r in main if r["list"] == name)
              for name in ("list-1", "list-2")}
    assert images["list-1"] == images["list-2"]


def test_participant_files_carry_no_condition_or_class_name(between_study):
    key = read_key(between_study)
    secrets = {"upsample", "model_correct", "condition", "true_class"}
    secrets |= {row["true_class"] for row in key["trials"]}
    for list_name in ("list-1", "list-2"):
        folder = between_study / "lists" / list_name
        texts = [(folder / name).read_text() for name in ("trials.json", "trials.csv")]
        page = (folder / "index.html").read_text()
        for secret in secrets:
            assert all(secret not in text for text in texts), secret
            assert secret not in page, secret
        names = sorted(path.name for path in (folder / "stimuli").iterdir())
        assert names == sorted(f"{t['trial_id']}.png" for t in _trials(between_study,
                                                                       list_name)["trials"])


def test_trials_have_the_documented_fields_and_fixed_picture_sizes(between_study):
    document = _trials(between_study, "list-2")
    assert (document["format"], document["version"], document["list"]) == \
        ("protoexplain-study-trials", 1, "list-2")
    assert set(document["instructions"]) == {"distinction", "agreement", "similarity"}
    sizes = {}
    for trial in document["trials"]:
        picture = cv2.imread(str(between_study / "lists/list-2" / trial["image"]))
        assert picture.shape[:2] == (trial["height"], trial["width"])
        sizes.setdefault(trial["task"], set()).add((trial["width"], trial["height"]))
        answers = [o["answer"] for o in trial["questions"][0]["options"]]
        assert answers == {"distinction": ["A", "B", "C"], "agreement": ["1", "2", "3", "4"],
                           "similarity": ["yes", "no"]}[trial["task"]]
        assert (trial["feedback"] is not None) == (trial["kind"] == "practice")
    assert all(len(found) == 1 for found in sizes.values())  # one size per task
    kinds = Counter(trial["kind"] for trial in document["trials"])
    assert kinds == {"practice": 3, "main": 6, "attention": 1}
    rows = list(csv.DictReader((between_study / "lists/list-2/trials.csv").open()))
    assert [r["trial_id"] for r in rows] == [t["trial_id"] for t in document["trials"]]


def test_agreement_and_similarity_trials_are_balanced_and_the_key_says_what_matches(
        between_study):
    key = read_key(between_study)
    agreement = [r for r in key["trials"] if r["task"] == "agreement" and r["kind"] == "main"
                 and r["list"] == "list-1"]
    assert sorted(r["model_correct"] for r in agreement) == [False, True]
    for row in agreement:
        assert row["expected"] == (["3", "4"] if row["model_correct"] else ["1", "2"])
    similarity = [r["expected"] for r in key["trials"] if r["task"] == "similarity"
                  and r["kind"] == "main" and r["list"] == "list-1"]
    assert sorted(similarity) == [["no"], ["yes"]]  # the most and the least similar prototype
    for row in key["trials"]:
        if row["task"] == "distinction" and row["kind"] != "attention":
            (label,) = row["expected"]
            assert row["candidates"][label] == row["predicted_class"]
    attention = [r for r in key["trials"] if r["kind"] == "attention"]
    prompts = {t["trial_id"]: t["prompt"] for name in ("list-1", "list-2")
               for t in _trials(between_study, name)["trials"]}
    for row in attention:
        assert f"'Class {row['expected'][0]}'" in prompts[row["trial_id"]]


def test_comparative_similarity_trials_expect_the_more_similar_side(within_study):
    rows = [r for r in read_key(within_study)["trials"] if r["task"] == "similarity"
            and r["kind"] == "main"]
    assert {tuple(r["answers"]) for r in rows} == {("left", "right")}
    assert all(len(r["similarity"]) == 2 for r in rows)


def test_a_test_split_too_small_for_the_design_is_a_clear_error(tmp_path):
    run = report_run(tmp_path / "run", benchmark=False)
    config = small_config(trials=TrialCounts(distinction=12, agreement=2, similarity=2))
    with pytest.raises(ConfigError, match="the study needs 12"):
        design_study(run, config, tmp_path / "study", progress=False)
    assert not (tmp_path / "study").exists()


def test_a_within_design_needs_trials_in_multiples_of_the_conditions():
    with pytest.raises(ValueError, match="multiple of the 2 conditions"):
        small_config(design="within", trials=TrialCounts(distinction=3, agreement=2,
                                                         similarity=2))


@pytest.mark.slow
def test_the_command_writes_a_study_and_never_overwrites_one(tmp_path, capsys):
    from tests.protoexplain.tiny_runs import write_run_dir

    run = write_run_dir(report_run(tmp_path / "run", benchmark=False))
    design = tmp_path / "design.yaml"
    design.write_text("name: cli\ndesign: between\nconditions: [none, random]\n"
                      "trials: {distinction: 2, agreement: 2, similarity: 0}\n"
                      "attention_checks: 1\npractice: 0\ntile: 48\n")
    command = ["study", "design", str(run), "--config", str(design), "--out",
               str(tmp_path / "study"), "--no-progress"]
    assert main(command) == 0
    assert "2 lists of 5 trials" in capsys.readouterr().out
    assert (tmp_path / "study/lists/list-2/index.html").is_file()
    assert main(command) == 2
    assert "is never overwritten" in capsys.readouterr().err
    design.write_text("conditions: [none, nosuchmethod]\n")
    command[-2] = str(tmp_path / "other")
    assert main(command) == 2
    assert "'conditions[1]'" in capsys.readouterr().err
