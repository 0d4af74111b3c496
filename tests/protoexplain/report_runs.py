"""What the report tests share: a tiny pushed run with a benchmark and its report, a tiny
pushed XProtoNet run, and reading the links of a written page."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import torch

from protoexplain.benchmark import run_benchmark, write_benchmark
from protoexplain.config import load_config
from protoexplain.factory import build_dataset, build_model, make_loader
from protoexplain.pipeline import metric_settings
from protoexplain.report import write_report
from protoexplain.run_dir import LoadedRun
from prototypes import push_xprotonet
from tests.protoexplain.tiny_runs import pushed_run, write_run_dir

REPORT_RUN = [
    "data.options={image_size: 32, num_classes: 3, num_samples: 12, clutter: 0}",
    "model.prototypes_per_class=2",
]
"""Three SyntheticParts classes, 12 images per split, two prototypes per class."""
METHODS = ["upsample", "centre"]


def report_run(path: Path, *, benchmark: bool = True) -> LoadedRun:
    """The untrained, pushed run of :data:`REPORT_RUN` written as a run directory at
    ``path``, with a benchmark of :data:`METHODS` (two test images per prototype) unless
    ``benchmark`` is false."""
    run = pushed_run(path, *REPORT_RUN)
    write_run_dir(run)
    if not benchmark:
        return run
    test_set = build_dataset(run.config, "test", augment=False)
    results = run_benchmark(run.model, test_set, {name: {} for name in METHODS},
                            images_per_prototype=2,
                            settings=metric_settings(run.config, stability=False, sanity=False),
                            batch_size=16, progress=False)
    write_benchmark(results, run.path)
    return run


def written_report(path: Path) -> tuple[LoadedRun, Path]:
    """:func:`report_run` and its report (both methods, 6 local explanations, 3 nearest
    patches); returns the run and the report's folder."""
    run = report_run(path)
    summary = write_report(run, methods=METHODS, test_images=6, nearest=3, progress=False)
    return run, summary.path.parent


TINY_XPROTONET = [
    "device=cpu", "data.batch_size=8", "data.eval_batch_size=16",
    "model.backbone=small_cnn", "model.backbone_options={width: 4}",
    "model.prototypes_per_class=2", "model.prototype_dim=8",
    "data.dataset=SyntheticRadiographs", "data.options={image_size: 32, num_samples: 24}",
    "model.architecture=xprotonet", "localization.push_method=upsample",
    "localization.metric_options={score: pooled}",
]
"""A five-finding SyntheticRadiographs XProtoNet of 32 px images, 24 per split."""


def pushed_xprotonet_run(path: Path) -> LoadedRun:
    """The untrained XProtoNet of :data:`TINY_XPROTONET` pushed onto its training set,
    written as a run directory at ``path``."""
    torch.manual_seed(0)
    config = load_config(None, TINY_XPROTONET)
    push_set = build_dataset(config, "train", augment=False)
    model = build_model(config, push_set.num_classes, 32).eval()
    records = push_xprotonet(model, make_loader(push_set, config.data.eval_batch_size, config))
    run = LoadedRun(path=path, config=config, model=model, records=records,
                    device=torch.device("cpu"))
    write_run_dir(run)
    return run


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[tuple[str, str]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"])
        for name in ("href", "src"):
            if values.get(name):
                self.targets.append((tag, values[name]))


def page_links(path: Path) -> tuple[list[tuple[str, str]], set[str]]:
    """The (tag, href or src) of every link, image, script and stylesheet of a page, and the
    ids of its elements."""
    parser = _Links()
    parser.feed(path.read_text())
    return parser.targets, parser.ids


def broken_links(site: Path) -> list[str]:
    """Every relative link of every page under ``site`` that names a missing file or anchor."""
    broken = []
    for page in sorted(site.rglob("*.html")):
        targets, _ = page_links(page)
        for _, target in targets:
            if re.match(r"^[a-z]+:", target):
                if not target.startswith("data:"):
                    broken.append(f"{page.relative_to(site)}: external {target}")
                continue
            file, _, anchor = target.partition("#")
            resolved = (page.parent / file).resolve() if file else page
            if not resolved.is_file():
                broken.append(f"{page.relative_to(site)}: {target} (no file)")
            elif anchor and anchor not in page_links(resolved)[1]:
                broken.append(f"{page.relative_to(site)}: {target} (no anchor)")
    return broken
