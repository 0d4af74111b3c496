"""Which test images a study shows, and in which order they go to the Latin square's
blocks."""

import numpy as np

from protoexplain.study.selection import Selected, block_order, confidence_strata


def test_confidence_strata_are_quantile_bands_of_equal_size():
    confidence = np.linspace(0.3, 1.0, 30)
    strata, edges = confidence_strata(confidence, 3)
    assert np.bincount(strata).tolist() == [10, 10, 10]
    assert np.all(np.diff(strata) >= 0) and len(edges) == 2
    assert confidence_strata(confidence, 1)[0].tolist() == [0] * 30


def test_block_order_gives_every_block_both_kinds_and_an_even_spread_of_strata():
    right = [Selected(i, stratum) for i, stratum in enumerate([0, 1, 2])]
    wrong = [Selected(3 + i, stratum) for i, stratum in enumerate([0, 1, 2])]
    ordered = block_order(right + wrong, blocks=3)
    blocks = [[pick.index for pick in ordered[b::3]] for b in range(3)]
    assert all(sorted(i >= 3 for i in block) == [False, True] for block in blocks)
    strata = [sum(ordered[q].stratum for q in range(b, 6, 3)) for b in range(3)]
    assert strata == [2, 2, 2]
