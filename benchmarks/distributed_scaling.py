"""How localization and training scale with the number of torch.distributed processes.

For each process count N of ``--processes``, the script starts itself under torchrun
(``python -m torch.distributed.run --nproc_per_node N``, gloo on the CPU, nccl with
``--device cuda``) and measures, on a randomly initialised ProtoPNet over the SyntheticParts
data set (weights do not change the cost):

- ``hdm pairs/s``: (image, prototype) pairs localized with HDM per second of wall time,
  the pairs shared among the processes by batches and gathered on every process
  (:func:`protoexplain.distributed.map_batches`, as the benchmark and the report do);
- ``train images/s``: training images per second of joint-phase epochs under
  DistributedDataParallel, with the global batch ``--batch-size`` split among the processes
  (``protoexplain.factory.make_loader(..., shard=True)``, as ``protoexplain train``).

Each timing starts after a barrier and ends when the last process is done (the slowest
process sets it); ``speedup`` is relative to the first row. On a CPU every process gets
``--threads-per-process`` torch threads (default 1), as every process gets its own GPU on a
GPU machine: N processes use N times the compute of one, and the speedup says how much of
it the sharing turns into throughput. (Sharing a fixed number of threads out among the
processes instead measured nothing useful on a loaded machine: one process with two
intra-op threads on oversubscribed cores was several times slower than two processes with
one thread each.) ``--processes 1 2 1 2`` repeats the counts, to see the spread.

Run: ``python benchmarks/distributed_scaling.py --processes 1 2 --out
benchmarks/results/distributed_scaling_cpu`` (add ``--device cuda`` on GPUs). It prints a
Markdown table and writes ``OUT.json`` and ``OUT.md``. Results: docs/distributed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _config(args: argparse.Namespace):
    from protoexplain.config import load_config

    return load_config(None, [
        f"device={args.device}", f"data.batch_size={args.batch_size}",
        f"data.eval_batch_size={args.pair_batch}", "model.backbone=small_cnn",
        f"model.backbone_options={{width: {args.width}}}", "model.prototypes_per_class=2",
        "model.prototype_dim=32",
        f"data.options={{image_size: {args.image_size}, num_classes: 4, "
        f"num_samples: {args.train_images}}}"])


def _timed(work) -> float:
    """Wall seconds of ``work()`` on all processes: from a barrier to the last one done."""
    from protoexplain import distributed

    device = torch.device("cuda") if torch.cuda.is_available() and \
        torch.distributed.get_backend() == "nccl" else torch.device("cpu")
    distributed.barrier()
    started = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize()
    distributed.barrier()
    return time.perf_counter() - started


def worker(args: argparse.Namespace) -> None:
    """One process of a launch: measure both workloads; rank 0 writes ``args.result``."""
    from protoexplain import distributed
    from protoexplain.factory import build_model, build_run_data, make_loader, resolve_device
    from protoexplain.training_run import loss_coefficients
    from prototypes import localize, protopnet_loss
    from prototypes.training import build_optimizer, run_epoch, set_phase

    world = int(os.environ["WORLD_SIZE"])
    if args.device == "cpu":
        torch.set_num_threads(args.threads_per_process)
    config = _config(args)
    device = resolve_device(config.device)  # joins the process group
    torch.manual_seed(0)
    data = build_run_data(config)
    model = build_model(config, data.num_classes, data.image_size).to(device).eval()

    images = torch.stack([data.test[i % len(data.test)]["image"] for i in range(args.pairs)])
    prototypes = torch.arange(args.pairs) % model.num_prototypes
    options = {"benchmark_steps": args.hdm_steps, "auxiliary_steps": args.hdm_steps}

    def localize_batch(batch: int) -> torch.Tensor:
        rows = slice(batch * args.pair_batch, (batch + 1) * args.pair_batch)
        return localize(model, images[rows].to(device), prototypes[rows].to(device),
                        method="hdm", **options).maps.cpu()

    batches = -(-args.pairs // args.pair_batch)
    localize_batch(0)  # warm-up: allocations, kernels
    hdm_seconds = _timed(lambda: distributed.map_batches(batches, localize_batch))

    per_process = distributed.per_process_batch(args.batch_size)
    set_phase(model, "joint")
    optimizer = build_optimizer(model, "joint").optimizer
    parallel = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None) if world > 1 else None
    coefs = loss_coefficients(config)

    def train_epochs() -> None:
        for epoch in range(args.epochs):
            loader = make_loader(data.train, per_process, config, shuffle_seed=epoch, shard=True)
            run_epoch(model, loader, optimizer, coefs, train=True, device=device,
                      loss_fn=protopnet_loss, forward=parallel,
                      reduce=distributed.all_reduce_sum if world > 1 else None)

    train_seconds = _timed(train_epochs)
    if distributed.is_main_process():
        Path(args.result).write_text(json.dumps({
            "processes": world, "device": str(device), "threads_per_process":
                torch.get_num_threads() if device.type == "cpu" else None,
            "hdm_pairs": args.pairs, "hdm_seconds": round(hdm_seconds, 3),
            "hdm_pairs_per_second": round(args.pairs / hdm_seconds, 3),
            "train_images": args.epochs * len(data.train),
            "train_seconds": round(train_seconds, 3),
            "train_images_per_second": round(args.epochs * len(data.train) / train_seconds, 2),
        }))
    distributed.leave()


def launch(args: argparse.Namespace, processes: int) -> dict:
    """Run the worker on ``processes`` processes under torchrun; its measurements."""
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "result.json"
        forwarded = [a for a in sys.argv[1:] if a != "--worker"]
        command = [sys.executable, "-m", "torch.distributed.run",
                   "--nproc_per_node", str(processes), "--master_addr", "127.0.0.1",
                   "--master_port", str(_free_port()), __file__, *forwarded, "--worker",
                   "--result", str(result)]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        subprocess.run(command, check=True, env=env, timeout=args.timeout)
        return json.loads(result.read_text())


def table(rows: list[dict]) -> str:
    base = rows[0]
    lines = ["| processes | hdm pairs/s | speedup | train images/s | speedup |",
             "|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(
            f"| {row['processes']} | {row['hdm_pairs_per_second']:.2f} | "
            f"{row['hdm_pairs_per_second'] / base['hdm_pairs_per_second']:.2f}x | "
            f"{row['train_images_per_second']:.1f} | "
            f"{row['train_images_per_second'] / base['train_images_per_second']:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads-per-process", type=int, default=1,
                        help="torch threads of each CPU process (default 1)")
    parser.add_argument("--pairs", type=int, default=16, help="HDM pairs (default 16)")
    parser.add_argument("--pair-batch", type=int, default=4, help="pairs per localize call")
    parser.add_argument("--hdm-steps", type=int, default=10,
                        help="HDM benchmark and auxiliary steps (default 10)")
    parser.add_argument("--train-images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16, help="global training batch")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=8, help="small_cnn width")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per launch")
    parser.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    rows = [launch(args, count) for count in args.processes]
    text = table(rows)
    print(text)
    if args.out:
        machine = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                   "torch": torch.__version__,
                   "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None}
        settings = {k: v for k, v in vars(args).items()
                    if k not in ("worker", "result", "out", "timeout")}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(
            {"machine": machine, "settings": settings, "rows": rows}, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(
            "# Distributed scaling\n\n" + text + f"\nCommand: `python benchmarks/"
            f"distributed_scaling.py {' '.join(sys.argv[1:])}`\n")


if __name__ == "__main__":
    main()
