"""Counterbalancing: which condition each participant list shows each test image under.

The lists are the rows of a cyclic Latin square over the ``C`` conditions (Williams, "Experimental
designs balanced for the estimation of residual effects of treatments", 1949, builds on the same
square): row ``l``, column ``b`` holds condition ``(l + b) mod C``. In a within-subject design
the images of a task are dealt into ``C`` blocks (image ``q`` into block ``q mod C``), and list
``l`` shows block ``b`` under condition ``(l + b) mod C``: every participant sees every condition
equally often, and across the ``C`` lists every image appears under every condition exactly
once. In a between-subject design list ``l`` shows every image under condition ``l``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np


def latin_square(size: int) -> np.ndarray:
    """(size, size) int: row ``l``, column ``b`` is ``(l + b) mod size``; every value once in
    each row and each column."""
    steps = np.arange(size)
    return (steps[:, None] + steps[None, :]) % size


def condition_indices(items: int, conditions: int,
                      design: Literal["between", "within"]) -> np.ndarray:
    """(lists, items) int: the condition index under which each list shows image ``q`` of a
    task (``lists == conditions``)."""
    square = latin_square(conditions)
    if design == "between":
        return np.repeat(np.arange(conditions)[:, None], items, axis=1)
    return square[:, np.arange(items) % conditions]
