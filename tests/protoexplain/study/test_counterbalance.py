"""The Latin square of the participant lists."""

import numpy as np

from protoexplain.study.counterbalance import condition_indices, latin_square


def test_latin_square_holds_each_condition_once_per_row_and_column():
    square = latin_square(4)
    assert all(sorted(row) == [0, 1, 2, 3] for row in square)
    assert all(sorted(column) == [0, 1, 2, 3] for column in square.T)


def test_within_lists_show_every_image_under_every_condition_and_each_equally_often():
    assigned = condition_indices(items=8, conditions=4, design="within")
    assert assigned.shape == (4, 8)
    assert all(sorted(column) == [0, 1, 2, 3] for column in assigned.T)
    assert all(np.bincount(row, minlength=4).tolist() == [2, 2, 2, 2] for row in assigned)


def test_between_lists_show_every_image_under_their_own_condition():
    assigned = condition_indices(items=5, conditions=3, design="between")
    assert assigned.tolist() == [[0] * 5, [1] * 5, [2] * 5]

