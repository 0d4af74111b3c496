"""prune and global-analysis on a tiny run directory."""

from __future__ import annotations

import json

import pytest
import torch

from protoexplain.cli import main
from protoexplain.global_analysis import global_analysis
from protoexplain.prune import prune_run
from protoexplain.run_dir import load_run
from tests.protoexplain.tiny_runs import pushed_run, write_run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """Two classes, two prototypes each; with k=4 and threshold 3 prototype 1 goes (two of
    its four nearest training images are of its class)."""
    return write_run_dir(pushed_run(tmp_path_factory.mktemp("prune") / "run",
                                    "model.prototypes_per_class=2"))


def test_prune_writes_a_smaller_run_with_its_reasons(run_dir, tmp_path):
    source = load_run(run_dir, "cpu")
    out = tmp_path / "pruned"
    metrics = prune_run(run_dir, out, k=4, threshold=3, epochs=1, progress=False)
    pruning = json.loads((out / "pruning.json").read_text())
    assert pruning["removed"] == [1]
    assert [p["new_id"] for p in pruning["prototypes"]] == [0, None, 1, 2]
    assert pruning["prototypes"][1]["own_class"] == 2 and pruning["prototypes"][1]["removed"]
    for key in ("test_accuracy", "test_accuracy_before_pruning", "test_accuracy_after_pruning"):
        assert 0 <= metrics[key] <= 1
    assert json.loads((out / "metrics.json").read_text())["num_prototypes"] == 3

    pruned = load_run(out, "cpu")
    assert pruned.model.prototype_classes.tolist() == [0, 1, 1]
    torch.testing.assert_close(pruned.model.prototype_vectors,
                               source.model.prototype_vectors[[0, 2, 3]])
    assert [r.prototype for r in pruned.records] == [0, 1, 2]
    assert [r.sample_index for r in pruned.records] == [
        r.sample_index for r in source.records if r.prototype != 1]
    assert (out / "projection.json").exists()
    # the source run is untouched
    assert load_run(run_dir, "cpu").model.num_prototypes == 4


def test_prune_command_and_refusals(run_dir, tmp_path, capsys):
    out = tmp_path / "pruned"
    assert main(["prune", str(run_dir), "--out", str(out), "--k", "4", "--epochs", "0",
                 "--no-progress"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["prune", str(run_dir), "--out", str(out), "--no-progress"]) == 2
    assert main(["prune", str(run_dir), "--out", str(tmp_path / "none"), "--k", "4",
                 "--threshold", "5", "--no-progress"]) == 2  # nothing would be left


def test_global_analysis_lists_and_localizes_the_nearest_patches(run_dir, capsys):
    run = load_run(run_dir, "cpu")
    result = global_analysis(run, k=3, method="upsample", write=False, progress=False)
    assert result["k"] == 3 and len(result["prototypes"]) == 4
    first = result["prototypes"][0]
    assert set(first) >= {"prototype", "class_index", "class_name", "train", "test"}
    row = first["train"][0]
    assert set(row) >= {"sample_index", "label", "distance", "similarity", "latent_position",
                        "receptive_field_box", "box"}
    distances = [r["distance"] for r in first["test"]]
    assert distances == sorted(distances)
    # the nearest training patch of a pushed prototype is its projection
    record = next(r for r in run.records if r.prototype == 0)
    assert row["sample_index"] == record.sample_index
    assert row["distance"] == pytest.approx(0, abs=1e-5)

    assert main(["global-analysis", str(run_dir), "--k", "2", "--method", "upsample",
                 "--no-progress"]) == 0
    written = json.loads((run_dir / "global_analysis.json").read_text())
    assert written["method"] == "upsample" and len(written["prototypes"][3]["test"]) == 2
