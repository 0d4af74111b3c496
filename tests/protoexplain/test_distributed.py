"""protoexplain.distributed: the helpers on one process, and push, the benchmark, training,
resume and failures on two gloo processes started by torchrun (one launch of
tests/protoexplain/distributed_checks.py, compared with the same work on this process)."""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from protoexplain import distributed
from protoexplain.checkpoint import load_checkpoint
from protoexplain.cli import main
from protoexplain.config import ConfigError, load_config
from protoexplain.training_run import process_seed, train
from tests.protoexplain.distributed_checks import (
    FROZEN_BATCHNORM_STAGES,
    TRAINING,
    benchmark,
    dying_run,
    pushed_model,
    report,
)

ROOT = Path(__file__).resolve().parents[2]

LOSS_TOLERANCE = 1e-4
"""Relative tolerance of the losses of two processes against one. With frozen batch norms
both compute the same global batches (the same samples, each with the same model); only the
order of floating-point sums differs: the gradient is the mean of two half-batch means
instead of one mean, and the logged totals are summed per process first. Those differences
are of the order of float32 rounding (1e-7 relative; 3e-8 measured on the first epoch) and
grow over a few Adam steps, far below 1e-4; a wrong batch, a missing gradient average or an
unsynchronised parameter moves the losses by more than 1e-2."""


def test_without_torchrun_this_process_is_the_only_one(monkeypatch):
    for name in distributed.TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched_by_torchrun()
    assert distributed.join(torch.device("cpu")) == torch.device("cpu")
    assert (distributed.rank(), distributed.world_size()) == (0, 1)
    assert distributed.is_main_process() and not distributed.is_distributed()
    assert distributed.per_process_batch(7) == 7
    assert distributed.map_batches(3, lambda b: b * 10) == [0, 10, 20]
    assert distributed.on_main(lambda: "done") == "done"
    assert [list(batch) for batch in distributed.BatchShard(7, 3)] == [[0, 1, 2], [3, 4, 5],
                                                                       [6]]


def test_backend_follows_the_device():
    assert distributed.backend_for(torch.device("cpu")) == "gloo"
    assert distributed.backend_for(torch.device("cuda", 1)) == "nccl"


