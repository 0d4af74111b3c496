"""Writing the static site: Jinja2 templates, the shared CSS and JavaScript, tiles, and the
safe replacement of an earlier report.

Jinja2 renders the pages: it escapes every value by default (class names and file names are
user data), and templates with inheritance and macros keep the page layout in HTML files a
person can edit instead of Python strings. The site works from ``file://``: every link and
image is relative, no script fetches anything, and nothing comes from a network.
"""

from __future__ import annotations

import json
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from protoexplain.report.pictures import write_jpeg

ASSETS = ("report.css", "report.js")
"""The static files every site carries, in ``assets/``."""
MARKER = "protoexplain report"
"""``data.json``'s ``generator``: how an existing folder is recognised as a report that may
be replaced."""


def environment() -> Environment:
    """The Jinja2 environment of the report templates (HTML-escaped, strict: a missing
    variable is an error, not an empty string)."""
    env = Environment(loader=PackageLoader("protoexplain.report", "templates"),
                      autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["num"] = number
    env.filters["signed"] = lambda value, digits=3: number(value, digits, signed=True)
    env.filters["milli"] = lambda value: _thousandths(milli(value))
    env.globals.update(shown_rest=shown_rest, top_logits=top_logits, weight_order=weight_order)
    return env


def milli(value: float) -> int:
    """A value in whole thousandths: the three decimals a page shows."""
    return round(value * 1000)


def _thousandths(count: int) -> str:
    sign = "-" if count < 0 else ""
    return f"{sign}{abs(count) // 1000}.{abs(count) % 1000:03d}"


def shown_rest(explanation: dict[str, Any]) -> str:
    """The ``rest`` line as a page shows it: the shown logit less the shown contributions, so
    that the column, as printed with three decimals, adds up exactly to the printed logit.
    It differs from the exact ``rest`` (kept in ``data.json`` and the row's ``data-``
    attribute) by at most the rounding of the shown terms."""
    shown = milli(explanation["logit"]) - sum(milli(row["contribution"])
                                              for row in explanation["prototypes"])
    return _thousandths(shown)


def top_logits(entry: dict[str, Any], count: int) -> list[int]:
    """The indices of an explanation's ``count`` largest logits, largest first."""
    logits = entry["logits"]
    return sorted(range(len(logits)), key=lambda k: -logits[k])[:count]


def weight_order(prototype: dict[str, Any], count: int) -> list[int]:
    """The classes of a prototype's weights worth showing: its own class first, then the
    largest by absolute value, ``count`` in all."""
    weights = prototype["weights"]
    own = prototype["class_index"]
    others = sorted((k for k in range(len(weights)) if k != own), key=lambda k: -abs(weights[k]))
    return [own, *others[:count - 1]]


def number(value: Any, digits: int = 3, signed: bool = False) -> str:
    """A number for a page: ``digits`` decimals (``n/a`` for ``None`` and NaN)."""
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


class SiteWriter:
    """Writes one site under ``root``: tiles (with their pixel sizes, for the ``<img>``
    width and height), charts, pages and JSON, counting files and bytes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = environment()
        self.env.globals["image"] = self.image
        self.sizes: dict[str, tuple[int, int]] = {}
        self.files = 0
        self.bytes = 0

    def tile(self, relative: str, rgb: np.ndarray) -> str:
        """Write an RGB tile as JPEG at ``relative`` (under the root) once; returns the path."""
        if relative not in self.sizes:
            self._count(write_jpeg(self.root / relative, rgb))
            self.sizes[relative] = (int(rgb.shape[1]), int(rgb.shape[0]))
        return relative

    def chart(self, relative: str, size: int | None) -> str | None:
        """Record a chart written at ``relative`` (``size`` bytes; ``None``: none written)."""
        if size is None:
            return None
        self._count(size)
        return relative

    def image(self, root: str, relative: str | None, alt: str, css: str = "") -> Markup:
        """An ``<img>`` of a site file, lazily loaded, with its size when known."""
        if relative is None:
            return Markup("")
        size = self.sizes.get(relative)
        dimensions = f' width="{size[0]}" height="{size[1]}"' if size else ""
        css_class = f' class="{escape(css)}"' if css else ""
        return Markup(f'<img src="{escape(root + relative)}" alt="{escape(alt)}"'
                      f'{dimensions}{css_class} loading="lazy" decoding="async">')

    def page(self, relative: str, template: str, **context: Any) -> Path:
        """Render ``template`` with ``context`` to ``relative``."""
        text = self.env.get_template(template).render(**context)
        return self.text(relative, text)

    def text(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        data = text.encode()
        path.write_bytes(data)
        self._count(len(data))
        return path

    def json(self, relative: str, value: Any) -> Path:
        """Write ``value`` as compact JSON (a CUB-size report's is megabytes; no NaN, which
        some parsers refuse). The site as a whole is published atomically
        (:func:`publish`), so its files are written plainly."""
        return self.text(relative, json.dumps(value, separators=(",", ":"),
                                              allow_nan=False) + "\n")

    def assets(self) -> None:
        """Copy the shared CSS and JavaScript into ``assets/``."""
        folder = resources.files("protoexplain.report") / "static"
        for name in ASSETS:
            self.text(f"assets/{name}", (folder / name).read_text())

    def _count(self, size: int) -> None:
        self.files += 1
        self.bytes += size


def staging_folder(out: Path) -> Path:
    """A fresh empty folder beside ``out`` to build a report in; refuses an ``out`` that exists
    and is neither empty nor an earlier report (so that no other folder is ever replaced)."""
    if out.exists() and not is_replaceable(out):
        raise FileExistsError(f"{out} exists and is not a protoexplain report; choose another "
                              "--out or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    for left in out.parent.glob(f".{out.name}.*-*"):  # of a writer killed outright
        kind, _, pid = left.name.rpartition("-")
        if kind.endswith((".partial", ".old")) and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(left, ignore_errors=True)
    staging = out.with_name(f".{out.name}.partial-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    return staging


def _alive(pid: int) -> bool:
    """Whether a process of id ``pid`` runs on this machine."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_replaceable(folder: Path) -> bool:
    """Whether ``folder`` is empty or holds an earlier report (``data.json`` says so)."""
    if not folder.is_dir():
        return False
    if not any(folder.iterdir()):
        return True
    try:
        return json.loads((folder / "data.json").read_text()).get("generator") == MARKER
    except (OSError, ValueError, AttributeError):
        return False


def publish(staging: Path, out: Path) -> Path:
    """Put the finished site ``staging`` in the place of ``out`` (an earlier report there is
    removed only after the new one is in place)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out
