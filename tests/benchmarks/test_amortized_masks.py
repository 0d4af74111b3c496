"""The amortized-mask design study's helpers: variants, prototype subsets, shares of HDM and
its table (no model runs)."""

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from amortized_masks import (  # noqa: E402
    combine_subsets,
    finite,
    parse_variant,
    share_of_hdm,
    subsets,
    table,
)

from tests.prototypes.tiny_protopnet import make_model  # noqa: E402


def test_variant_settings_are_split_on_semicolons_so_lists_stay_whole():
    assert parse_variant("rare:training.rare_classes=[6, 7];training.rare_share=0.1") == (
        "rare", ["training.rare_classes=[6, 7]", "training.rare_share=0.1"])
    assert parse_variant("default:") == ("default", [])
    with pytest.raises(SystemExit, match="needs a name"):
        parse_variant(":training.steps=3")


def test_split_classes_gives_the_prototypes_of_those_classes_and_the_rest():
    model = make_model(num_classes=3, prototypes_per_class=2)
    assert subsets(model, None) == {"all": None}
    assert subsets(model, [2]) == {"rare": [4, 5], "common": [0, 1, 2, 3]}


def test_share_of_hdm_divides_each_goal_metric_and_skips_a_zero():
    row = {"relevance": 0.45, "fidelity": 0.2, "consistency": 0.3, "energy_object": 0.5}
    hdm = {"relevance": 0.5, "fidelity": 0.4, "consistency": 0.0, "energy_object": 0.5}
    assert share_of_hdm(row, hdm) == pytest.approx(
        {"relevance_of_hdm": 0.9, "fidelity_of_hdm": 0.5, "energy_object_of_hdm": 1.0})


def test_table_lists_each_subset_and_json_gets_null_for_nan():
    results = {"all": {"hdm": {"relevance": 0.5}, "amortized[a]": {"relevance": 0.25,
                                                                  "break_even_pairs": math.nan}}}
    text = table(results)
    assert "prototypes: all" in text and "| amortized[a] | 0.25 | nan |" in text
    assert finite(results)["all"]["amortized[a]"]["break_even_pairs"] is None


def _row(value: float, pairs: int, prototypes: int) -> dict:
    return {"pairs": pairs, "prototypes": prototypes, "consistency": value,
            **{metric: value for metric in ("relevance", "energy_object", "fidelity",
                                            "pointing_object", "seconds_per_pair",
                                            "forward_passes_per_pair",
                                            "backward_passes_per_pair")}}


def test_rare_and_common_rows_combine_by_pairs_and_consistency_by_prototypes():
    results = {"rare": {"hdm": _row(1.0, 20, 10), "amortized[a]": _row(0.5, 20, 10)},
               "common": {"hdm": _row(0.5, 60, 30), "amortized[a]": _row(0.25, 60, 30)}}
    results["rare"]["amortized[a]"].update(masker_training_seconds=9.0,
                                           masker_training_passes=90.0)
    combined = combine_subsets(results)
    assert combined["hdm"]["pairs"] == 80 and combined["hdm"]["prototypes"] == 40
    assert combined["hdm"]["relevance"] == pytest.approx((20 * 1.0 + 60 * 0.5) / 80)
    assert combined["hdm"]["consistency"] == pytest.approx((10 * 1.0 + 30 * 0.5) / 40)
    assert combined["amortized[a]"]["relevance_of_hdm"] == pytest.approx(
        ((20 * 0.5 + 60 * 0.25) / 80) / ((20 * 1.0 + 60 * 0.5) / 80))
    assert combined["amortized[a]"]["masker_training_seconds"] == 9.0
    assert combined["amortized[a]"]["break_even_pairs"] == pytest.approx(9.0 / (0.625 - 0.3125))
