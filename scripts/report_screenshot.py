"""Screenshot of one local explanation of a report, as the README shows it.

Opens ``REPORT/local/<page>`` in Debian's chromium (through Playwright, as the browser tests
do) and saves the page's head and first explanation as a PNG.

Run: ``python scripts/report_screenshot.py runs/demo/report docs/report_local_explanation.png``
(``--page local/t000123.html`` picks the page; by default the first misclassified image's,
else the first page).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from screenshot_browser import chromium_page, save_quantized


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="a report folder (with data.json)")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--page", help="a local explanation's page, relative to REPORT")
    parser.add_argument("--width", type=int, default=1100, help="browser width in pixels")
    args = parser.parse_args()
    local = json.loads((args.report / "data.json").read_text())["local"]
    page_name = args.page or next((e["page"] for e in local if not e["correct"]),
                                  local[0]["page"])
    with chromium_page(args.width) as page:
        page.goto((args.report / page_name).resolve().as_uri())
        page.wait_for_load_state("load")
        page.evaluate("Promise.all(Array.from(document.images).map((i) => "
                      "(i.loading = 'eager', i.decode().catch(() => null))))")
        page.evaluate("document.querySelectorAll('section.explanation').forEach((s) => "
                      "s.querySelectorAll('figure.evidence').forEach((f, i) => "
                      "{ if (i > 0) f.style.display = 'none'; }))")  # the first of each
        top = page.locator("h1").bounding_box()["y"] - 8
        figures = page.locator("section.explanation").evaluate_all(
            "(sections) => sections.map((s) => s.querySelector('figure.evidence')"
            ".getBoundingClientRect().bottom + window.scrollY)")
        bottom = max(figures) + 8
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=True,
                        clip={"x": 0, "y": top, "width": args.width, "height": bottom - top})
    save_quantized(args.out)
    print(f"wrote {args.out} from {page_name}")


if __name__ == "__main__":
    main()
