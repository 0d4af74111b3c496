"""The report in a real browser: Debian's chromium, driven by Playwright from file:// URLs.

The set-up installs chromium (``scripts/install_browser.sh``, run by ``make setup``) and the
``playwright`` package (the dev extras); Playwright's own browser download is never used.
Where chromium is missing the tests are skipped, saying why. Screenshots are kept under
pytest's temporary folder, whose path the tests print.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from protoexplain.explain import explain_images
from protoexplain.report import write_report
from protoexplain.run_dir import load_run
from tests.protoexplain.report_runs import pushed_xprotonet_run, written_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is missing: pip install -e '.[dev]'")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not CHROMIUM.is_file(), reason=f"{CHROMIUM} is missing: make setup installs Debian's "
                                   "chromium when run as root (apt-get install chromium)")]

LOAD_IMAGES = """async () => {
    const images = Array.from(document.images);
    for (const image of images) { image.loading = "eager"; }
    await Promise.all(images.map((image) => image.decode().catch(() => null)));
    return images.map((image) => [image.getAttribute("src"), image.naturalWidth]);
}"""
"""Load every image of the page, lazy ones too, and return (src, naturalWidth) pairs."""


class Browser:
    """One chromium page that records console errors, page errors and failed requests."""

    def __init__(self, page, shots: Path) -> None:
        self.page, self.shots, self.problems = page, shots, []
        page.on("console", lambda message: message.type == "error" and self.problems.append(
            f"console error on {page.url}: {message.text}"))
        page.on("pageerror", lambda error: self.problems.append(f"{page.url}: {error}"))
        page.on("requestfailed", self._failed)

    def _failed(self, request) -> None:
        # a navigation cancels the requests still under way (net::ERR_ABORTED): not a fault
        if request.failure != "net::ERR_ABORTED":
            self.problems.append(f"failed request {request.url}: {request.failure}")

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_load_state("load")

    def check_images(self) -> int:
        """Every image on the page loads (``naturalWidth > 0``); returns their number."""
        images = self.page.evaluate(LOAD_IMAGES)
        broken = [src for src, width in images if width <= 0]
        assert broken == [], f"{self.page.url}: images that did not load: {broken}"
        return len(images)

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report_screenshots")
    print(f"\nreport screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser(shots):
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=CHROMIUM_ARGS)
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        yield Browser(page, shots)
        chromium.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    run, folder = written_report(tmp_path_factory.mktemp("browser_report") / "run")
    return run, folder, json.loads((folder / "data.json").read_text())


def _numbers(browser: Browser, selector: str, attribute: str) -> list[float]:
    return [float(v) for v in browser.page.eval_on_selector_all(
        selector, f"(nodes) => nodes.map((n) => n.getAttribute('{attribute}'))")]


def _thousandths(text: str) -> int:
    return round(float(text) * 1000)


def check_local_page(browser: Browser, entry: dict) -> None:
    """The contributions on the page, with the rest, add up to the logit; they and the
    logits agree with ``data.json``'s ``entry``."""
    page = browser.page
    tables = page.locator("table.contributions")
    assert tables.count() == len(entry["explanations"])
    for n, explanation in enumerate(entry["explanations"]):
        table = tables.nth(n)
        assert table.get_attribute("data-class") == explanation["class_name"]
        terms = [float(v) for v in table.locator("tr.term").evaluate_all(
            "(rows) => rows.map((row) => row.dataset.contribution)")]
        rest = float(table.locator("tr.rest").get_attribute("data-contribution"))
        logit = float(table.locator("tr.logit").get_attribute("data-logit"))
        assert sum(terms) + rest == pytest.approx(logit, rel=1e-5, abs=1e-5)
        # as printed, with three decimals, the column adds up exactly
        printed = [_thousandths(t) for t in table.locator("td.shown").all_inner_texts()]
        assert sum(printed) == _thousandths(table.locator("tr.logit .shown").inner_text())
        # the page agrees with data.json
        assert logit == explanation["logit"] and rest == explanation["rest"]
        assert terms == [row["contribution"] for row in explanation["prototypes"]]
        shown_ids = [int(v) for v in table.locator("tr.term").evaluate_all(
            "(rows) => rows.map((row) => row.dataset.prototype)")]
        assert shown_ids == [row["prototype"] for row in explanation["prototypes"]]
        weights = [float(v) for v in table.locator("tr.term").evaluate_all(
            "(rows) => rows.map((row) => row.dataset.weight)")]
        assert weights == [row["weight"] for row in explanation["prototypes"]]
    assert page.locator("dd.predicted").inner_text().startswith(entry["predicted_class"])


