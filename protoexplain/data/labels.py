"""What a data set says about its labels: the class names, and whether labels are multi-hot."""

from __future__ import annotations

from torch.utils.data import Dataset


def class_names_of(dataset: Dataset) -> list[str]:
    """The data set's class names (its ``classes``), or else its class indices as text
    (``"0"`` ... ``str(num_classes - 1)``)."""
    names = getattr(dataset, "classes", None)
    return list(names) if names is not None else [str(i) for i in range(dataset.num_classes)]


def is_multi_label(dataset: Dataset) -> bool:
    """Whether ``dataset``'s labels are multi-hot (its ``multi_label`` attribute)."""
    return bool(getattr(dataset, "multi_label", False))
