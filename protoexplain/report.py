"""The human-readable side of a run directory: one PNG per prototype and ``report.html``."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset
from tqdm.auto import tqdm

from protoexplain.atomic_io import atomic_write_text
from protoexplain.visualize import (
    display_scale,
    hstack,
    localization_tiles,
    receptive_field_tile,
    write_png,
)
from prototypes import ProjectionRecord

PICTURE_DIR = "prototypes"


def write_prototype_pictures(run_dir: Path, dataset: Dataset, records: list[ProjectionRecord],
                             localizations: dict[str, dict[str, Any]],
                             class_names: list[str], *, progress: bool = True) -> list[str]:
    """For each prototype: its source image with the receptive field, then one panel per
    localization method (map overlay and high-activation box). Returns relative paths."""
    paths = []
    for position, record in enumerate(tqdm(records, desc="prototype pictures",
                                           disable=not progress)):
        image = dataset[record.sample_index]["image"]
        scale = display_scale(image.shape[-1])
        source = receptive_field_tile(image, record.receptive_field_box,
                                      f"p{record.prototype} {class_names[record.class_index]}",
                                      scale=scale)
        maps = {name: (found["maps"][position], found["boxes"][position].tolist())
                for name, found in localizations.items()}
        tiles = [source] + localization_tiles(image, maps, scale=scale)
        relative = f"{PICTURE_DIR}/prototype_{record.prototype:04d}.png"
        write_png(run_dir / relative, hstack(tiles))
        paths.append(relative)
    return paths


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in columns) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def write_html_report(run_dir: Path, title: str, metrics: dict[str, Any],
                      projection: list[dict[str, Any]], benchmark_markdown: str = "") -> Path:
    """A single page: metrics, the localization benchmark (its Markdown table, shown as
    preformatted text), then every prototype's picture and record."""
    scalar_rows = [{"metric": k, "value": v} for k, v in metrics.items()
                   if isinstance(v, (int, float, str))]
    cards = []
    for row in projection:
        boxes = ", ".join(f"{name} {found['box']}" for name, found in row["localization"].items())
        cards.append(
            f"<figure><img src='{html.escape(row['picture'])}' alt='prototype "
            f"{row['prototype']}'><figcaption>prototype {row['prototype']} "
            f"(class {html.escape(row['class_name'])}) from training sample "
            f"{row['sample_index']} at latent {tuple(row['latent_position'])}, "
            f"distance {row['distance']:.4f}; boxes (y0, y1, x0, x1): {html.escape(boxes)}"
            "</figcaption></figure>")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
td, th {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }}
figure {{ display: inline-block; margin: 0.5em; vertical-align: top; max-width: 820px; }}
figcaption {{ font-size: 0.8em; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Metrics</h2>
{_table(scalar_rows, ["metric", "value"])}
<h2>Localization benchmark</h2>
<p>Every method on the same prototypes and test images (also in benchmark.json and
benchmark.md).</p>
<pre>{html.escape(benchmark_markdown) or "not run"}</pre>
<h2>Prototypes</h2>
<p>Left: the training image each prototype was projected onto, with the receptive field of
its latent patch (cyan). Then, per localization method, the map of where the prototype lives
in that image and its high-activation box (yellow).</p>
{''.join(cards)}
</body></html>
"""
    return atomic_write_text(run_dir / "report.html", page)
