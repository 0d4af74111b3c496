"""The metric registry: one entry per benchmark metric, read by tables and studies."""

import sys
from pathlib import Path

import pytest

from protoexplain.metrics.registry import (
    METRICS,
    is_count,
    is_model_level,
    lower_is_better,
    metric_info,
    metric_names,
)

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"


def test_lower_is_better_for_deletion_the_sanity_check_and_every_cost_only():
    lower = {name for name, info in METRICS.items() if info.direction == "lower"}
    assert lower == {"deletion", "sanity_spearman", "sanity_ssim", "seconds_per_pair",
                     "forward_passes_per_pair", "backward_passes_per_pair",
                     "masker_training_seconds", "masker_training_passes", "break_even_pairs",
                     "break_even_pairs_by_passes"}
    assert {name for name, info in METRICS.items() if info.direction is None} == \
        {"pairs", "prototypes"}


def test_per_fraction_names_share_their_base_metric_and_unknown_names_count_as_higher():
    assert metric_info("relevance@5%") is METRICS["relevance"]
    assert metric_info("fidelity@12.5%") is METRICS["fidelity"]
    assert metric_info("test_accuracy") is None
    assert not lower_is_better("test_accuracy") and not is_model_level("test_accuracy")
    assert lower_is_better("deletion") and not lower_is_better("insertion")
    assert is_count("pairs") and not is_count("consistency")


def test_only_the_oracle_values_are_model_level():
    assert metric_names(model_level=True) == ("oracle_consistency", "oracle_stability")
    assert all(is_model_level(name) for name in ("oracle_consistency", "oracle_stability"))


def test_names_by_kind_keep_the_registry_order():
    assert metric_names(kind="cost") == ("seconds_per_pair", "forward_passes_per_pair",
                                         "backward_passes_per_pair", "masker_training_seconds",
                                         "masker_training_passes", "break_even_pairs",
                                         "break_even_pairs_by_passes")
    assert metric_names(kind="sanity") == ("sanity_spearman", "sanity_ssim")
    assert metric_names(kind="count") == ("pairs", "prototypes")
    compared = metric_names(kind="quality", model_level=False)
    assert compared[:3] == ("consistency", "responsible_part_hit", "stability")
    assert len(compared) == 15 and compared[-2:] == ("deletion", "insertion")
    assert set(metric_names()) == set(METRICS)


def test_costs_and_counts_print_with_their_own_precision_and_the_rest_with_three_decimals():
    shown = {name: format(12.3456, info.format) for name, info in METRICS.items()}
    assert shown.pop("seconds_per_pair") == "12.3"
    assert shown.pop("forward_passes_per_pair") == shown.pop("backward_passes_per_pair") == "12.3"
    for name in ("masker_training_seconds", "masker_training_passes", "break_even_pairs",
                 "break_even_pairs_by_passes"):
        assert shown.pop(name) == "12.3"
    assert shown.pop("pairs") == shown.pop("prototypes") == "12"
    assert set(shown.values()) == {"12.346"}


def test_every_entry_is_frozen_and_described_in_one_line():
    for name, info in METRICS.items():
        assert len(info.description) > 20 and "\n" not in info.description, name
    with pytest.raises(AttributeError):
        METRICS["deletion"].direction = "higher"


def test_the_studies_name_only_registered_metrics():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import localization_seeds
        import localization_variants
    finally:
        sys.path.remove(str(BENCHMARKS))
    named = {*localization_variants.QUALITY, *localization_variants.COST,
             *localization_seeds.HEADLINE} - {"test_accuracy", "test_auroc"}
    assert named <= set(METRICS)
