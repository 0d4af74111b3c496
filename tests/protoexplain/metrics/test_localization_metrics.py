"""All localization metrics of one method, end to end on a tiny model and toy ground truth."""

from __future__ import annotations

import math
import time

import pytest
import torch
from toy_parts import ToyParts

import protoexplain.metrics.localization as localization_metrics
from protoexplain.benchmark import run_benchmark
from protoexplain.metrics.localization import (
    LocalizationSettings,
    evaluate_localization,
    noisy_responsible_parts,
)
from protoexplain.metrics.pairs import build_pairs
from protoexplain.metrics.prototype_parts import responsible_parts, score_pair_parts
from protoexplain.metrics.regions import mask_boxes
from protoexplain.metrics.sanity import randomized_copy
from prototypes import LOCALIZATION_METHODS, Localization

SETTINGS = LocalizationSettings(fractions=(0.01, 0.05))


def red_part(model, images, prototype_ids):
    """Knows where the red part is without asking the model: a bump on the red pixels,
    highest at their centre."""
    red = (images[:, 0] > 0.5) & (images[:, 1] < 0.5)
    weights = red.float()
    rows = torch.arange(images.shape[2], dtype=torch.float32)
    columns = torch.arange(images.shape[3], dtype=torch.float32)
    total = weights.sum(dim=(1, 2))
    cy = (weights.sum(dim=2) * rows).sum(dim=1) / total
    cx = (weights.sum(dim=1) * columns).sum(dim=1) / total
    distance = (rows.view(1, -1, 1) - cy.view(-1, 1, 1)) ** 2 + (
        columns.view(1, 1, -1) - cx.view(-1, 1, 1)) ** 2
    maps = weights * (0.5 + 0.5 * torch.exp(-distance / 32))
    return Localization(maps=maps, boxes=mask_boxes(red)[0])


def corner(model, images, prototype_ids):
    """Always points at the top-left corner of the image."""
    rows = torch.arange(images.shape[2], dtype=torch.float32)
    columns = torch.arange(images.shape[3], dtype=torch.float32)
    maps = (1 - (rows.view(-1, 1) ** 2 + columns.view(1, -1) ** 2).sqrt() / 6).clamp(min=0)
    maps = maps.expand(images.shape[0], -1, -1)
    return Localization(maps=maps, boxes=torch.tensor([[0, 2, 0, 2]]).expand(len(images), -1))


@pytest.fixture
def methods(monkeypatch):
    monkeypatch.setitem(LOCALIZATION_METHODS, "red_part", red_part)
    monkeypatch.setitem(LOCALIZATION_METHODS, "corner", corner)


def _evaluate(model, dataset, method, **options):
    pairs = build_pairs(dataset, model.prototype_classes, images_per_class=3, progress=False)
    return evaluate_localization(model, pairs, method, settings=SETTINGS,
                                 prototype_parts=torch.zeros(4, dtype=torch.long),
                                 randomized_model=randomized_copy(model, seed=0),
                                 batch_size=5, progress=False, **options)


def test_map_on_the_prototypes_part_scores_every_ground_truth_metric_perfectly(
        model, toy_parts, methods):
    results = _evaluate(model, toy_parts, "red_part")
    for name in ("consistency", "stability", "relevance@1%", "relevance@5%", "relevance",
                 "energy_object", "pointing_object", "energy_part", "pointing_part",
                 "iou_part"):
        assert results[name] == pytest.approx(1.0), name
    assert results["pairs"] == 12 and results["prototypes"] == 4


def test_map_pointing_away_from_the_object_hits_nothing(model, toy_parts, methods):
    results = _evaluate(model, toy_parts, "corner")
    for name in ("consistency", "relevance@1%", "energy_object", "pointing_object",
                 "pointing_part", "iou_part"):
        assert results[name] == pytest.approx(0.0, abs=1e-6), name
    assert results["stability"] == 1.0  # the same (empty) hits with and without noise


def _alternating_parts(pairs):
    """Per pair, 0 (top) or 1 (bottom) alternating over each prototype's pairs: 0, 1, 0."""
    ranks = torch.zeros(len(pairs), dtype=torch.long)
    for prototype in pairs.prototypes.unique():
        where = (pairs.prototypes == prototype).nonzero().flatten()
        ranks[where] = torch.arange(len(where))
    return ranks % 2


