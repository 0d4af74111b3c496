"""Batching of data set items (dicts) for ``DataLoader(..., collate_fn=collate)``."""

from __future__ import annotations

from numbers import Number
from typing import Any

import torch

SHARED_KEYS = ("part_names",)
"""Keys whose value is the same for every item of a data set; a batch keeps one copy."""


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine items into a batch.

    Tensors of equal shape are stacked (B, ...); tensors of different shapes (ragged,
    e.g. ``boxes`` with different counts) stay a list of B tensors; numbers become a
    tensor (B,) (ints a LongTensor); ``SHARED_KEYS`` (``part_names``) are kept once, as
    one tuple; anything else becomes a list of B values.
    """
    if not items:
        raise ValueError("collate: got an empty list of items")
    keys = list(items[0])
    for position, item in enumerate(items):
        if list(item) != keys:
            raise ValueError(
                f"collate: item {position} has keys {sorted(item)}, item 0 has {sorted(keys)}"
            )
    return {key: _combine(key, [item[key] for item in items]) for key in keys}


def _combine(key: str, values: list[Any]) -> Any:
    first = values[0]
    if key in SHARED_KEYS:
        if any(v != first for v in values[1:]):
            raise ValueError(f"collate: {key!r} differs between items of one batch")
        return first
    if isinstance(first, torch.Tensor):
        if all(isinstance(v, torch.Tensor) and v.shape == first.shape for v in values):
            return torch.stack(values)
        return list(values)
    if all(isinstance(v, Number) for v in values):
        return torch.tensor(values)
    return list(values)
