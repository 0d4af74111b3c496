"""The report scale benchmark runs end to end on a tiny model and records what it promises."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import report_scale  # noqa: E402


@pytest.mark.slow
def test_the_scale_benchmark_times_and_sizes_a_generated_report(tmp_path, capsys):
    record = report_scale.main([
        "--classes", "3", "--prototypes-per-class", "2", "--backbone", "small_cnn",
        "--image-size", "32", "--test-images", "2", "--nearest", "2", "--no-browser",
        "--out", str(tmp_path / "scale"), "--keep", str(tmp_path / "work")])
    assert record["prototypes"] == 6 and record["train_images"] == 6
    assert record["local_explanations"] == 2
    assert record["files"] > 6 * 5 and record["bytes"] > 0
    assert 0 < record["localization_seconds"] < record["seconds"]
    # the pairs: 6 sources, 6 x 2 nearest patches, and the local explanations' top 3
    assert 6 + 12 < record["localization_pairs"] <= 6 + 12 + 2 * 2 * 3
    assert json.loads((tmp_path / "scale.json").read_text()) == record
    assert "| seconds per prototype |" in capsys.readouterr().out
    assert (tmp_path / "work" / "run" / "report" / "index.html").is_file()
