"""Speed of every hdm method against the model's own cost, batched and one at a time.

For each method, in one run on the same model and batch, it measures:

- ``s/sample``: wall time per explained sample, explaining the whole batch at once (the
  faster of two runs);
- ``floor``: the time the model alone needs for the same work, per sample: every forward
  pass the method makes is recorded (input shape, with or without gradient), and each is
  timed on its own (forward, plus backward to the input for gradient passes; median of
  five) and summed.
  For the mask methods this is ``steps x`` one forward and backward pass of the stacked
  masked batch, plus a few reference passes;
- ``ratio``: ``s/sample / floor``, the engine's overhead factor (1.0 = none);
- ``s/sample alone`` and ``speed-up``: the same method run on ``--alone`` samples one at
  a time, and how much faster batching is per sample.

Peers run side by side in the same run, on the same model, images and targets
(``benchmarks/peers.py``): TorchRay's extremal perturbation with ``max_iter`` equal to the
mask methods' steps and one area, which makes the model passes of ``MDM 1 grid`` (MDM with
one grid: one forward and backward pass per image and step), and pytorch-grad-cam's Grad-CAM
on the layer ``hdm.GradCAM`` uses. The second table gives our speed-up over each peer at equal
passes. A peer that is not installed is named, with its install command, and skipped.

``--mixed-precision`` adds a row ``METHOD [bf16]`` for every mask method (bfloat16 autocast;
its floor is the same passes under autocast) and ``--compile SETTING`` a row
``METHOD [compile:SETTING]`` (``hdm.engine.COMPILE_SETTINGS``; its floor is the eager
model's, so a compiled row may go below 1), beside the plain rows of the same run.

Step counts and sample counts are reduced so that the run takes minutes on a CPU; the
ratio and the speed-up are per-step quantities and do not depend on them. Run it with
one thread per process on a shared machine: with two threads competing with other
processes, single passes were up to 10x slower and the timings meaningless.
It prints a Markdown table and writes ``benchmarks/results/hdm_speed_<device>.json``.

Run: ``OMP_NUM_THREADS=1 python benchmarks/hdm_speed.py`` (``make bench``; ``--device cuda``
on a GPU). Like the ``protoexplain`` command it keeps freed memory in the process
(``--malloc-tuning off`` to measure with glibc's defaults; the JSON records which). Results
and what they show: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision
from peers import ExtremalPerturbation, PytorchGradCAM, missing_peers
from torch import Tensor, nn

import hdm
from hdm.engine import COMPILE_SETTINGS
from hdm.hooks import explaining
from hdm.layers import last_convolution
from protoexplain.malloc_tuning import tune_malloc

RESULTS = Path(__file__).parent / "results"


MASK_METHODS = ("MDM", "MDM 1 grid", "HDM", "NeuroMask")
PEER_OF = {"MDM 1 grid": "TorchRay EP", "GradCAM": "pytorch-grad-cam"}
"""Our method and the peer that makes the same model passes per image."""


class PassRecorder(nn.Module):
    """Wraps a model and counts its forward passes by (input shape, gradient enabled)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.passes: Counter[tuple[tuple[int, ...], bool]] = Counter()

    def forward(self, images: Tensor) -> Tensor:
        self.passes[(tuple(images.shape), torch.is_grad_enabled())] += 1
        return self.model(images)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pass_seconds(
    model: nn.Module,
    shape: tuple[int, ...],
    with_grad: bool,
    device: torch.device,
    bfloat16: bool = False,
) -> float:
    """Median of 5 timed forward (and backward to the input) passes on a random batch,
    after an untimed one: a typical pass, as the method's run is a sum of typical steps.
    ``bfloat16``: under bfloat16 autocast, as a ``mixed_precision`` method runs them."""
    images = torch.rand(shape, device=device)
    times = []
    for repeat in range(6):
        inputs = images.clone().requires_grad_(with_grad)
        synchronize(device)
        started = time.perf_counter()
        with torch.set_grad_enabled(with_grad), torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=bfloat16
        ):
            output = model(inputs)
            if with_grad:
                torch.autograd.grad(output[:, 0].sum(), inputs)
        synchronize(device)
        if repeat:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


Method = Callable[[Tensor, Tensor], Tensor]


def methods(steps: int, **options: Any) -> dict[str, Callable[[nn.Module], Method]]:
    """The explainers compared, with step and sample counts cut for a CPU run; ``options``
    (``mixed_precision``, ``compile``) go to the mask methods (:data:`MASK_METHODS`)."""
    return {
        "MDM": lambda model: hdm.MDM(model, steps=steps, **options),
        "MDM 1 grid": lambda model: hdm.MDM(model, grid_sizes=(16,), steps=steps, **options),
        "HDM": lambda model: hdm.HDM(
            model, benchmark_steps=steps // 2, auxiliary_steps=steps // 2, **options
        ),
        "NeuroMask": lambda model: hdm.NeuroMask(model, steps=steps, **options),
        "GradCAM": lambda model: hdm.GradCAM(model),
        "SISE": lambda model: hdm.SISE(model, gradient_threshold=0.9),
        "RISE": lambda model: hdm.RISE(model, num_masks=64),
    }


