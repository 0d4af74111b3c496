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
from torch import Tensor, nn

import hdm
from hdm.hooks import explaining
from protoexplain.malloc_tuning import tune_malloc

RESULTS = Path(__file__).parent / "results"


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
    model: nn.Module, shape: tuple[int, ...], with_grad: bool, device: torch.device
) -> float:
    """Median of 5 timed forward (and backward to the input) passes on a random batch,
    after an untimed one: a typical pass, as the method's run is a sum of typical steps."""
    images = torch.rand(shape, device=device)
    times = []
    for repeat in range(6):
        inputs = images.clone().requires_grad_(with_grad)
        synchronize(device)
        started = time.perf_counter()
        with torch.set_grad_enabled(with_grad):
            output = model(inputs)
            if with_grad:
                torch.autograd.grad(output[:, 0].sum(), inputs)
        synchronize(device)
        if repeat:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def methods(steps: int) -> dict[str, Callable[[nn.Module], hdm.Explainer]]:
    """The explainers compared, with step and sample counts cut for a CPU run."""
    return {
        "MDM": lambda model: hdm.MDM(model, steps=steps),
        "HDM": lambda model: hdm.HDM(model, benchmark_steps=steps // 2, auxiliary_steps=steps // 2),
        "NeuroMask": lambda model: hdm.NeuroMask(model, steps=steps),
        "GradCAM": lambda model: hdm.GradCAM(model),
        "SISE": lambda model: hdm.SISE(model, gradient_threshold=0.9),
        "RISE": lambda model: hdm.RISE(model, num_masks=64),
    }


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
    explainer: hdm.Explainer, images: Tensor, targets: Tensor, device: torch.device, repeats: int
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


def measure(
    model_name: str, size: int, batch: int, steps: int, alone: int, device: torch.device
) -> list[dict[str, Any]]:
    recorder = PassRecorder(make_model(model_name)).to(device).eval()
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, size, size, generator=generator).to(device)
    targets = torch.randint(0, 10, (batch,), generator=generator).to(device)
    rows = []
    for name, build in methods(steps).items():
        explainer = build(recorder)
        explainer(images[:2], targets[:2])  # warm-up: lazy imports, kernel selection
        recorder.passes.clear()
        batched = timed(explainer, images, targets, device, repeats=2) / batch
        passes = {key: count // 2 for key, count in recorder.passes.items()}
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
                    count * pass_seconds(recorder.model, shape, with_grad, device)
                    for (shape, with_grad), count in passes.items()
                )
                / batch
            )
        rows.append(
            {
                "model": model_name,
                "image_size": size,
                "method": name,
                "batch": batch,
                "steps": steps if name in ("MDM", "HDM", "NeuroMask") else None,
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
            f"| {model_name} {size}px | {name} | {batch} | {row['steps'] or '-'} | "
            f"{batched * 1e3:.1f} | {floor * 1e3:.1f} | {row['ratio']:.2f} | "
            f"{single * 1e3:.1f} | {row['speedup']:.1f}x |",
            flush=True,
        )
    return rows


def main() -> None:
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
        "--malloc-tuning", choices=["on", "off"], default="on",
        help="keep freed memory in the process as the protoexplain command does (default on; "
        "see protoexplain/malloc_tuning.py)",
    )
    parser.add_argument(
        "--out", type=Path,
        help="JSON to write (default: benchmarks/results/hdm_speed_<device>.json)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    tuned = bool(tune_malloc()) if args.malloc_tuning == "on" else False
    print(
        "| model | method | batch | steps | ms/sample | floor ms/sample | ratio | "
        "ms/sample alone | speed-up |"
    )
    print("|" + "---|" * 9)
    rows = []
    for model_name in args.models.split(","):
        rows += measure(model_name, args.size, args.batch, args.steps, args.alone, device)
    record = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/hdm_speed.py "
        + " ".join(f"--{key.replace('_', '-')}={value}" for key, value in vars(args).items()),
        "machine": {
            "device": str(device),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "malloc_tuning": tuned,
        },
        "torch": torch.__version__,
        "results": rows,
    }
    out = args.out or RESULTS / f"hdm_speed_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
