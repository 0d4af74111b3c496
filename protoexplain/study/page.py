"""One participant list on disk: the study page, ``trials.json``, ``trials.csv`` and the
stimuli.

The page (``index.html``) is one self-contained file rendered with Jinja2 (HTML-escaped): the
trials and their pictures (PNG as ``data:`` URIs) are embedded as JSON, the CSS and JavaScript
inline, so it runs offline from ``file://`` with nothing else beside it. Its behaviour is in
``static/study.js``: the answers are kept in the browser's ``localStorage`` under
``protoexplain-study/<study id>/<list>/<participant>`` after each trial, so that a reload
loses nothing, and are exported as ``<participant>.json`` and ``<participant>.csv``.
Controls a script or platform can drive: ``input[name=participant]``, answers
``[data-answer]`` inside ``[data-question=choice]`` / ``[data-question=confidence]``,
``[data-action=next]``, ``[data-action=export]`` (JSON) and ``[data-action=export-csv]``.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

TRIALS_FORMAT = "protoexplain-study-trials"
RESPONSES_FORMAT = "protoexplain-study-responses"
FORMAT_VERSION = 1
TRIAL_COLUMNS = ["trial_id", "kind", "task", "prompt", "image", "width", "height", "answers",
                 "confidence_answers", "feedback"]


def _environment() -> Environment:
    return Environment(loader=PackageLoader("protoexplain.study", "templates"),
                       autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def _static(name: str) -> str:
    return (resources.files("protoexplain.study") / "static" / name).read_text()


def script_json(value: Any) -> Markup:
    """JSON safe inside a ``<script>`` element (no ``<``, so no ``</script>``)."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e")
                  .replace("&", "\\u0026"))


def trials_document(study_id: str, list_name: str, instructions: dict[str, str],
                    rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``trials.json``: the list's trials without the picture bytes."""
    return {"format": TRIALS_FORMAT, "version": FORMAT_VERSION, "study_id": study_id,
            "list": list_name, "responses_format": RESPONSES_FORMAT,
            "instructions": instructions,
            "trials": [{k: v for k, v in row.items() if k != "png"} for row in rows]}


def trials_csv(rows: list[dict[str, Any]]) -> str:
    """``trials.csv``: one row per trial; the answers offered joined with ``|``."""
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=TRIAL_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        answers = {q["name"]: "|".join(o["answer"] for o in q["options"])
                   for q in row["questions"]}
        writer.writerow({**{k: row[k] for k in TRIAL_COLUMNS[:7]},
                         "answers": answers["choice"],
                         "confidence_answers": answers.get("confidence", ""),
                         "feedback": row["feedback"] or ""})
    return stream.getvalue()


def write_list(folder: Path, study_id: str, list_name: str, rows: list[dict[str, Any]],
               instructions: dict[str, str]) -> Path:
    """Write one list's folder (``index.html``, ``trials.json``, ``trials.csv``,
    ``stimuli/``); returns the page's path. ``rows`` are the trials in order, each with its
    PNG bytes under ``png``."""
    (folder / "stimuli").mkdir(parents=True)
    for row in rows:
        (folder / row["image"]).write_bytes(row["png"])
    document = trials_document(study_id, list_name, instructions, rows)
    (folder / "trials.json").write_text(json.dumps(document, indent=2) + "\n")
    (folder / "trials.csv").write_text(trials_csv(rows))
    embedded = {**document, "trials": [
        {**trial, "src": "data:image/png;base64," + base64.b64encode(row["png"]).decode()}
        for trial, row in zip(document["trials"], rows, strict=True)]}
    page = _environment().get_template("study.html").render(
        study_id=study_id, list_name=list_name, data=script_json(embedded),
        css=Markup(_static("study.css")), script=Markup(_static("study.js")),
        main_trials=sum(1 for row in rows if row["kind"] != "practice"))
    path = folder / "index.html"
    path.write_text(page)
    return path