def peer_methods(steps: int, layer: nn.Module) -> dict[str, Callable[[nn.Module], Method]]:
    """The installed peers (:mod:`peers`): TorchRay at the mask methods' steps, Grad-CAM on
    ``layer``."""
    peers: dict[str, Callable[[nn.Module], Method]] = {
        "TorchRay EP": lambda model: ExtremalPerturbation(model, max_iter=steps),
        "pytorch-grad-cam": lambda model: PytorchGradCAM(model, layer),
    }
    return {name: build for name, build in peers.items() if name not in missing_peers()}


def make_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "resnet18":
        return torchvision.models.resnet18(num_classes=10)
    if name == "small":
        return nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, 10),
        )
    raise ValueError(f"--models entries must be 'resnet18' or 'small', got {name!r}")


def timed(
    explainer: Method, images: Tensor, targets: Tensor, device: torch.device, repeats: int
) -> float:
    """Fastest of ``repeats`` timed calls."""
    times = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        explainer(images, targets)
        synchronize(device)
        times.append(time.perf_counter() - started)
    return min(times)


def variants(mixed_precision: bool, compile_setting: str | None) -> dict[str, dict[str, Any]]:
    """Row suffix -> options of the mask methods: the plain run, then the asked variants."""
    chosen: dict[str, dict[str, Any]] = {"": {}}
    if mixed_precision:
        chosen[" [bf16]"] = {"mixed_precision": True}
    if compile_setting:
        chosen[f" [compile:{compile_setting}]"] = {"compile": compile_setting}
    return chosen


