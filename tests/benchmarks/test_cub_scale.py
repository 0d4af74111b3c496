"""The CUB-scale timing runs end to end on a tiny model and extrapolates what it says."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import cub_scale  # noqa: E402


@pytest.mark.slow
def test_push_and_benchmark_localization_are_timed_and_extrapolated(tmp_path, capsys):
    out = tmp_path / "cub.json"
    record = cub_scale.main([
        "--backbone", "small_cnn", "--image-size", "32", "--classes", "3",
        "--prototypes-per-class", "2", "--push-images", "3", "--push-batch", "3",
        "--train-images", "30", "--test-images", "6", "--pairs", "2", "--batch", "2",
        "--hdm-steps", "1", "--out", str(out)])
    assert record["prototypes"] == 6 and record["push_pairs"] == 6
    assert record["benchmark_pairs"] == 6 * 2
    assert record["push_seconds"] == pytest.approx(30 * record["push_seconds_per_image"])
    assert [row["method"] for row in record["localization"]] == ["upsample", "hdm"]
    for row in record["localization"]:
        assert row["pairs_timed"] == 2 and row["batch"] == 2 and row["seconds_per_pair"] > 0
        assert row["peak_memory_mib"] is None  # no GPU counters on a CPU
    assert json.loads(out.read_text()) == record
    printed = capsys.readouterr().out
    assert "| benchmark localization, hdm | 12 pairs | 2 | 2 |" in printed
    assert "extrapolated" in printed


def test_automatic_batch_needs_a_gpu_and_push_needs_every_class(capsys):
    with pytest.raises(SystemExit):
        cub_scale.main(["--batch", "auto"])
    assert "give --batch N" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cub_scale.main(["--classes", "10", "--push-images", "5", "--batch", "2"])
    assert "--push-images must be at least --classes" in capsys.readouterr().err
