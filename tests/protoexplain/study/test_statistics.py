"""The bootstrap intervals, permutation tests and Holm adjustment of study analyses."""

import numpy as np
import pytest

from protoexplain.study.statistics import cluster_bootstrap, holm, permutation_test


def test_cluster_bootstrap_covers_the_true_accuracy_and_narrows_with_more_participants():
    rng = np.random.default_rng(1)
    widths = []
    for people in (10, 160):
        total = np.full((people, 2), 20.0)
        correct = np.stack([rng.binomial(20, 0.8, people), rng.binomial(20, 0.5, people)], 1)
        found = cluster_bootstrap(correct.astype(float), total, np.zeros(people, int),
                                  rounds=2000, rng=np.random.default_rng(0))
        assert np.all(found.low <= [0.8, 0.5]) and np.all([0.8, 0.5] <= found.high)
        assert found.estimate == pytest.approx(correct.sum(0) / total.sum(0))
        widths.append(found.high - found.low)
    assert np.all(widths[1] < widths[0] / 2)


def test_cluster_bootstrap_resamples_within_lists_and_leaves_empty_conditions_nan():
    # between-subject: list 0 answers only condition 0, list 1 only condition 1
    correct = np.array([[5, 0], [3, 0], [0, 1], [0, 2]], dtype=float)
    total = np.array([[5, 0], [5, 0], [0, 4], [0, 4]], dtype=float)
    found = cluster_bootstrap(correct, total, np.array([0, 0, 1, 1]), rounds=500,
                              rng=np.random.default_rng(0))
    assert not np.isnan(found.draws).any()  # every draw keeps both lists
    assert found.low[0] == pytest.approx(0.6) and found.high[0] == pytest.approx(1.0)
    empty = cluster_bootstrap(correct[:2], total[:2], np.zeros(2, int), rounds=10,
                              rng=np.random.default_rng(0))
    assert np.isnan(empty.estimate[1]) and np.isnan(empty.low[1])


def test_permutation_test_finds_a_planted_difference_and_none_where_there_is_none():
    rng = np.random.default_rng(2)
    blocks = np.repeat(np.arange(20), 10)  # 20 participants, 10 trials each
    labels = np.tile(np.arange(10) % 2, 20)
    planted = (rng.random(200) < np.where(labels == 1, 0.9, 0.4)).astype(float)
    difference, p = permutation_test(planted, np.ones(200), labels, blocks, rounds=4000,
                                     rng=np.random.default_rng(0))
    assert difference == pytest.approx(planted[labels == 1].mean() - planted[labels == 0].mean())
    assert p == pytest.approx(1 / 4001)  # no permutation reaches it
    null = (rng.random(200) < 0.6).astype(float)
    _, p_null = permutation_test(null, np.ones(200), labels, blocks, rounds=4000,
                                 rng=np.random.default_rng(0))
    assert p_null > 0.05


def test_permutation_keeps_each_label_inside_its_block():
    # block 0 has only label-1 units, so no permutation can move its accurate answers
    accurate = np.array([1.0, 1.0, 0.0, 1.0])
    labels = np.array([1, 1, 0, 1])
    blocks = np.array([0, 0, 1, 1])
    difference, p = permutation_test(accurate, np.ones(4), labels, blocks, rounds=200,
                                     rng=np.random.default_rng(0))
    assert difference == pytest.approx(1.0)
    assert 0.4 < p < 0.6  # only block 1's two units swap: half the permutations are as extreme


def test_holm_adjusts_step_down_and_keeps_nan():
    assert holm([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(holm([0.01, float("nan")])[1])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


@pytest.mark.slow
def test_the_difference_interval_covers_the_planted_difference_about_95_times_in_100():
    """Coverage over 200 simulated between-subject studies: 40 participants per condition,
    6 trials each, accurate with probability 0.9 and 0.5 (benchmarks/study_interval_coverage.py
    measures more settings)."""
    rng = np.random.default_rng(0)
    covered = []
    groups = np.repeat([0, 1], 40)
    total = np.zeros((80, 2))
    total[:40, 0] = total[40:, 1] = 6
    for _ in range(200):
        correct = np.zeros((80, 2))
        correct[:40, 0] = rng.binomial(6, 0.5, 40)
        correct[40:, 1] = rng.binomial(6, 0.9, 40)
        found = cluster_bootstrap(correct, total, groups, rounds=1000, rng=rng)
        low, high = np.percentile(found.draws[:, 1] - found.draws[:, 0], [2.5, 97.5])
        covered.append(low <= 0.4 <= high)
    assert 0.88 <= np.mean(covered) <= 0.99
