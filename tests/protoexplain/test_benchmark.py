"""The localization benchmark runner, its files and the aggregation over runs."""

from __future__ import annotations

import json
import math

import pytest

from protoexplain.benchmark import (
    aggregate_runs,
    aggregate_table,
    benchmark_table,
    compare_across_runs,
    comparison_table,
    load_benchmark,
    run_benchmark,
    write_benchmark,
)
from protoexplain.data import SyntheticParts
from protoexplain.metrics.localization import LocalizationSettings
from protoexplain.metrics.registry import METRICS, metric_info
from prototypes import ProtoPNet


@pytest.fixture(scope="module")
def results():
    dataset = SyntheticParts(split="test", num_classes=2, image_size=32, num_samples=12)
    model = ProtoPNet("small_cnn", 2, prototypes_per_class=2, prototype_dim=4, image_size=32,
                      backbone_options={"width": 2})
    return run_benchmark(model, dataset, {"upsample": {}, "receptive_field": {}},
                         images_per_prototype=2, batch_size=4, seed=1, progress=False,
                         settings=LocalizationSettings(fractions=(0.05, 0.2)))


def test_every_method_is_scored_on_the_same_pairs_with_every_ground_truth_metric(results):
    assert list(results) == ["upsample", "receptive_field"]
    expected = {"consistency", "stability", "responsible_part_hit", "oracle_consistency",
                "oracle_stability", "relevance@5%", "relevance@20%", "relevance",
                "fidelity@5%", "fidelity@20%", "fidelity", "energy_object", "pointing_object",
                "energy_part", "pointing_part", "iou_part", "deletion", "insertion",
                "sanity_spearman", "sanity_ssim", "seconds_per_pair",
                "forward_passes_per_pair", "backward_passes_per_pair", "pairs", "prototypes"}
    for metrics in results.values():
        assert set(metrics) == expected
        assert metrics["pairs"] == 8 and metrics["prototypes"] == 4
        for name in ("consistency", "stability", "oracle_stability", "relevance",
                     "energy_object", "iou_part"):
            assert 0.0 <= metrics[name] <= 1.0
    assert results["upsample"]["forward_passes_per_pair"] == 1.0
    for name in ("oracle_consistency", "oracle_stability"):  # the model's, not the method's
        assert results["upsample"][name] == results["receptive_field"][name]


def test_the_registry_describes_every_metric_the_benchmark_returns_and_no_other(results):
    returned = {name.split("@")[0] for name in results["upsample"]}
    box_metrics = {"energy_box", "pointing_box", "iou_box"}  # need labelled boxes
    masker_costs = {"masker_training_seconds", "masker_training_passes", "break_even_pairs",
                    "break_even_pairs_by_passes"}  # the amortized method's, added by the run
    assert set(METRICS) == returned | box_metrics | masker_costs
    assert all(metric_info(name) is not None for name in results["upsample"])


def test_benchmark_files_hold_the_results_as_json_and_a_markdown_table(results, tmp_path):
    results = {m: dict(v) for m, v in results.items()}
    results["upsample"]["sanity_spearman"] = float("nan")
    json_path, markdown_path = write_benchmark(results, tmp_path / "run")
    raw = json.loads(json_path.read_text())
    assert raw["upsample"]["sanity_spearman"] is None
    assert raw["receptive_field"]["relevance"] == pytest.approx(
        results["receptive_field"]["relevance"])
    loaded = load_benchmark(json_path)
    assert math.isnan(loaded["upsample"]["sanity_spearman"])
    table = markdown_path.read_text()
    assert "| metric | upsample | receptive_field |" in table
    assert "| consistency ↑ |" in table and "| deletion ↓ |" in table
    assert "| sanity_spearman ↓ | n/a |" in table
    assert "| pairs | 8 | 8 |" in table


def test_table_shows_metrics_missing_for_a_method_as_not_available():
    table = benchmark_table({"a": {"relevance": 0.5}, "b": {"relevance": 0.25, "iou_part": 1.0}})
    assert table.splitlines() == ["| metric | a | b |", "|---|---:|---:|",
                                  "| relevance ↑ | 0.500 | 0.250 |",
                                  "| iou_part ↑ | n/a | 1.000 |"]


def test_model_level_values_have_no_direction_and_are_never_compared():
    table = benchmark_table({"a": {"oracle_consistency": 0.5}})
    assert "| oracle_consistency (model) | 0.500 |" in table
    runs = [{"a": {"oracle_consistency": v, "consistency": v}, "b": {"oracle_consistency": v,
                                                                       "consistency": 0.0}}
            for v in (0.5, 0.6)]
    compared = compare_across_runs(runs, "a", "b", ["consistency", "oracle_consistency"])
    assert list(compared) == ["consistency"]