def test_shuffled_shards_of_the_processes_make_up_one_process_global_batches():
    size, seed, world, global_batch = 20, 7, 4, 8
    whole = list(distributed.ShuffledShard(size, seed))
    assert whole == torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
    assert whole == list(distributed.ShuffledShard(size, seed))  # drawn afresh every pass
    shards = [list(distributed.ShuffledShard(size, seed, num_replicas=world, rank=r))
              for r in range(world)]
    per_process = global_batch // world
    for step in range(size // global_batch):
        together = sorted(i for shard in shards
                          for i in shard[step * per_process:(step + 1) * per_process])
        assert together == sorted(whole[step * global_batch:(step + 1) * global_batch])
    uneven = [list(distributed.ShuffledShard(10, seed, num_replicas=4, rank=r))
              for r in range(4)]
    assert {len(shard) for shard in uneven} == {3}  # padded so every process has as many
    assert sorted(set(i for shard in uneven for i in shard)) == list(range(10))


def test_a_batch_the_processes_cannot_share_names_the_key(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    assert distributed.per_process_batch(12) == 4
    with pytest.raises(ConfigError, match="'data.batch_size' is 8, which 3 processes cannot "
                                          "share evenly: choose a multiple of 3"):
        distributed.per_process_batch(8)


def test_process_seeds_differ_for_every_stage_and_process():
    seeds = {process_seed(0, stage, rank) for stage in range(50) for rank in range(8)}
    assert len(seeds) == 400


def test_inconsistent_torchrun_environment_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(distributed.DistributedError, match="RANK 2 and WORLD_SIZE 2"):
        distributed.join(torch.device("cpu"))
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(distributed.DistributedError, match="RANK is 'x'"):
        distributed.join(torch.device("cpu"))


def test_commands_that_run_on_one_process_refuse_several(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "'protoexplain evaluate' runs on one process" in capsys.readouterr().err


def test_sync_batchnorm_on_cpu_processes_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed, "rank", lambda: 0)
    monkeypatch.setattr(distributed, "world_size", lambda: 1)
    config = load_config(None, [*TRAINING, "training.sync_batchnorm=true"])
    with pytest.raises(ConfigError, match="'training.sync_batchnorm' needs CUDA"):
        train(config, tmp_path / "run", progress=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """One torchrun launch of distributed_checks.py on two gloo processes: its output
    folder, results and the launch's exit status and output."""
    out = tmp_path_factory.mktemp("distributed")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for name in distributed.TORCHRUN_VARIABLES:
        env.pop(name, None)
    launch = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
         str(ROOT / "tests/protoexplain/distributed_checks.py"), str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    results_path = out / "results.json"
    assert results_path.is_file(), launch.stderr[-3000:]
    return out, json.loads(results_path.read_text()), launch


@pytest.mark.slow
def test_push_on_two_processes_is_the_single_process_projection(two_processes):
    _, results, _ = two_processes
    assert results["world_size"] == 2
    _, records, _ = pushed_model()
    assert results["push"] == records  # same source image, position, distance


@pytest.mark.slow
def test_push_agreement_breaks_ties_by_lowest_sample_then_position(two_processes):
    _, results, _ = two_processes
    # [sample, row, column, winning process]
    assert results["ties"] == [[4, 0, 0, 1], [3, 0, 0, 0], [3, 1, 0, 1]]


@pytest.mark.slow
def test_benchmark_on_two_processes_is_the_single_process_benchmark(two_processes):
    _, results, _ = two_processes
    model, _, config = pushed_model()
    single = benchmark(model, config)
    assert list(results["benchmark"]) == list(single)
    for method, metrics in single.items():
        shared = results["benchmark"][method]
        assert list(shared) == list(metrics)
        for name, value in metrics.items():
            if name == "seconds_per_pair":
                continue
            assert shared[name] == value or (math.isnan(shared[name]) and math.isnan(value)), \
                (method, name)


@pytest.mark.slow
def test_report_on_two_processes_is_the_single_process_report(two_processes, tmp_path):
    out, _, _ = two_processes
    shared, single = out / "report", report(tmp_path / "report")
    files = sorted(path.relative_to(single) for path in single.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(shared) for path in shared.rglob("*")
                           if path.is_file())
    assert any(name.suffix == ".jpg" for name in files)  # the localization pictures
    for name in files:
        assert (shared / name).read_bytes() == (single / name).read_bytes(), name


@pytest.mark.slow
def test_training_losses_on_two_processes_match_one_process(two_processes, tmp_path):
    _, results, _ = two_processes
    single = train(load_config(None, TRAINING), tmp_path / "one", progress=False).history
    assert len(results["history"]) == len(single) == 7
    for shared, alone in zip(results["history"][:FROZEN_BATCHNORM_STAGES],
                             single[:FROZEN_BATCHNORM_STAGES], strict=True):
        assert shared["kind"] == alone["kind"]
        for name, value in alone.items():
            if name.startswith(("train_", "val_")):
                assert shared[name] == pytest.approx(value, rel=LOSS_TOLERANCE), name


@pytest.mark.slow
def test_training_resumed_on_two_processes_ends_as_the_uninterrupted_run(two_processes):
    _, results, _ = two_processes
    assert results["interrupted"]
    untimed = [[{k: v for k, v in entry.items() if k != "seconds"} for entry in history]
               for history in (results["history"], results["resumed_history"])]
    assert untimed[0] == untimed[1]


@pytest.mark.slow
def test_an_indivisible_global_batch_is_refused_on_every_process(two_processes):
    _, results, _ = two_processes
    assert results["batch_error"].startswith("'data.batch_size' is 7, which 2 processes "
                                             "cannot share evenly")


@pytest.mark.slow
def test_a_dead_rank_fails_the_launch_and_the_run_resumes_on_one_process(two_processes):
    out, _, launch = two_processes
    assert launch.returncode != 0
    run_dir = out / "died"
    checkpoint = load_checkpoint(run_dir)
    assert checkpoint["training_state"]["next_stage"] == 3  # the last good stage
    assert checkpoint["training_state"]["world_size"] == 2
    assert main([*dying_run(out), "--resume"]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["processes"] == 1
    assert len(json.loads((run_dir / "history.json").read_text())) == 7
