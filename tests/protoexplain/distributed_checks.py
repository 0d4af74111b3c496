"""What tests/protoexplain/test_distributed.py runs on several processes with torchrun.

``python -m torch.distributed.run --nproc_per_node 2 tests/protoexplain/distributed_checks.py
OUT``, on a tiny CPU model: push, the localization benchmark, the report (into
``OUT/report``), a short training run, the same run interrupted and resumed, a batch the
processes cannot share and the tie order of the push agreement, whose results rank 0 writes
to ``OUT/results.json``; then ``protoexplain train`` into ``OUT/died`` (:func:`dying_run`),
in which rank 1 exits abruptly in its third training epoch, so the launch as a whole fails
(one launch: starting the processes is most of the time).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

import protoexplain.training_run
from protoexplain import distributed
from protoexplain.benchmark import run_benchmark
from protoexplain.cli import main as protoexplain_main
from protoexplain.config import ConfigError, load_config, save_config
from protoexplain.factory import build_dataset, build_model, make_loader, resolve_device
from protoexplain.metrics.localization import LocalizationSettings
from protoexplain.report import write_report
from protoexplain.training_run import train
from prototypes import push
from prototypes.push import nearest_across_processes
from tests.protoexplain.tiny_runs import (
    PUSHED_RUN,
    interrupt_training_after,
    pushed_run,
    tiny_run,
)

BENCHMARK_METHODS = {"upsample": {}, "hdm": {"benchmark_steps": 3, "auxiliary_steps": 3}}
"""Methods of the benchmark check: the baseline and a learned mask (few steps)."""

SHARDED = ["data.eval_batch_size=3"]
"""Push and benchmark batches of 3, so that the 8 images make uneven shares (batches 0 and 2
on rank 0, batch 1 on rank 1)."""

TRAINING = [*tiny_run(epochs=3, push_every=1, prototypes_per_class=2),
            "training.warm_epochs=2",
            "data.options={image_size: 32, num_classes: 2, num_samples: 16, clutter: 0}",
            "localization.push_method=upsample"]
"""A short run of 7 stages on 16 training images in global batches of 8: two warm-up epochs,
push, a last-layer epoch, then a joint epoch, push and a last-layer epoch."""

FROZEN_BATCHNORM_STAGES = 4
"""The stages of :data:`TRAINING` before its joint epoch: the trunk, and so its batch norms,
are frozen, so that the batch each process normalises with plays no part."""


def dying_run(out: Path) -> list[str]:
    """The ``protoexplain`` arguments of the run in which rank 1 dies: :data:`TRAINING`,
    saved as ``OUT/training.yaml``, into ``OUT/died``."""
    return ["train", str(out / "training.yaml"), "--no-progress", "--out", str(out / "died")]


def pushed_model(*overrides: str) -> tuple[torch.nn.Module, list[dict], object]:
    """The untrained model of :data:`PUSHED_RUN` pushed onto this process's share of the push
    set: (model, records as dicts, config)."""
    torch.manual_seed(0)
    config = load_config(None, [*PUSHED_RUN, *SHARDED, *overrides])
    push_set = build_dataset(config, "train", augment=False)
    model = build_model(config, push_set.num_classes, 32).eval()
    loader = make_loader(push_set, config.data.eval_batch_size, config, shard=True)
    records = push(model, loader)
    return model, [record.to_dict() for record in records], config


def benchmark(model: torch.nn.Module, config) -> dict:
    """The benchmark of :data:`BENCHMARK_METHODS` on the test split (every metric)."""
    return run_benchmark(model, build_dataset(config, "test", augment=False), BENCHMARK_METHODS,
                         images_per_prototype=None, batch_size=config.data.eval_batch_size,
                         settings=LocalizationSettings(fractions=(0.1, 0.3)), seed=1,
                         progress=False)


REPORT = ["localization.method_options={hdm: {benchmark_steps: 3, auxiliary_steps: 3}}"]
"""The report check's run: :data:`PUSHED_RUN` whose report shows ``upsample`` and HDM."""


def report(path: Path) -> Path:
    """The report of the run of :data:`REPORT` (two test images explained) at ``path``."""
    run = pushed_run(path.parent / "run", *REPORT)
    return write_report(run, path, methods=["upsample", "hdm"], test_images=2,
                        progress=False).path.parent


def tie_order() -> list[list[int]]:
    """The winners of candidates that tie: each process offers, for 3 prototypes, a distance
    of 1 at (sample, row, column) = (5 - rank, 0, 0), (3, rank, 0) and (3, 1, 1 - rank)."""
    rank = distributed.rank()
    distance = torch.ones(3)
    sample = torch.tensor([5 - rank, 3, 3])
    position = torch.tensor([[0, 0], [rank, 0], [1, 1 - rank]])
    vector = torch.full((3, 2), float(rank))
    _, sample, position, vector, _ = nearest_across_processes(distance, sample, position,
                                                              vector, (32, 32))
    return [[int(s), *map(int, p), int(v[0])] for s, p, v in zip(sample, position, vector,
                                                                    strict=True)]


def checks(out: Path) -> None:
    resolve_device("cpu")  # joins the process group
    results: dict = {"world_size": distributed.world_size()}
    model, results["push"], config = pushed_model()
    results["benchmark"] = benchmark(model, config)
    results["ties"] = tie_order()
    report(out / "report")
    training = load_config(None, TRAINING)
    results["history"] = train(training, out / "straight", progress=False).history
    with pytest.MonkeyPatch.context() as patch:
        interrupt_training_after(patch, calls=2)
        try:
            train(training, out / "interrupted", progress=False)
        except KeyboardInterrupt:
            results["interrupted"] = True
    results["resumed_history"] = train(training, out / "interrupted", resume=True,
                                       progress=False).history
    try:
        train(load_config(None, [*TRAINING, "data.batch_size=7"]), out / "odd", progress=False)
    except ConfigError as error:
        results["batch_error"] = str(error)
    if distributed.is_main_process():
        save_config(training, out / "training.yaml")
        (out / "results.json").write_text(json.dumps(results))
    distributed.barrier()


def die(argv: list[str]) -> int:
    """``protoexplain ARGV`` in which rank 1 exits after the first step of its third training
    epoch: that step's gradient average needs rank 0, which by then has saved the checkpoint
    of the stage before."""
    if os.environ.get("RANK") == "1":
        real = protoexplain.training_run.run_epoch
        count = {"train": 0}

        def dying(loader):
            for number, batch in enumerate(loader):
                if number == 1:
                    os._exit(3)
                yield batch

        def run_epoch(model, loader, *args, train, **kwargs):
            count["train"] += train
            if count["train"] == 3:
                loader = dying(loader)
            return real(model, loader, *args, train=train, **kwargs)

        protoexplain.training_run.run_epoch = run_epoch
    return protoexplain_main(argv)


if __name__ == "__main__":
    checks(Path(sys.argv[1]))
    sys.exit(die(dying_run(Path(sys.argv[1]))))