def test_runs_aggregate_to_mean_and_sample_standard_deviation():
    runs = [{"hdm": {"relevance": 0.5, "pairs": 10.0}, "upsample": {"relevance": 0.1}},
            {"hdm": {"relevance": 0.7, "pairs": 10.0}},
            {"hdm": {"relevance": float("nan"), "pairs": 10.0}}]
    aggregated = aggregate_runs(runs)
    assert aggregated["hdm"]["relevance"]["mean"] == pytest.approx(0.6)
    assert aggregated["hdm"]["relevance"]["std"] == pytest.approx(math.sqrt(0.02))
    assert aggregated["hdm"]["relevance"]["runs"] == 2
    assert math.isnan(aggregated["upsample"]["relevance"]["std"])
    table = aggregate_table(aggregated).splitlines()
    assert table[2] == "| relevance ↑ | 0.600 ± 0.141 | 0.100 |"
    assert table[3] == "| pairs | 10 | n/a |"
    assert aggregate_table(aggregated, ["pairs"]).splitlines()[2] == "| pairs | 10 | n/a |"


def test_comparison_across_runs_needs_the_gain_to_exceed_the_seed_spread():
    runs = [{"hdm": {"relevance": 0.6, "deletion": 0.30, "fidelity": 0.50},
             "upsample": {"relevance": 0.3, "deletion": 0.20, "fidelity": 0.45}},
            {"hdm": {"relevance": 0.7, "deletion": 0.32, "fidelity": 0.40},
             "upsample": {"relevance": 0.4, "deletion": 0.22, "fidelity": 0.42}}]
    comparison = compare_across_runs(runs, "hdm", "upsample", ["relevance", "deletion",
                                                               "fidelity", "iou_part"])
    relevance = comparison["relevance"]
    assert relevance["gain"] == pytest.approx(0.3)
    assert relevance["spread"] == pytest.approx(math.sqrt(0.005))  # both stds equal
    assert relevance["worst_gain"] == pytest.approx(0.3) and relevance["beats"] == 1.0
    assert comparison["deletion"]["gain"] == pytest.approx(-0.1)  # lower is better
    assert comparison["deletion"]["beats"] == 0.0
    fidelity = comparison["fidelity"]  # mean gain 0.015 but one seed loses
    assert fidelity["worst_gain"] == pytest.approx(-0.02) and fidelity["beats"] == 0.0
    assert "iou_part" not in comparison
    single = compare_across_runs(runs[:1], "hdm", "upsample", ["relevance"])
    assert math.isnan(single["relevance"]["beats"])
    lines = comparison_table(comparison, "hdm", "upsample").splitlines()
    assert fidelity["wins"] == 1.0 and relevance["wins"] == 2.0
    # fidelity's gains +0.05 and -0.02: their standard deviation over sqrt(2) runs
    assert fidelity["gain_se"] == pytest.approx(math.sqrt(0.00245) / math.sqrt(2))
    assert relevance["gain_se"] == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(single["relevance"]["gain_se"])
    # share: per run 0.6 / 0.3 and 0.7 / 0.4, averaged
    assert relevance["share"] == pytest.approx((2.0 + 1.75) / 2)
    assert lines[2] == "| relevance ↑ | +0.300 | 0.000 | 0.071 | +0.300 | 2/2 | yes | 188 % |"
    # deletion's share: (0.30 / 0.20 + 0.32 / 0.22) / 2
    assert lines[3] == "| deletion ↓ | -0.100 | 0.000 | 0.014 | -0.100 | 0/2 | no | 148 % |"


def test_share_of_the_baseline_skips_runs_where_the_baseline_is_zero():
    runs = [{"a": {"relevance": 0.45}, "b": {"relevance": 0.5}},
            {"a": {"relevance": 0.2}, "b": {"relevance": 0.0}}]
    assert compare_across_runs(runs, "a", "b", ["relevance"])["relevance"]["share"] == \
        pytest.approx(0.9)
    runs = [{"a": {"relevance": 0.2}, "b": {"relevance": 0.0}}]
    assert math.isnan(compare_across_runs(runs, "a", "b", ["relevance"])["relevance"]["share"])


def test_benchmark_needs_methods_and_readable_results(tmp_path):
    with pytest.raises(ValueError, match="methods is empty"):
        run_benchmark(None, None, {})
    broken = tmp_path / "benchmark.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="benchmark.json"):
        load_benchmark(broken)


def test_benchmark_refuses_a_bad_option_of_any_method_before_the_first_runs(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("a method ran before every method's options were checked")

    monkeypatch.setattr("protoexplain.benchmark.build_pairs", never)
    monkeypatch.setattr("protoexplain.benchmark.evaluate_localization", never)
    with pytest.raises(ValueError, match="'hdm'.*'benchmark_step'"):
        run_benchmark(None, None, {"upsample": {}, "hdm": {"benchmark_step": 3}})
