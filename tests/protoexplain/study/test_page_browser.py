"""The study page in a real browser: Debian's chromium, driven by Playwright from file://
URLs (never Playwright's own browser download), as the report's browser tests.

Simulated participants take a small between-subject study: under ``upsample`` they answer as
the model would, under ``none`` at chance, and one of them reloads the page halfway. Their
exported files are analysed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from protoexplain.study import analyze_study
from tests.protoexplain.study.runs import accurate_with, at_chance, read_key
from tests.protoexplain.test_report_browser import CHROMIUM, CHROMIUM_ARGS

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is missing: pip install -e '.[dev]'")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not CHROMIUM.is_file(), reason=f"{CHROMIUM} is missing: make setup installs Debian's "
                                   "chromium when run as root (apt-get install chromium)")]


@pytest.fixture(scope="module")
def study(between_study) -> Path:
    return between_study


@pytest.fixture(scope="module")
def page():
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=CHROMIUM_ARGS)
        context = chromium.new_context(viewport={"width": 1000, "height": 900},
                                       accept_downloads=True)
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda m: m.type == "error" and problems.append(m.text))
        page.problems = problems
        yield page
        chromium.close()


def take_study(page, url: str, participant: str, policy, rows: dict[str, dict],
               reload_after: int | None = None) -> list[str]:
    """Take the study at ``url`` as ``participant``, answering each trial by ``policy`` (a
    function of its key row); reload the page once after ``reload_after`` answers. Returns
    the trial ids answered, in order."""
    page.goto(url)
    page.fill("input[name=participant]", participant)
    page.click("[data-action=next]")
    answered: list[str] = []
    while not page.is_visible("#done"):
        if page.is_visible("#instructions"):
            page.click("[data-action=next]")
            continue
        trial_id = page.get_attribute("#trial", "data-trial")
        row = rows[trial_id]
        page.click(f'[data-question=choice] [data-answer="{policy(row)}"]')
        if page.locator("[data-question=confidence]").count():
            page.click('[data-question=confidence] [data-answer="3"]')
        page.click("[data-action=next]")
        if row["kind"] == "practice":
            assert page.is_visible("#feedback")
            page.click("[data-action=next]")
        answered.append(trial_id)
        if reload_after is not None and len(answered) == reload_after:
            page.reload()
            assert page.input_value("input[name=participant]") == participant
            page.click("[data-action=next]")  # "Continue"
            reload_after = None
    return answered


def export(page, folder: Path, action: str) -> Path:
    with page.expect_download() as download:
        page.click(f"[data-action={action}]")
    path = folder / download.value.suggested_filename
    download.value.save_as(path)
    return path


def test_participants_take_the_study_and_the_analysis_recovers_their_policies(study, page,
                                                                               tmp_path):
    key = read_key(study)
    lists = {row["list"]: row["condition"] for row in key["trials"] if row["kind"] == "main"}
    by_condition = {condition: name for name, condition in lists.items()}
    rng = np.random.default_rng(0)
    people = [("right-1", "upsample", accurate_with(1.0, rng), None),
              ("right-2", "upsample", accurate_with(1.0, rng), None),
              ("chance-1", "none", at_chance(rng), None),
              ("chance-2", "none", at_chance(rng), 4)]  # reloads after 4 answers
    files = []
    for participant, condition, policy, reload_after in people:
        list_name = by_condition[condition]
        rows = {row["trial_id"]: row for row in key["trials"] if row["list"] == list_name}
        url = (study / "lists" / list_name / "index.html").resolve().as_uri()
        answered = take_study(page, url, participant, policy, rows, reload_after)
        assert sorted(answered) == sorted(rows)
        saved = export(page, tmp_path, "export")
        assert saved.name == f"{participant}.json"
        document = json.loads(saved.read_text())
        # the reload lost no answer and repeated none
        assert [r["trial_id"] for r in document["responses"]] == answered
        assert all(r["rt_ms"] is not None and r["rt_ms"] >= 0 for r in document["responses"])
        assert (document["study_id"], document["list"]) == (key["study_id"], list_name)
        csv_file = export(page, tmp_path, "export-csv")
        assert csv_file.name == f"{participant}.csv"
        assert len(csv_file.read_text().splitlines()) == len(rows) + 1
        files.append(saved)
    assert page.problems == []

    summary = analyze_study(study, files, tmp_path / "analysis", rounds=2000)
    assert summary["included"] == 4 and summary["excluded"] == 0
    found = {c["condition"]: c for c in summary["scopes"]["all tasks"]["conditions"]}
    assert found["upsample"]["accuracy"] == 1.0 and found["upsample"]["trials"] == 12
    chance = [r for f in files[2:] for r in json.loads(f.read_text())["responses"]
              if r["kind"] == "main"]
    expected = {(row["list"], row["trial_id"]): row["expected"] for row in key["trials"]}
    accurate = np.mean([r["answer"] in expected[by_condition["none"], r["trial_id"]]
                        for r in chance])
    assert found["none"]["accuracy"] == pytest.approx(accurate)
    (difference,) = summary["scopes"]["all tasks"]["differences"]
    assert difference["comparison"] == "upsample - none"
    assert difference["difference"] == pytest.approx(1.0 - accurate)
    assert difference["low"] <= difference["difference"] <= difference["high"]
    assert (tmp_path / "analysis" / "summary.html").is_file()


def test_the_page_is_self_contained_and_takes_the_code_from_its_address(study, page):
    url = (study / "lists" / "list-1" / "index.html").resolve().as_uri()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(url + "?participant=from-the-address")
    assert page.input_value("input[name=participant]") == "from-the-address"
    page.click("[data-action=next]")
    page.click("[data-action=next]")  # past the first task's instructions
    assert page.evaluate("document.getElementById('stimulus').naturalWidth") > 0
    assert [r for r in requests if not r.startswith(("data:", url))] == []