@pytest.mark.parametrize(("responsible", "hit", "oracle"), [
    ("top", 1.0, 1.0),          # the map peaks on the top part, which the model relies on
    ("bottom", 0.0, 1.0),       # a consistent model, but the map shows the other part
    ("alternating", 2 / 3, 0.0),  # top, bottom, top: 2 of 3 pairs hit; no part in 80%
    ("none", None, 0.0),        # no part's removal lowers the similarity: nothing to hit
])
def test_responsible_part_hit_and_oracle_consistency_against_hand_computed_cases(
        model, toy_parts, methods, responsible, hit, oracle):
    pairs = build_pairs(toy_parts, model.prototype_classes, images_per_class=3, progress=False)
    parts = {"top": torch.zeros(len(pairs), dtype=torch.long),
             "bottom": torch.ones(len(pairs), dtype=torch.long),
             "alternating": _alternating_parts(pairs),
             "none": torch.full((len(pairs),), -1)}[responsible]
    # The box around the red part's centre (half side 36 / 224 * 32 = 5.1 px) holds the top
    # keypoint and not the bottom one, 8 px below; the same holds for the oracle's box.
    results = evaluate_localization(
        model, pairs, "red_part", settings=SETTINGS, responsible_parts=parts,
        randomized_model=randomized_copy(model, seed=0), batch_size=5, progress=False)
    if hit is None:
        assert math.isnan(results["responsible_part_hit"])
    else:
        assert results["responsible_part_hit"] == pytest.approx(hit)
    assert results["oracle_consistency"] == pytest.approx(oracle)
    assert results["consistency"] == pytest.approx(1.0)  # the map itself is consistent


@pytest.mark.parametrize(("noisy", "stability"), [
    ("top", 1.0),              # the part relied on is found again on the noisy image
    ("bottom", 0.0),           # the noise moves it to the other part in every image
    ("alternating", 2 / 3),    # top, bottom, top: 2 of each prototype's 3 pairs unchanged
    ("none", 0.0),             # under noise no part's removal lowers the similarity
])
def test_oracle_stability_against_hand_computed_cases(model, toy_parts, methods, monkeypatch,
                                                      noisy, stability):
    pairs = build_pairs(toy_parts, model.prototype_classes, images_per_class=3, progress=False)
    part = {"top": torch.zeros(len(pairs), dtype=torch.long),
            "bottom": torch.ones(len(pairs), dtype=torch.long),
            "alternating": _alternating_parts(pairs),
            "none": torch.full((len(pairs),), -1)}[noisy]
    num_parts = toy_parts[0]["part_masks"].shape[0]
    # Part scores on the noisy images: 1 for the part above, 0 for the others (all -1: none).
    noisy_scores = torch.nn.functional.one_hot(part.clamp(min=0), num_parts).float()
    noisy_scores[part < 0] = -1.0
    batches = iter(noisy_scores.split(5))
    monkeypatch.setattr("protoexplain.metrics.localization.pair_part_scores",
                        lambda model, images, *args, **kwargs: next(batches))
    results = evaluate_localization(
        model, pairs, "red_part", settings=SETTINGS,
        responsible_parts=torch.zeros(len(pairs), dtype=torch.long),  # top, on clean images
        randomized_model=randomized_copy(model, seed=0), batch_size=5, progress=False)
    assert results["oracle_stability"] == pytest.approx(stability)
    assert results["stability"] == pytest.approx(1.0)  # the map itself ignores the noise


def test_oracle_stability_finds_the_models_own_parts_again_without_noise(model, toy_parts):
    pairs = build_pairs(toy_parts, model.prototype_classes, images_per_class=3, progress=False)
    scores, visible = score_pair_parts(model, pairs, progress=False)
    parts = responsible_parts(scores, visible)
    assert (parts >= 0).any()
    quiet = LocalizationSettings(fractions=(0.05,), noise_std=0.0, sanity=False,
                                 deletion_insertion=False)
    results = evaluate_localization(model, pairs, "upsample", settings=quiet,
                                    responsible_parts=parts, batch_size=5, progress=False)
    assert results["oracle_stability"] == 1.0
    assert results["stability"] == 1.0
    without = evaluate_localization(model, pairs, "upsample", settings=quiet, batch_size=5,
                                    progress=False)
    assert "oracle_stability" not in without  # it needs the per-image parts


