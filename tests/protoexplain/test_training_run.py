"""Training runs end to end: run directory, resume equivalence, NaN losses, and the commands
that read a trained run (benchmark, explain)."""

import json
import math

import pytest
import torch

import protoexplain.factory
import protoexplain.training_run
from protoexplain.checkpoint import load_checkpoint
from protoexplain.cli import main
from protoexplain.config import load_config
from protoexplain.pipeline import train_and_report
from protoexplain.training_run import TrainingStopped, train
from tests.protoexplain.tiny_runs import (
    check_resume_reproduces,
    interrupt_training_after,
    tiny_run,
)

TINY = [
    *tiny_run(epochs=3, push_every=2, prototypes_per_class=2),
    "data.options={image_size: 32, num_classes: 3, num_samples: 24, clutter: 2}",
    "training.learning_rates.joint_features=1e-3",
    "training.pretrain_epochs=1",
]


def tiny_config(*extra):
    return load_config(None, [*TINY, *extra])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    metrics = train_and_report(tiny_config("localization.images_per_prototype=2"), run_dir,
                               progress=False)
    return run_dir, metrics


@pytest.mark.slow
def test_run_directory_holds_every_contracted_file(trained_run):
    tmp_path, metrics = trained_run
    for name in ("config.yaml", "checkpoint.pt", "metrics.json", "projection.json",
                 "report/index.html", "report/data.json", "history.json", "benchmark.json",
                 "benchmark.md"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test_accuracy"] == metrics["test_accuracy"]
    assert 0.0 <= saved["test_accuracy"] <= 1.0
    projection = json.loads((tmp_path / "projection.json").read_text())
    assert [row["prototype"] for row in projection] == list(range(6))
    for row in projection:
        assert row["class_index"] == row["prototype"] // 2
        assert set(row["localization"]) == {"upsample", "hdm"}  # the default push method
        for method in ("upsample", "hdm"):
            y0, y1, x0, x1 = row["localization"][method]["box"]
            assert 0 <= y0 < y1 <= 32 and 0 <= x0 < x1 <= 32
        assert (tmp_path / row["picture"]).is_file()
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint["config"]["model"]["prototype_dim"] == 8
    assert not any(isinstance(v, torch.nn.Module) for v in checkpoint.values())
    benchmark = json.loads((tmp_path / "benchmark.json").read_text())
    assert list(benchmark) == ["upsample"]
    assert 0.0 <= benchmark["upsample"]["relevance"] <= 1.0


@pytest.mark.slow
def test_benchmark_command_compares_the_named_methods(trained_run, capsys):
    run_dir, _ = trained_run
    assert main(["benchmark", str(run_dir), "--methods", "upsample,centre",
                 "--images-per-prototype", "2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    table = (run_dir / "benchmark.md").read_text().split("\n\n")[1]  # the file's table
    assert printed.strip() == table.strip()
    assert printed.startswith("| metric | upsample | centre |\n")
    assert set(json.loads((run_dir / "benchmark.json").read_text())) == {"upsample", "centre"}
    assert main(["benchmark", str(run_dir), "--methods", "upsampel", "--no-progress"]) == 2
    assert "unknown localization method 'upsampel'" in capsys.readouterr().err


@pytest.mark.slow
def test_benchmark_command_takes_every_test_image_of_the_class_with_all(trained_run, capsys):
    from protoexplain.factory import build_dataset
    from protoexplain.run_dir import load_run

    run_dir, _ = trained_run
    assert main(["benchmark", str(run_dir), "--methods", "centre", "--images-per-prototype",
                 "all", "--no-progress"]) == 0
    run = load_run(run_dir)
    labels = torch.tensor([int(item["label"]) for item in
                           build_dataset(run.config, "test", augment=False)])
    classes = run.model.prototype_class_identity.argmax(dim=1)
    every_image = int((labels[None, :] == classes[:, None]).sum())
    assert every_image > 2 * len(classes)
    assert json.loads((run_dir / "benchmark.json").read_text())["centre"]["pairs"] == every_image
    for bad in ("0", "some"):
        with pytest.raises(SystemExit):
            main(["benchmark", str(run_dir), "--images-per-prototype", bad, "--no-progress"])
        assert "positive integer or 'all'" in capsys.readouterr().err


@pytest.mark.slow
def test_explain_writes_a_picture_per_image_and_names_unreadable_files(trained_run, tmp_path,
                                                                      capsys):
    import cv2
    import numpy as np

    run_dir, _ = trained_run
    image = tmp_path / "bird.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (40, 50, 3), np.uint8))
    assert main(["explain", str(run_dir), str(image), "--top", "2", "--out",
                 str(tmp_path / "out")]) == 0
    explained = json.loads((tmp_path / "out" / "explanations.json").read_text())
    assert len(explained) == 1 and len(explained[0]["prototypes"]) == 2
    assert (tmp_path / "out" / "bird_explanation.png").is_file()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    assert main(["explain", str(run_dir), str(broken)]) == 2
    assert "broken.png" in capsys.readouterr().err


@pytest.mark.slow
def test_training_and_loading_choose_kernels_by_the_configs_deterministic_flag(
        trained_run, tmp_path, monkeypatch):
    import protoexplain.run_dir

    calls = []

    def record(device, enabled):
        calls.append((device.type, enabled))

    monkeypatch.setattr(protoexplain.run_dir, "use_deterministic_kernels", record)
    monkeypatch.setattr(protoexplain.training_run, "use_deterministic_kernels", record)
    protoexplain.run_dir.load_run(trained_run[0])
    assert calls == [("cpu", True)]  # the default, kept in the run's config
    interrupt_training_after(monkeypatch, calls=0)  # stop at the first training epoch
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config("deterministic=false"), tmp_path / "run", progress=False)
    assert calls[1:] == [("cpu", False)]


def test_a_run_with_the_alignment_term_keeps_the_shallow_map_and_logs_the_term(tmp_path):
    result = train(tiny_config("training.loss.alignment=0.3"), tmp_path / "run",
                   progress=False)
    # small_cnn's first ReLU, the deepest child still at 32 px (8 times the 4 px latent side)
    assert result.model.shallow_index == 2
    with torch.no_grad():
        assert result.model(torch.rand(1, 3, 32, 32)).shallow.shape == (1, 4, 32, 32)
    kinds = [entry["kind"] for entry in result.history]
    assert kinds == ["pretrain", "warm", "joint", "joint", "push", "last_layer"]
    for entry in result.history[1:]:  # every stage after the trunk warm start
        assert math.isfinite(entry["val_alignment"]) and entry["val_alignment"] > 0
        if entry["kind"] != "push":  # a push trains nothing
            assert math.isfinite(entry["train_alignment"]) and entry["train_alignment"] > 0
    assert "train_alignment" not in result.history[0]


@pytest.mark.slow
@pytest.mark.parametrize("device", [
    "cpu",
    # on a GPU with deterministic kernels (the default): the checkpoint's RNG states must be
    # restored as CPU tensors, which the generators require, whatever the model's device
    pytest.param("cuda", marks=pytest.mark.cuda),
])
def test_resume_after_an_interruption_ends_exactly_like_an_uninterrupted_run(tmp_path,
                                                                             monkeypatch, device):
    check_resume_reproduces(tiny_config(f"device={device}"), tmp_path, monkeypatch)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path,
                                                                         monkeypatch):
    real_collate = protoexplain.factory.collate
    batches = {"count": 0}

    def poisoned_collate(items):
        batch = real_collate(items)
        batches["count"] += 1
        if batches["count"] > 5:  # after stage 1 (pretrain): 3 training, 2 validation batches
            batch["image"] = torch.full_like(batch["image"], float("nan"))
        return batch

    monkeypatch.setattr(protoexplain.factory, "collate", poisoned_collate)
    with pytest.raises(TrainingStopped) as stopped:
        train(tiny_config(), tmp_path, progress=False)
    message = str(stopped.value)
    assert "non-finite loss at step" in message
    assert "stage 2 (warm" in message
    assert str(tmp_path / "checkpoint.pt") in message
    state = load_checkpoint(tmp_path)["training_state"]
    assert state["next_stage"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values()
               if t.is_floating_point())
