"""XProtoNet runs end to end on the multi-label SyntheticRadiographs: AUROC in metrics.json,
projection, box metrics in the benchmark, the evaluate / benchmark / explain commands, and
exact resume."""

import json

import pytest
import torch

from protoexplain.checkpoint import load_checkpoint
from protoexplain.cli import main
from protoexplain.config import load_config
from protoexplain.data.synthetic_radiographs import FINDINGS
from protoexplain.pipeline import train_and_report
from protoexplain.run_dir import load_run
from prototypes import XProtoNet
from tests.protoexplain.tiny_runs import check_resume_reproduces, tiny_run

TINY_XPROTONET = [
    *tiny_run(epochs=3, push_every=2, prototypes_per_class=2),
    "data.dataset=SyntheticRadiographs",
    "data.options={image_size: 32, num_samples: 24}",
    "model.architecture=xprotonet",
    "training.learning_rates.joint_features=1e-3",
    "localization.images_per_prototype=2",
    "localization.metric_options={score: pooled}",
]
BOX_METRICS = ("energy_box", "pointing_box", "iou_box")


def tiny_xprotonet_config(*extra):
    return load_config(None, [*TINY_XPROTONET, *extra])


@pytest.fixture(scope="module")
def xprotonet_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("xprotonet_run")
    metrics = train_and_report(tiny_xprotonet_config(), run_dir, progress=False)
    return run_dir, metrics


@pytest.mark.slow
def test_xprotonet_run_writes_auroc_projection_and_box_metrics(xprotonet_run):
    run_dir, metrics = xprotonet_run
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["test_auroc"] == metrics["test_auroc"]
    assert 0.0 <= saved["test_auroc"] <= 1.0
    assert list(saved["test_per_class_auroc"]) == list(FINDINGS)
    assert "test_accuracy" not in saved
    assert 0.0 <= saved["val_auroc"] <= 1.0 and saved["test_samples"] == 24
    projection = json.loads((run_dir / "projection.json").read_text())
    assert [row["prototype"] for row in projection] == list(range(10))
    for row in projection:
        assert row["class_name"] == FINDINGS[row["prototype"] // 2]
        assert (run_dir / row["picture"]).is_file()
    benchmark = json.loads((run_dir / "benchmark.json").read_text())["upsample"]
    for name in BOX_METRICS:
        assert 0.0 <= benchmark[name] <= 1.0, name
    assert benchmark["pairs"] == 20 and benchmark["prototypes"] == 10
    history = json.loads((run_dir / "history.json").read_text())
    assert all("val_auroc" in entry for entry in history)
    assert "train_transformation" in history[0] and "train_occurrence_sparsity" in history[0]


@pytest.mark.slow
def test_run_directory_loads_back_as_the_same_xprotonet(xprotonet_run):
    run_dir, _ = xprotonet_run
    run = load_run(run_dir)
    assert isinstance(run.model, XProtoNet)
    checkpoint = load_checkpoint(run_dir)
    for name, tensor in run.model.state_dict().items():
        assert torch.equal(tensor, checkpoint["model"][name]), name
    assert run.config.training.loss.transformation == 0.05


@pytest.mark.slow
def test_evaluate_and_benchmark_commands_work_on_an_xprotonet_run(xprotonet_run, capsys):
    run_dir, metrics = xprotonet_run
    assert main(["evaluate", str(run_dir), "--no-progress"]) == 0
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["test_auroc"] == pytest.approx(metrics["test_auroc"])
    assert capsys.readouterr().out == (f"test mean AUROC {saved['test_auroc']:.4f} -> "
                                       f"{run_dir}/metrics.json\n")
    assert main(["benchmark", str(run_dir), "--methods", "upsample,hdm",
                 "--images-per-prototype", "1", "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "| metric | upsample | hdm |" in table and "pointing_box" in table
    benchmark = json.loads((run_dir / "benchmark.json").read_text())
    assert set(benchmark) == {"upsample", "hdm"}
    for name in BOX_METRICS:
        assert 0.0 <= benchmark["hdm"][name] <= 1.0, name
    assert benchmark["hdm"]["pairs"] == benchmark["upsample"]["pairs"] == 10


@pytest.mark.slow
def test_explain_lists_the_findings_of_an_xprotonet(xprotonet_run, tmp_path):
    import cv2
    import numpy as np

    run_dir, _ = xprotonet_run
    image = tmp_path / "chest.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (40, 40), np.uint8))
    assert main(["explain", str(run_dir), str(image), "--top", "2", "--out",
                 str(tmp_path / "out"), "--no-progress"]) == 0
    explained = json.loads((tmp_path / "out" / "explanations.json").read_text())[0]
    assert explained["predicted_class"] in FINDINGS
    assert 0.0 <= explained["probability"] <= 1.0
    assert all(p >= 0.5 for p in explained["findings"].values())
    assert len(explained["prototypes"]) == 2
    assert (tmp_path / "out" / "chest_explanation.png").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("device", [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.cuda),
])
def test_resume_of_an_xprotonet_run_ends_exactly_like_an_uninterrupted_one(tmp_path,
                                                                          monkeypatch, device):
    config = tiny_xprotonet_config(f"device={device}")
    _, resumed = check_resume_reproduces(config, tmp_path, monkeypatch)
    assert resumed.selection_metric == "val_auroc"
