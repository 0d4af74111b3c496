"""The variant study's option parsing and its table over several runs (no model runs)."""

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from localization_variants import (  # noqa: E402
    main,
    parse_variant,
    record_keys,
    variants_table,
)

from protoexplain.benchmark import aggregate_runs  # noqa: E402


def test_parse_variant_reads_yaml_values_and_keeps_brackets_whole():
    name, method, options = parse_variant("hdm big=hdm:grid_sizes=[4, 8],score=pooled,steps=5")
    assert (name, method) == ("hdm big", "hdm")
    assert options == {"grid_sizes": [4, 8], "score": "pooled", "steps": 5}
    assert parse_variant("upsample=upsample") == ("upsample", "upsample", {})
    with pytest.raises(SystemExit, match="NAME=METHOD"):
        parse_variant("hdm")


def _runs():
    cost = {"forward_passes_per_pair": 10.0, "seconds_per_pair": 0.5}
    return [
        {"a": {"relevance": 0.2, "consistency": 0.5, **cost},
         "b": {"relevance": 0.4, "consistency": 0.5, **cost}},
        {"a": {"relevance": 0.4, "consistency": 0.7, **cost},
         "b": {"relevance": 0.6, "consistency": 0.9, **cost}},
    ]


def test_table_gives_mean_and_std_over_runs_and_shares_of_the_reference():
    table = variants_table(aggregate_runs(_runs()), "a", num_runs=2)
    header, _, row_a, row_b = table.strip().splitlines()
    assert header.split(" | ")[1:3] == ["relevance", "consistency"]
    std = math.sqrt(0.02)  # sample std of (0.2, 0.4)
    assert row_a.startswith(f"| a | 0.300 ± {std:.3f} (100%) | 0.600 ± {std:.3f} (100%) |")
    assert f"| b | 0.500 ± {std:.3f} (167%) |" in row_b
    assert "0.700 ± 0.283 (117%)" in row_b
    assert row_b.endswith("| 10 | 0.5 |")


def test_table_of_one_run_has_no_spread_and_an_unknown_reference_is_refused():
    one = aggregate_runs(_runs()[:1])
    assert "±" not in variants_table(one, None, num_runs=1)
    with pytest.raises(SystemExit, match="'c' is not one of the variants"):
        variants_table(one, "c", num_runs=1)


def test_runs_are_named_by_directory_unless_two_names_clash():
    assert record_keys([Path("x/seed0"), Path("x/seed1")]) == ["seed0", "seed1"]
    assert record_keys([Path("x/run"), Path("y/run")]) == ["x/run", "y/run"]


def test_a_batch_size_below_one_is_refused_before_any_run_is_loaded(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing_run"), "--variant", "u=upsample", "--batch-size", "0",
              "--out", str(tmp_path / "out")])
    assert "--batch-size must be a positive integer, got 0" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


def test_a_bad_option_of_any_variant_is_refused_by_name_before_any_run_is_loaded(
        tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path / "missing_run"), "--variant", "u=upsample",
              "--variant", "mdm peak=mdm:score=peek", "--out", str(tmp_path / "out")])
    assert stopped.value.code == 2
    assert ("--variant 'mdm peak': score must be one of ('auto', 'pooled', 'peak'), got 'peek'"
            in capsys.readouterr().err)
    assert not (tmp_path / "out.json").exists()


def test_the_table_shows_the_box_metrics_of_data_sets_that_have_boxes():
    row = {"energy_box": 0.5, "pointing_box": 0.6, "iou_box": 0.3, "fidelity": 0.4,
           "forward_passes_per_pair": 1.0, "seconds_per_pair": 0.1}
    header = variants_table(aggregate_runs([{"upsample": row}]), None, num_runs=1).splitlines()[0]
    assert "energy_box | pointing_box | iou_box" in header and "fidelity" in header
