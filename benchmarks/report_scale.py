"""How long a CUB-size report takes to write, how big it is, and how fast a browser opens it.

A randomly initialised ProtoPNet the size of the CUB-200-2011 recipes (200 classes, 10
prototypes per class: 2000 prototypes, 224 px images, a ResNet trunk) is pushed onto
generated images (an image folder of random coloured shapes on noise, a few per class), then
:func:`protoexplain.report.write_report` writes its report. Weights and images are random:
the report's size and time do not depend on what the model learned, only on the counts.

It prints a Markdown table and writes ``OUT.json`` and ``OUT.md``:

- ``seconds``: the report's wall time, in all and per prototype;
- ``upsample localization``: the part of it spent in ``prototypes.localize`` (upsampling:
  one forward pass per (image, prototype) pair), in all and per pair;
- ``files``, ``MiB``: what the site holds; ``largest page``: its biggest HTML file;
- with chromium installed, the time the browser takes to open the index and a class page
  (to the ``load`` event, every image on screen decoded).

Run: ``OMP_NUM_THREADS=2 python benchmarks/report_scale.py --out
benchmarks/results/report_scale_cpu`` (``--device cuda`` on a GPU; ``--test-per-class``
and ``--train-per-class`` scale the generated data). Results: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from protoexplain.config import load_config
from protoexplain.factory import build_dataset, build_model, make_loader
from protoexplain.report import write_report
from protoexplain.run_dir import LoadedRun
from prototypes import push

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def generate_images(root: Path, classes: int, per_split: dict[str, int], size: int,
                    seed: int = 0) -> None:
    """An image folder ``root/<split>/<class>/<n>.jpg`` of random shapes on noise."""
    rng = np.random.default_rng(seed)
    for split, count in per_split.items():
        for k in range(classes):
            folder = root / split / f"class_{k:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(count):
                image = rng.integers(0, 256, (size // 8, size // 8, 3), np.uint8)
                image = cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)
                for _ in range(3):
                    centre = tuple(int(v) for v in rng.integers(size // 8, size - size // 8, 2))
                    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
                    cv2.circle(image, centre, int(rng.integers(size // 16, size // 5)),
                               colour, -1)
                cv2.imwrite(str(folder / f"{n}.jpg"), image)


def open_times(site: Path, class_page: str) -> dict[str, float]:
    """Seconds chromium takes to load the index and one class page from ``file://``
    (to the ``load`` event, then until the images on screen are decoded)."""
    from playwright.sync_api import sync_playwright

    times = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        for name, path in (("index", site / "index.html"), ("class page", site / class_page)):
            started = time.perf_counter()
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            page.evaluate("Promise.all(Array.from(document.images).filter((i) => "
                          "i.getBoundingClientRect().top < innerHeight).map((i) => "
                          "i.decode().catch(() => null)))")
            times[name] = time.perf_counter() - started
        browser.close()
    return times


def table(record: dict) -> str:
    rows = [
        ("model", f"{record['backbone']} {record['image_size']} px, {record['classes']} "
                  f"classes, {record['prototypes']} prototypes (random weights)"),
        ("generated images", f"{record['train_images']} train, {record['test_images']} test"),
        ("local explanations", f"{record['local_explanations']} (top 3 prototypes)"),
        ("nearest patches per prototype", str(record["nearest"])),
        ("report seconds", f"{record['seconds']:.1f}"),
        ("seconds per prototype", f"{record['seconds_per_prototype']:.4f}"),
        ("upsample localization seconds", f"{record['localization_seconds']:.1f} "
                                          f"({record['localization_pairs']} pairs, "
                                          f"{record['seconds_per_pair'] * 1000:.1f} ms/pair)"),
        ("files", str(record["files"])),
        ("MiB", f"{record['bytes'] / 2**20:.1f} (data.json "
                f"{record['data_json_bytes'] / 2**20:.1f})"),
        ("largest page", f"{record['largest_page']} ({record['largest_page_kib']:.0f} KiB)"),
    ]
    rows += [(f"browser opens {name}", f"{seconds:.2f} s")
             for name, seconds in record.get("browser_seconds", {}).items()]
    lines = ["| quantity | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--prototypes-per-class", type=int, default=10)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--train-per-class", type=int, default=2)
    parser.add_argument("--test-per-class", type=int, default=2)
    parser.add_argument("--test-images", type=int, default=24,
                        help="local explanations (the report's --test-images)")
    parser.add_argument("--nearest", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/report_scale_cpu"))
    parser.add_argument("--keep", type=Path, help="write the run and its report here")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    parser.add_argument("--no-browser", action="store_true", help="skip the browser timing")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="report_scale_")) if args.keep is None else args.keep
    started = time.perf_counter()
    generate_images(work / "images", args.classes,
                    {"train": args.train_per_class, "test": args.test_per_class},
                    args.image_size)
    generation = time.perf_counter() - started
    torch.manual_seed(0)
    config = load_config("cub_protopnet_resnet34", [
        f"device={args.device}", "data.dataset=ImageFolder", f"data.root={work / 'images'}",
        f"data.options={{image_size: {args.image_size}}}", "data.num_workers=0",
        f"model.backbone={args.backbone}", "model.pretrained=null",
        f"model.prototypes_per_class={args.prototypes_per_class}",
        "localization.push_method=upsample", "data.eval_batch_size=50"])
    push_set = build_dataset(config, "train", augment=False)
    model = build_model(config, push_set.num_classes, args.image_size,
                        load_pretrained=False).to(args.device).eval()
    started = time.perf_counter()
    records = push(model, make_loader(push_set, config.data.eval_batch_size, config))
    push_seconds = time.perf_counter() - started
    run = LoadedRun(path=work / "run", config=config, model=model, records=records,
                    device=torch.device(args.device))
    summary = write_report(run, methods=["upsample"], test_images=args.test_images,
                           nearest=args.nearest, progress=args.progress)
    site = summary.path.parent
    pages = sorted(site.rglob("*.html"), key=lambda p: p.stat().st_size)
    record = {
        "backbone": args.backbone, "image_size": args.image_size, "classes": args.classes,
        "prototypes": len(records), "train_images": len(push_set),
        "test_images": len(build_dataset(config, "test", augment=False)),
        "local_explanations": summary.local_explanations, "nearest": args.nearest,
        "device": args.device, "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "image_generation_seconds": generation, "push_seconds": push_seconds,
        "seconds": summary.seconds, "seconds_per_prototype": summary.seconds / len(records),
        "localization_seconds": summary.localization_seconds["upsample"],
        "localization_pairs": summary.localization_pairs["upsample"],
        "seconds_per_pair": (summary.localization_seconds["upsample"]
                             / max(1, summary.localization_pairs["upsample"])),
        "files": summary.files, "bytes": summary.bytes,
        "data_json_bytes": (site / "data.json").stat().st_size,
        "largest_page": str(pages[-1].relative_to(site)),
        "largest_page_kib": pages[-1].stat().st_size / 1024,
    }
    if CHROMIUM.is_file() and not args.no_browser:
        class_page = json.loads((site / "data.json").read_text())["prototypes"][0]["page"]
        record["browser_seconds"] = open_times(site, class_page.split("#")[0])
    text = table(record)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(text)
    return record


if __name__ == "__main__":
    main()
