"""What glibc malloc tuning (protoexplain/malloc_tuning.py) buys and costs, side by side.

Each workload is a ``protoexplain`` command, run in its own process with the tuning on and
off (``PROTOEXPLAIN_MALLOC_TUNING=0``), alternating which goes first, ``--repeats`` times.
From the child's resource usage (``wait4``) it reports the wall time, user and system CPU
time, minor page faults and peak resident memory, and the on/off ratio of their medians.
It also checks that the tuning changes no result: the largest difference of any number in
the runs' ``metrics.json`` and ``benchmark.json`` (timings left out) between all runs.

Workloads:

- ``mini``: the demo's config shrunk to run in about a minute (600 training images, one
  epoch of each phase, a push with HDM, evaluation, and the benchmark of upsample and hdm
  on one image per prototype): the demo's mix of training and learned masks;
- ``demo``: ``protoexplain demo`` itself (about 10 minutes per run on a 2-core CPU);
  with ``--workloads mini,demo``.

glibc's own ``MALLOC_*`` variables and ``GLIBC_TUNABLES`` are removed from the children's
environment, so that "off" means glibc's defaults. Threads are left as a user has them.

    python research/malloc_tuning.py --workloads mini,demo --repeats 2 \\
        --out research/results/malloc_tuning

Prints a Markdown table and writes OUT.json and OUT.md. Results: docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # study_io

from study_io import (
    largest_difference,
    protoexplain_command,
    publish_report,
    result_values,
    run_child,
)

from protoexplain.malloc_tuning import OPT_OUT_VARIABLE, USER_VARIABLES

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "synthetic_protopnet.yaml"

MINI_OVERRIDES = [
    "data.options.num_samples={train: 600, val: 100, test: 200}",
    "training.pretrain_epochs=1",
    "training.epochs=3",
    "training.push_start=2",
    "training.push_every=2",
    "training.last_layer_epochs=1",
    "localization.images_per_prototype=1",
]


def workload_command(name: str, out: Path) -> list[str]:
    """The ``protoexplain`` command line of workload ``name``, writing its run to ``out``."""
    if name == "demo":
        return protoexplain_command("demo", "--out", str(out))
    if name == "mini":
        return protoexplain_command("train", str(CONFIG), "--out", str(out),
                                    overrides=MINI_OVERRIDES)
    raise ValueError(f"unknown workload {name!r}; choose mini or demo")


def measure(command: list[str], tuned: bool) -> dict[str, float]:
    """Run ``command`` with the tuning on or off; its wall time and resource usage."""
    env = {key: value for key, value in os.environ.items() if key not in USER_VARIABLES}
    env[OPT_OUT_VARIABLE] = "1" if tuned else "0"
    return run_child(command, env)


def run_workload(name: str, repeats: int,
                 scratch: Path) -> tuple[dict[str, list[dict[str, float]]], float]:
    """``repeats`` measurements per mode, the order alternating (off first on even rounds),
    and the largest difference of the runs' results (:func:`largest_difference`)."""
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    values = []
    for round_ in range(repeats):
        for mode in (("off", "on") if round_ % 2 == 0 else ("on", "off")):
            out = scratch / f"{name}-{mode}-{round_}"
            runs[mode].append(measure(workload_command(name, out), tuned=mode == "on"))
            values.append(result_values(out))
            print(f"{name} {mode} round {round_}: {runs[mode][-1]['wall_s']:.1f} s",
                  file=sys.stderr)
    return runs, largest_difference(values)


def summarise(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Median of every quantity per mode, and the on/off ratio of the medians."""
    medians = {mode: {key: statistics.median(run[key] for run in measured)
                      for key in measured[0]} for mode, measured in runs.items()}
    medians["on/off"] = {key: medians["on"][key] / medians["off"][key]
                         if medians["off"][key] else float("nan") for key in medians["on"]}
    return medians


def table(results: dict[str, dict[str, Any]], repeats: int) -> str:
    columns = ["wall_s", "user_s", "sys_s", "minor_faults", "max_rss_mib"]
    lines = [f"Medians of {repeats} runs per mode, run alternately on one machine "
             f"({platform.node()}, {os.cpu_count()} CPUs, OMP_NUM_THREADS="
             f"{os.environ.get('OMP_NUM_THREADS', 'unset')}).", "",
             "| workload | malloc tuning | " + " | ".join(columns) + " |",
             "|---" * (len(columns) + 2) + "|"]
    for name, result in results.items():
        for mode in ("off", "on", "on/off"):
            row = result["summary"][mode]
            cells = [f"{row[key]:.3f}" if mode == "on/off" else
                     f"{row[key]:.0f}" if key == "minor_faults" else f"{row[key]:.1f}"
                     for key in columns]
            lines.append(f"| {name} | {mode} | " + " | ".join(cells) + " |")
    lines += ["", "Largest difference of any result (metrics.json, benchmark.json; timings left "
              "out) between the runs: " + ", ".join(
                  f"{name} {result['largest_result_difference']:.3g}"
                  for name, result in results.items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workloads", default="mini", help="comma-separated: mini, demo")
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode (default 3)")
    parser.add_argument("--out", type=Path, required=True, help="output path without extension")
    args = parser.parse_args(argv)
    names = args.workloads.split(",")
    for name in names:
        try:
            workload_command(name, Path())  # refuse an unknown workload before any run
        except ValueError as error:
            parser.error(str(error))
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="malloc-tuning-") as scratch:
        for name in names:
            runs, difference = run_workload(name, args.repeats, Path(scratch))
            results[name] = {"runs": runs, "summary": summarise(runs),
                             "largest_result_difference": difference}
    record = {"repeats": args.repeats, "machine": platform.node(), "cpus": os.cpu_count(),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "workloads": results}
    publish_report(args.out, table(results, args.repeats), record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