def measure(
    model_name: str,
    size: int,
    batch: int,
    steps: int,
    alone: int,
    device: torch.device,
    selected: set[str] | None = None,
    mixed_precision: bool = False,
    compile_setting: str | None = None,
) -> list[dict[str, Any]]:
    """One row per method (and variant, and installed peer) on ``model_name``; see the module
    docstring. ``selected``: the method and peer names to run (default: all)."""
    recorder = PassRecorder(make_model(model_name)).to(device).eval()
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, size, size, generator=generator).to(device)
    targets = torch.randint(0, 10, (batch,), generator=generator).to(device)
    layer = last_convolution(recorder.model, images[:1])
    runs: list[tuple[str, str, Callable[[nn.Module], Method], dict[str, Any]]] = []
    for suffix, options in variants(mixed_precision, compile_setting).items():
        for name, build in methods(steps, **options).items():
            if suffix == "" or name in MASK_METHODS:
                runs.append((name, suffix, build, options))
    runs += [(name, "", build, {}) for name, build in peer_methods(steps, layer).items()]
    rows = []
    passes_of: dict[str, dict[tuple[tuple[int, ...], bool], int]] = {}
    for name, suffix, build, options in runs:
        if selected is not None and name not in selected:
            continue
        compiled = bool(options.get("compile"))
        # A compiled forward is traced once, so the recorder would count only its trace:
        # compiled rows run the bare model and take the passes of the plain row.
        explainer = build(recorder.model if compiled else recorder)
        explainer(images[:2], targets[:2])  # warm-up: lazy imports, kernel selection
        if compiled:  # compile for the shapes timed below
            explainer(images, targets)
            explainer(images[:1], targets[:1])
        recorder.passes.clear()
        batched = timed(explainer, images, targets, device, repeats=2) / batch
        if not compiled:
            passes_of[name] = {key: count // 2 for key, count in recorder.passes.items()}
        passes = passes_of[name]
        single = (
            sum(
                timed(explainer, images[i : i + 1], targets[i : i + 1], device, repeats=1)
                for i in range(alone)
            )
            / alone
        )
        with torch.no_grad(), explaining(recorder.model):
            floor = (
                sum(
                    count
                    * pass_seconds(
                        recorder.model, shape, with_grad, device,
                        bfloat16=bool(options.get("mixed_precision")),
                    )
                    for (shape, with_grad), count in passes.items()
                )
                / batch
            )
        rows.append(
            {
                "model": model_name,
                "image_size": size,
                "method": name + suffix,
                "options": options,
                "batch": batch,
                "steps": steps if name in (*MASK_METHODS, "TorchRay EP") else None,
                "seconds_per_sample": batched,
                "floor_seconds_per_sample": floor,
                "ratio": batched / floor,
                "seconds_per_sample_alone": single,
                "speedup": single / batched,
                "passes": [
                    {"shape": list(shape), "gradient": with_grad, "count": count}
                    for (shape, with_grad), count in passes.items()
                ],
            }
        )
        row = rows[-1]
        print(
            f"| {model_name} {size}px | {row['method']} | {batch} | {row['steps'] or '-'} | "
            f"{batched * 1e3:.1f} | {floor * 1e3:.1f} | {row['ratio']:.2f} | "
            f"{single * 1e3:.1f} | {row['speedup']:.1f}x |",
            flush=True,
        )
    return rows


def peer_comparisons(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our speed-up over each peer at equal passes (:data:`PEER_OF`), per model and variant."""
    by_key = {(row["model"], row["method"]): row for row in rows}
    comparisons = []
    for (model, method), row in by_key.items():
        base = method.split(" [")[0]
        peer = by_key.get((model, PEER_OF.get(base, "")))
        if peer is None:
            continue
        ours_passes = sum(p["count"] * p["shape"][0] for p in row["passes"]) / row["batch"]
        peer_passes = sum(p["count"] * p["shape"][0] for p in peer["passes"]) / peer["batch"]
        comparisons.append(
            {
                "model": model,
                "ours": method,
                "peer": peer["method"],
                "passes_per_sample_ours": ours_passes,
                "passes_per_sample_peer": peer_passes,
                "ours_seconds_per_sample": row["seconds_per_sample"],
                "peer_seconds_per_sample": peer["seconds_per_sample"],
                "ours_ratio": row["ratio"],
                "peer_ratio": peer["ratio"],
                "speedup_over_peer": peer["seconds_per_sample"] / row["seconds_per_sample"],
            }
        )
    return comparisons


def speed_record(
    args: argparse.Namespace,
    device: torch.device,
    tuned: bool,
    missing: dict[str, str],
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """The JSON record of a run: command, machine, rows and the peer comparisons."""
    return {
        "command": "OMP_NUM_THREADS=1 python benchmarks/hdm_speed.py "
        + " ".join(
            f"--{key.replace('_', '-')}={value!r}"
            for key, value in vars(args).items()
            if value not in (None, False)
        ),
        "machine": {
            "device": str(device),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "malloc_tuning": tuned,
        },
        "torch": torch.__version__,
        "peers_missing": missing,
        "results": rows,
        "peer_comparisons": peer_comparisons(rows),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--models", default="resnet18,small", help="comma-separated: resnet18, small"
    )
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--steps", type=int, default=6, help="optimisation steps of the mask methods"
    )
    parser.add_argument("--alone", type=int, default=3, help="samples explained one at a time")
    parser.add_argument(
        "--methods",
        help="comma-separated rows to run (default: all), e.g. 'MDM 1 grid,TorchRay EP'",
    )
    parser.add_argument(
        "--mixed-precision", action="store_true",
        help="add a bfloat16-autocast row for every mask method",
    )
    parser.add_argument(
        "--compile", choices=list(COMPILE_SETTINGS),
        help="add a row for every mask method with its masked forward compiled so",
    )
    parser.add_argument(
        "--malloc-tuning", choices=["on", "off"], default="on",
        help="keep freed memory in the process as the protoexplain command does (default on; "
        "see protoexplain/malloc_tuning.py)",
    )
    parser.add_argument(
        "--out", type=Path,
        help="JSON to write (default: benchmarks/results/hdm_speed_<device>.json)",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    tuned = bool(tune_malloc()) if args.malloc_tuning == "on" else False
    missing = missing_peers()
    for peer, install in missing.items():
        print(f"peer {peer} is not installed ({install}, or pip install -e '.[bench]'): "
              "its rows are left out")
    selected = None if args.methods is None else set(args.methods.split(","))
    print(
        "| model | method | batch | steps | ms/sample | floor ms/sample | ratio | "
        "ms/sample alone | speed-up |"
    )
    print("|" + "---|" * 9)
    out = args.out or RESULTS / f"hdm_speed_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for model_name in args.models.split(","):
        rows += measure(
            model_name, args.size, args.batch, args.steps, args.alone, device, selected,
            args.mixed_precision, args.compile,
        )
        record = speed_record(args, device, tuned, missing, rows)
        out.write_text(json.dumps(record, indent=2) + "\n")  # after each model: kept if stopped
    comparisons = record["peer_comparisons"]
    if comparisons:
        print()
        print("| model | ours | peer | model passes per image (ours / peer) | "
              "ms/sample ours | ms/sample peer | ratio ours | ratio peer | speed-up over peer |")
        print("|" + "---|" * 9)
        for c in comparisons:
            print(
                f"| {c['model']} | {c['ours']} | {c['peer']} | "
                f"{c['passes_per_sample_ours']:g} / {c['passes_per_sample_peer']:g} | "
                f"{c['ours_seconds_per_sample'] * 1e3:.1f} | "
                f"{c['peer_seconds_per_sample'] * 1e3:.1f} | {c['ours_ratio']:.2f} | "
                f"{c['peer_ratio']:.2f} | {c['speedup_over_peer']:.1f}x |"
            )
    print(f"wrote {out}")
    return record


if __name__ == "__main__":
    main()
