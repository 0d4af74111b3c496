"""Where a mask method's time goes beyond the model: a ``torch.profiler`` table of one run.

It explains one batch with MDM or HDM (the speed benchmark's models, random weights) under
``torch.profiler`` and sorts the operators by their own time (``self_cpu_time_total``, or
``self_device_time_total`` on a GPU), so the engine's own work (mask upsampling, the blend, the
losses, the optimiser) shows beside the model's convolutions. It also counts the
device-to-host copies (``aten::_local_scalar_dense``, what ``.item()`` and ``bool(tensor)``
run), the host synchronisations, and the ``aten`` operator calls, each a kernel launch or more
on a GPU, where launching costs more than small operators run. Prints the table and writes
``benchmarks/results/hdm_profile_<method>_<model>_<device>.json`` (and, with ``--trace``, a
Chrome trace that chrome://tracing or https://ui.perfetto.dev opens).

Run: ``OMP_NUM_THREADS=1 python benchmarks/hdm_profile.py --method MDM --model resnet18``
(``--device cuda --size 224 --batch 32`` on a GPU). Results: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from hdm_speed import make_model, synchronize
from torch.profiler import ProfilerActivity, profile

import hdm

RESULTS = Path(__file__).parent / "results"

def explainer(method: str, model: torch.nn.Module, steps: int, options: dict) -> hdm.Explainer:
    if method == "MDM":
        return hdm.MDM(model, steps=steps, **options)
    if method == "HDM":
        return hdm.HDM(model, benchmark_steps=steps // 2, auxiliary_steps=steps // 2, **options)
    raise ValueError(f"--method must be MDM or HDM, got {method!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="MDM", help="MDM or HDM")
    parser.add_argument("--model", default="resnet18", help="resnet18 or small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--mixed-precision", action="store_true",
                        help="bfloat16 autocast of the model (the explainers' option)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the masked forward (the explainers' option)")
    parser.add_argument("--rows", type=int, default=25, help="operators in the printed table")
    parser.add_argument("--trace", action="store_true", help="also write a Chrome trace")
    parser.add_argument("--out", type=Path, help="JSON to write (default: see above)")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = make_model(args.model).to(device).eval()
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch, 3, args.size, args.size, generator=generator).to(device)
    targets = torch.randint(0, 10, (args.batch,), generator=generator).to(device)
    options = {
        key: True
        for key, chosen in (("mixed_precision", args.mixed_precision), ("compile", args.compile))
        if chosen
    }
    method = explainer(args.method, model, args.steps, options)
    method(images, targets)  # warm-up: kernel selection, compilation
    synchronize(device)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as profiler:
        method(images, targets)
        synchronize(device)
    sort_by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    averages = profiler.key_averages()
    print(averages.table(sort_by=sort_by, row_limit=args.rows))
    time_key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = sorted(
        (
            {
                "name": event.key,
                "calls": event.count,
                "self_us": getattr(event, time_key),
                "self_cpu_us": event.self_cpu_time_total,
            }
            for event in averages
        ),
        key=lambda event: -event["self_us"],
    )
    total = sum(event["self_us"] for event in events)
    syncs = sum(e["calls"] for e in events if e["name"] == "aten::_local_scalar_dense")
    calls = sum(e["calls"] for e in events if e["name"].startswith("aten::"))
    print(f"host synchronisations (aten::_local_scalar_dense): {syncs}")
    print(f"aten operator calls: {calls} ({calls / args.steps:.0f} per step)")
    tag = f"{args.method.lower()}_{args.model}_{device.type}"
    if args.mixed_precision:
        tag += "_bf16"
    if args.compile:
        tag += "_compiled"
    out = args.out or RESULTS / f"hdm_profile_{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/hdm_profile.py "
        + " ".join(f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()),
        "machine": {
            "device": str(device),
            "platform": platform.platform(),
            "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        },
        "torch": torch.__version__,
        "time_unit": "microseconds",
        "total_self_us": total,
        "host_synchronisations": syncs,
        "aten_operator_calls": calls,
        "operators": events[: args.rows * 2],
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    if args.trace:
        profiler.export_chrome_trace(str(out.with_suffix(".trace.json")))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
