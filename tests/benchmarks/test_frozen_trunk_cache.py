"""The frozen-trunk cache benchmark end to end on a tiny model: both variants train, the
table has every stage kind, and the two runs agree."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import frozen_trunk_cache  # noqa: E402

from tests.protoexplain.tiny_runs import tiny_run  # noqa: E402


def test_benchmark_compares_both_variants_and_finds_them_equal(tmp_path, monkeypatch, capsys):
    sets = [part for item in [
        *tiny_run(epochs=1, push_every=1, prototypes_per_class=1),
        "data.options={image_size: 32, num_classes: 2, num_samples: 16, clutter: 0}"]
        for part in ("--set", item)]
    out = tmp_path / "result"
    monkeypatch.setattr(sys, "argv", ["frozen_trunk_cache.py", "synthetic_protopnet", *sets,
                                      "--warm-epochs", "2", "--last-layer-epochs", "1",
                                      "--no-progress", "--out", str(out)])
    frozen_trunk_cache.main()
    record = json.loads(out.with_suffix(".json").read_text())
    assert set(record["seconds_by_kind"]) == {"images", "cached"}
    assert set(record["seconds_by_kind"]["cached"]) == {"warm", "push", "last_layer"}
    assert record["largest_relative_difference"] < 1e-4
    printed = capsys.readouterr().out
    assert "| whole run |" in printed
    assert printed == out.with_suffix(".md").read_text() + "\n"
