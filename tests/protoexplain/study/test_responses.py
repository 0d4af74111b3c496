"""Response files are checked against the key: an error of one line naming the file, or a
reported exclusion, never a silent drop."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from protoexplain.study.key import read_key as load_key
from protoexplain.study.responses import ResponseFileError, check_responses
from tests.protoexplain.study.runs import accurate_with, read_key, responses, write_responses


@pytest.fixture
def good(between_study):
    key = read_key(between_study)
    return key, responses(key, "list-1", "P1", accurate_with(1.0, np.random.default_rng(0)),
                          np.random.default_rng(0))


def _check(study, folder, document):
    return check_responses([write_responses(folder, document)], load_key(study))


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(study_id="another-study"), "is for study 'another-study'"),
    (lambda d: d.update(list="list-9"), "unknown list 'list-9'"),
    (lambda d: d["responses"].append({**d["responses"][0], "trial_id": "L1-999"}),
     "unknown trial ids for list-1: L1-999"),
    (lambda d: d["responses"].append(dict(d["responses"][1])), "answered more than once: L1-002"),
    (lambda d: d["responses"][1].update(answer="Z"), "answer 'Z' to trial L1-002 is not one"),
    (lambda d: d["responses"][1].update(rt_ms=-5), "'rt_ms' of trial L1-002 must be a number"),
    (lambda d: d["responses"][1].update(task="similarity"), "the file says task 'similarity'"),
    (lambda d: d.update(format="something else"), "'format' must be"),
    (lambda d: d.pop("participant"), "lacks participant"),
])
def test_malformed_response_files_are_errors_naming_the_file(between_study, tmp_path, good,
                                                             change, message):
    _, document = good
    change(document)
    with pytest.raises(ResponseFileError, match=message) as error:
        _check(between_study, tmp_path, document)
    assert str(tmp_path) in str(error.value) and "\n" not in str(error.value)


def test_a_file_that_is_not_json_and_a_participant_given_twice_are_errors(between_study,
                                                                         tmp_path, good):
    key, document = good
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ResponseFileError, match=f"{broken} is not valid JSON"):
        check_responses([broken], load_key(between_study))
    first = write_responses(tmp_path / "a", document)
    second = write_responses(tmp_path / "b", {**document, "list": "list-2", "responses": []})
    with pytest.raises(ResponseFileError, match="participant 'P1' has two response files"):
        check_responses([first, second], load_key(between_study))


def test_incomplete_files_and_failed_attention_checks_are_counted_exclusions(between_study,
                                                                            tmp_path, good):
    key, document = good
    attention = next(r["trial_id"] for r in key["trials"]
                     if r["list"] == "list-1" and r["kind"] == "attention")
    failed = json.loads(json.dumps(document))
    for response in failed["responses"]:
        if response["trial_id"] == attention:
            row = next(r for r in key["trials"] if r["trial_id"] == attention)
            response["answer"] = next(a for a in row["answers"] if a not in row["expected"])
    partial = {**document, "participant": "P2", "responses": document["responses"][:4]}
    failed["participant"] = "P3"
    found = check_responses([write_responses(tmp_path, d) for d in (document, partial, failed)],
                            load_key(between_study))
    assert [p.exclusion for p in found] == [None, "incomplete: 2 of 6 main trials answered",
                                            "failed 1 of 1 attention checks"]


def test_a_csv_export_reads_like_the_json_one(between_study, tmp_path, good):
    _, document = good
    path = tmp_path / "P1.csv"
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=["study_id", "list", "participant",
                                                    "trial_id", "kind", "task", "answer",
                                                    "confidence", "rt_ms", "answered_at"])
        writer.writeheader()
        for r in document["responses"]:
            writer.writerow({"study_id": document["study_id"], "list": "list-1",
                             "participant": "P1", **r})
    (from_csv,) = check_responses([path], load_key(between_study))
    (from_json,) = _check(between_study, tmp_path, document)
    assert [(r["trial_id"], r["answer"], r["accurate"]) for r in from_csv.rows] == \
        [(r["trial_id"], r["answer"], r["accurate"]) for r in from_json.rows]
