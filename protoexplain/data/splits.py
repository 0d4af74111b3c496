"""Split names and deterministic, stratified train/validation/test splits.

A validation set drawn from the training data keeps model selection off the test set (the
original ProtoPNet selected models on test accuracy). Items are assigned by ranking each class's
items by a salted SHA-256 hash of a stable key (a file name, an official id), so the split
depends only on the keys and the seed: not on listing order, platform or Python's hash seed,
and adding a file moves at most the items next to the cut.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

SPLITS = ("train", "val", "test")
"""The split names every data set accepts."""


def check_split(split: str) -> str:
    """Return ``split``, or raise ValueError naming the allowed values."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")
    return split


def check_fraction(name: str, value: float) -> float:
    """Return ``value``, or raise ValueError unless 0 <= value < 1."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {value}")
    return value


def split_sample_count(dataset: str, split: str, num_samples: int | Mapping[str, int] | None,
                       defaults: Mapping[str, int | None]) -> int | None:
    """The number of items of ``split``: ``num_samples`` itself, or its entry for the split
    when it maps split names to counts (``{train: 4000, test: 800}`` in a config), else the
    split's default (``None``: every available item). Raises ValueError naming ``dataset``
    for an unknown split name or a count below 1."""
    if isinstance(num_samples, Mapping):
        unknown = set(num_samples) - set(SPLITS)
        if unknown:
            raise ValueError(f"{dataset}: num_samples names unknown splits {sorted(unknown)}; "
                             f"use {', '.join(SPLITS)}")
        num_samples = num_samples.get(split, defaults.get(split))
    if num_samples is not None and (isinstance(num_samples, bool) or int(num_samples) != num_samples
                                    or num_samples < 1):
        raise ValueError(f"{dataset}: num_samples must be a whole number >= 1, got {num_samples!r}")
    return None if num_samples is None else int(num_samples)


def check_classes_have_items(dataset: str, split: str, labels: Sequence[int],
                             classes: Sequence[str], skipped: int = 0) -> None:
    """Raise ValueError when a class of ``classes`` has no item among ``labels`` (the
    labels of ``split``), naming the classes and how many unreadable files were skipped:
    a class without training images cannot be learned, and push finds no patch for its
    prototypes."""
    present = set(labels)
    empty = [name for index, name in enumerate(classes) if index not in present]
    if not empty:
        return
    named = ", ".join(repr(name) for name in empty[:10]) + (
        f" and {len(empty) - 10} more" if len(empty) > 10 else "")
    cause = (f" after on_bad_image: skip left out {skipped} unreadable file(s)" if skipped
             else "")
    raise ValueError(f"{dataset}: {len(empty)} class(es) have no images in the {split} "
                     f"split{cause}: {named}; every class needs training images")


def _rank_key(seed: int, key: str) -> bytes:
    return hashlib.sha256(f"{seed}\0{key}".encode()).digest()


def stratified_split(
    keys: Sequence[str],
    labels: Sequence[int],
    *,
    val_fraction: float,
    test_fraction: float = 0.0,
    seed: int = 0,
) -> dict[str, list[int]]:
    """Positions of ``keys`` in each split: ``{"train": [...], "val": [...], "test": [...]}``.

    Per class of ``n`` items, ``round(n * val_fraction)`` go to validation and
    ``round(n * test_fraction)`` to test (halves round up), taken in order of the hash of
    ``(seed, key)``; the rest train. Every class keeps at least one training item
    (validation gives way first, then test). Lists are sorted; ``keys`` must be unique.
    """
    if len(keys) != len(labels):
        raise ValueError(f"got {len(keys)} keys but {len(labels)} labels")
    if len(set(keys)) != len(keys):
        raise ValueError("split keys must be unique")
    check_fraction("val_fraction", val_fraction)
    check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be below 1, got {val_fraction} + {test_fraction}"
        )
    by_class: dict[int, list[int]] = defaultdict(list)
    for position, label in enumerate(labels):
        by_class[label].append(position)
    parts: dict[str, list[int]] = {split: [] for split in SPLITS}
    for members in by_class.values():
        ranked = sorted(members, key=lambda position: _rank_key(seed, keys[position]))
        n = len(ranked)
        n_val = math.floor(n * val_fraction + 0.5)
        n_test = math.floor(n * test_fraction + 0.5)
        n_test = min(n_test, n - 1)
        n_val = min(n_val, n - 1 - n_test)
        parts["val"] += ranked[:n_val]
        parts["test"] += ranked[n_val : n_val + n_test]
        parts["train"] += ranked[n_val + n_test :]
    return {split: sorted(positions) for split, positions in parts.items()}