def test_a_reader_follows_links_from_the_index_to_a_class_a_prototype_and_a_local_view(
        browser, site):
    _, folder, data = site
    browser.open((folder / "index.html").as_uri())
    assert browser.page.title() == f"protoexplain report: {data['run']}"
    accuracy = browser.page.locator("#headline-value").inner_text()
    assert accuracy == f"{data['overview']['test_accuracy']:.4f}"
    assert browser.page.locator("table.benchmark tbody tr").count() == len(
        data["benchmark"]["upsample"])
    browser.check_images()
    print(browser.shot("index"))

    # search by class name, then follow the match to its page
    name = data["classes"][1]
    browser.page.fill("#class-search", name[:12].upper())
    visible = browser.page.locator("#class-table tbody tr:not(.hidden)")
    assert name in visible.all_inner_texts()[0]
    visible.first.locator("a").click()
    browser.page.wait_for_load_state("load")
    assert browser.page.url.endswith("classes/c001.html")
    assert browser.page.locator("h1").inner_text() == f"Class {name}"
    sections = browser.page.locator("section.prototype")
    own = [p for p in data["prototypes"] if p["class_index"] == 1]
    assert sections.count() == len(own)
    for n, entry in enumerate(own):
        section = sections.nth(n)
        assert int(section.get_attribute("data-prototype")) == entry["prototype"]
        count = entry["top_evidence"]["count"]
        assert section.locator("dd.evidence-count").inner_text().startswith(f"for {count} test")
        assert f"{entry['own_weight']:+.3f} (own)" in section.locator("dd.weights").inner_text()
    browser.check_images()
    print(browser.shot("class"))

    # from a prototype to a local explanation it appears in
    entry = next(p for p in own if p["local"])
    prototype_section = browser.page.locator(f"#p{entry['prototype']:04d}")
    prototype_section.locator("dd.backlinks a").first.click()
    browser.page.wait_for_load_state("load")
    local_url = browser.page.url
    local = next(e for e in data["local"] if local_url.endswith(e["page"]))
    check_local_page(browser, local)
    browser.check_images()
    print(browser.shot("local"))

    # from the local explanation to the prototype's global entry, and back
    link = browser.page.locator("a.prototype-link").first
    target = int(link.inner_text()[1:])
    link.click()
    browser.page.wait_for_load_state("load")
    assert browser.page.url.endswith(data["prototypes"][target]["page"])
    assert browser.page.locator("section.prototype:target").get_attribute(
        "data-prototype") == str(target)
    browser.page.go_back()
    browser.page.wait_for_load_state("load")
    assert browser.page.url == local_url
    browser.page.locator("header.top a.home").click()
    browser.page.wait_for_load_state("load")
    assert browser.page.url == (folder / "index.html").as_uri()
    assert browser.problems == []


def test_every_page_loads_its_images_without_errors_and_agrees_with_data_json(browser, site):
    _, folder, data = site
    pages = sorted(folder.rglob("*.html"))
    assert len(pages) == 1 + len(data["classes"]) + len(data["local"])
    images = 0
    for path in pages:
        browser.open(path.as_uri())
        images += browser.check_images()
    assert images > 50
    for entry in data["local"]:
        browser.open((folder / entry["page"]).as_uri())
        check_local_page(browser, entry)
    misclassified = next((e for e in data["local"] if not e["correct"]), None)
    if misclassified is not None:  # the predicted class's evidence beside the true class's
        browser.open((folder / misclassified["page"]).as_uri())
        roles = browser.page.locator("section.explanation").evaluate_all(
            "(nodes) => nodes.map((n) => n.dataset.role)")
        assert roles == ["predicted", "true"]
        print(browser.shot("misclassified"))
    assert browser.problems == []


def test_the_local_view_of_explain_opens_and_links_into_the_report(browser, site, tmp_path):
    run, folder, data = site
    photo = tmp_path / "photo.jpg"  # a test tile of the report: an image a person could bring
    shutil.copy(next(iter(sorted((folder / "img" / "t").iterdir()))), photo)
    (result,) = explain_images(load_run(run.path), [photo], tmp_path / "out", top_k=2,
                               methods=["upsample", "centre"])
    browser.open(Path(result["page"]).as_uri())
    browser.check_images()
    terms = _numbers(browser, "tr.term", "data-contribution")
    rest = float(browser.page.locator("tr.rest").get_attribute("data-contribution"))
    assert sum(terms) + rest == pytest.approx(result["logit"], rel=1e-5, abs=1e-5)
    print(browser.shot("explain"))
    browser.page.locator("a.prototype-link").first.click()
    browser.page.wait_for_load_state("load")
    p = result["prototypes"][0]["prototype"]
    assert browser.page.url.endswith(data["prototypes"][p]["page"])
    assert browser.problems == []


def test_an_xprotonet_report_opens_with_its_findings(browser, tmp_path):
    run = pushed_xprotonet_run(tmp_path / "run")
    summary = write_report(run, methods=["upsample"], test_images=3, nearest=2,
                           progress=False)
    browser.open(summary.path.as_uri())
    assert "mean AUROC" in browser.page.locator("p.headline").inner_text()
    browser.page.locator("a.class-link").first.click()
    browser.page.wait_for_load_state("load")
    assert browser.page.locator("#occurrence .tile").count() > 0
    browser.check_images()
    print(browser.shot("xprotonet_finding"))
    data = json.loads((summary.path.parent / "data.json").read_text())
    for entry in data["local"]:
        browser.open((summary.path.parent / entry["page"]).as_uri())
        check_local_page(browser, entry)
        browser.check_images()
    assert browser.problems == []
