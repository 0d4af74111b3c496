"""Screenshot of one trial of a study page, as docs/user-studies.md shows it.

Opens ``STUDY/lists/<list>/index.html`` in Debian's chromium (through Playwright, as the
browser tests do), answers the trials before the chosen one through the page's scriptable
controls, and saves the chosen trial's screen as a PNG.

Run: ``python scripts/study_screenshot.py studies/demo docs/study_trial.png`` (by default the
first main distinction trial shown under the design's last condition; ``--trial L2-004``
picks another).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from screenshot_browser import chromium_page, save_quantized


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, help="a study folder (with key.json)")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--trial", help="a trial id (default: see above)")
    parser.add_argument("--width", type=int, default=760, help="browser width in pixels")
    args = parser.parse_args()
    key = json.loads((args.study / "key.json").read_text())
    conditions = json.loads((args.study / "study.json").read_text())["config"]["conditions"]
    trial = next(row for row in key["trials"] if row["trial_id"] == args.trial) if args.trial \
        else next(row for row in key["trials"] if row["kind"] == "main"
                  and row["task"] == "distinction" and row["condition"] == conditions[-1])
    url = (args.study / "lists" / trial["list"] / "index.html").resolve().as_uri()
    with chromium_page(args.width) as page:
        page.goto(url + "?participant=screenshot")
        page.click("[data-action=next]")
        while page.get_attribute("#trial", "data-trial") != trial["trial_id"] \
                or not page.is_visible("#trial"):
            if page.is_visible("#trial"):
                page.click("[data-question=choice] [data-answer]")
                if page.locator("[data-question=confidence]").count():
                    page.click("[data-question=confidence] [data-answer]")
            page.click("[data-action=next]")
        page.evaluate("document.getElementById('stimulus').decode()")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=True)
    save_quantized(args.out)
    print(f"wrote {args.out} from {trial['list']} {trial['trial_id']} ({trial['condition']})")


if __name__ == "__main__":
    main()