def test_noisy_parts_are_found_once_for_all_methods_with_the_same_result(
        model, toy_parts, methods, monkeypatch):
    pairs = build_pairs(toy_parts, model.prototype_classes, images_per_class=3, progress=False)
    parts = responsible_parts(*score_pair_parts(model, pairs, progress=False))
    noisy = LocalizationSettings(fractions=(0.05,), sanity=False, deletion_insertion=False)
    found_inside = evaluate_localization(model, pairs, "upsample", settings=noisy,
                                         responsible_parts=parts, batch_size=5, progress=False)
    given = noisy_responsible_parts(model, pairs, noisy, batch_size=5, progress=False)
    assert given.shape == (len(pairs),)

    calls = []
    scorer = localization_metrics.pair_part_scores
    monkeypatch.setattr(localization_metrics, "pair_part_scores",
                        lambda *args, **kwargs: calls.append(1) or scorer(*args, **kwargs))
    reused = evaluate_localization(model, pairs, "upsample", settings=noisy,
                                   responsible_parts=parts, noisy_parts=given, batch_size=5,
                                   progress=False)
    assert calls == []  # nothing scored again
    assert reused["oracle_stability"] == found_inside["oracle_stability"]

    both = run_benchmark(model, toy_parts, {"upsample": {}, "red_part": {}},
                         images_per_prototype=3, settings=noisy, batch_size=5, progress=False)
    batches = -(-len(pairs) // 5)
    assert len(calls) == batches  # one pass over the noisy images, not one per method
    assert both["upsample"]["oracle_stability"] == found_inside["oracle_stability"]
    assert both["red_part"]["oracle_stability"] == found_inside["oracle_stability"]


@pytest.mark.parametrize("method, options", [("upsample", {}), ("mdm", {"steps": 4})])
def test_computing_stability_changes_no_other_metric(model, toy_parts, method, options):
    # Studies that did and did not compute stability are pooled on this (the seed study's
    # --force-pool): its noise and its noisy maps must not leak into the clean metrics.
    pairs = build_pairs(toy_parts, model.prototype_classes, images_per_class=3, progress=False)
    parts = responsible_parts(*score_pair_parts(model, pairs, progress=False))
    results = {
        stability: evaluate_localization(
            model, pairs, method, options, responsible_parts=parts, batch_size=5,
            settings=LocalizationSettings(fractions=(0.05,), sanity=False, stability=stability),
            progress=False)
        for stability in (False, True)
    }
    assert "stability" in results[True] and "stability" not in results[False]
    for metric in ("consistency", "responsible_part_hit", "oracle_consistency", "relevance",
                   "fidelity", "energy_object", "deletion", "insertion"):
        assert results[True][metric] == results[False][metric], metric


def test_map_that_ignores_the_model_fails_the_sanity_check_and_upsampling_passes(
        model, toy_parts, methods):
    ignoring = _evaluate(model, toy_parts, "red_part")
    assert ignoring["sanity_spearman"] == pytest.approx(1.0)
    assert ignoring["sanity_ssim"] == pytest.approx(1.0)
    upsampled = _evaluate(model, toy_parts, "upsample")
    assert upsampled["sanity_spearman"] < 0.9


def test_cost_counts_only_the_passes_of_the_localization_itself(model, toy_parts, methods):
    assert _evaluate(model, toy_parts, "upsample")["forward_passes_per_pair"] == 1.0
    started = time.perf_counter()
    free = _evaluate(model, toy_parts, "red_part")
    elapsed = time.perf_counter() - started
    assert free["forward_passes_per_pair"] == 0.0
    assert free["backward_passes_per_pair"] == 0.0
    # timed around each localization call alone: a positive share of the whole evaluation
    assert 0.0 < free["seconds_per_pair"] * free["pairs"] < elapsed


def test_fidelity_and_causal_metrics_are_bounded_fractions(model, toy_parts, methods):
    results = _evaluate(model, toy_parts, "upsample")
    assert set(results) >= {"fidelity@1%", "fidelity@5%", "fidelity", "deletion", "insertion"}
    assert results["fidelity"] == pytest.approx(
        (results["fidelity@1%"] + results["fidelity@5%"]) / 2)
    assert 0.0 <= results["deletion"] <= 1.5 and 0.0 <= results["insertion"] <= 1.5


def test_metrics_whose_ground_truth_is_missing_are_left_out(model, methods):
    results = _evaluate(model, ToyParts(keys=()), "red_part")
    assert not {"consistency", "stability", "relevance", "energy_object", "energy_part",
                "iou_part"} & set(results)
    assert {"fidelity", "deletion", "insertion", "sanity_spearman"} <= set(results)


def test_sanity_check_needs_the_randomised_model(model, toy_parts):
    pairs = build_pairs(toy_parts, model.prototype_classes, images_per_class=1, progress=False)
    with pytest.raises(ValueError, match="randomized_model"):
        evaluate_localization(model, pairs, "upsample", progress=False)


@pytest.mark.parametrize("option", [{"score": "mean"}, {"fill": "black"},
                                    {"deletion_steps": 0}])
def test_settings_reject_unknown_choices(option):
    with pytest.raises(ValueError, match=next(iter(option))):
        LocalizationSettings(**option)
