"""Per-class AUROC of multi-label scores and their mean (the ChestX-ray14 protocol).

Each class's area under the ROC curve is scikit-learn's ``roc_auc_score`` on that column
(Wang et al., "ChestX-ray8", CVPR 2017, and XProtoNet report the per-finding AUROC and their
mean). A class whose labels in the evaluated set take only one value has no ROC curve: its
AUROC is undefined, reported as ``None``, named in ``undefined``, and left out of the mean.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

__all__ = ["AurocSummary", "per_class_auroc"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AurocSummary:
    """AUROC per class (``None`` where undefined), their mean over the defined classes
    (``None`` when no class is defined) and the names of the undefined classes."""

    classes: tuple[str, ...]
    per_class: tuple[float | None, ...]
    mean: float | None
    undefined: tuple[str, ...]

    def as_metrics(self, prefix: str = "test") -> dict[str, Any]:
        """JSON-ready entries: ``{prefix}_auroc`` (the mean), ``{prefix}_per_class_auroc``
        (name -> value or None) and, when some class is undefined,
        ``{prefix}_auroc_undefined`` (their names) with ``{prefix}_auroc_note`` saying so."""
        metrics: dict[str, Any] = {
            f"{prefix}_auroc": self.mean,
            f"{prefix}_per_class_auroc": dict(zip(self.classes, self.per_class, strict=True)),
        }
        if self.undefined:
            metrics[f"{prefix}_auroc_undefined"] = list(self.undefined)
            metrics[f"{prefix}_auroc_note"] = self.note()
        return metrics

    def note(self) -> str:
        """A sentence naming the undefined classes and what the mean covers."""
        if not self.undefined:
            return f"AUROC defined for all {len(self.classes)} classes"
        defined = len(self.classes) - len(self.undefined)
        return (f"AUROC undefined for {', '.join(self.undefined)} (only one label value in the "
                f"evaluated set); the mean is over the other {defined} class(es)")


def _as_array(values: torch.Tensor | np.ndarray | Sequence, name: str) -> np.ndarray:
    array = (values.detach().cpu().numpy() if isinstance(values, torch.Tensor)
             else np.asarray(values))
    if array.ndim != 2:
        raise ValueError(f"{name} must be (N, K), got shape {array.shape}")
    return array.astype(np.float64)


def per_class_auroc(scores: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
                    classes: Sequence[str] | None = None) -> AurocSummary:
    """AUROC of each column of ``scores`` against the 0/1 column of ``labels``.

    Args:
        scores: (N, K) scores, larger meaning more likely positive (logits or probabilities:
            the AUROC depends only on their order).
        labels: (N, K) multi-hot labels (0 or 1).
        classes: K class names (default ``"0"``, ``"1"``, ...).

    Raises:
        ValueError: on mismatched shapes, non-finite scores, or labels other than 0 and 1.
    """
    score_array = _as_array(scores, "scores")
    label_array = _as_array(labels, "labels")
    if score_array.shape != label_array.shape:
        raise ValueError(f"scores {score_array.shape} and labels {label_array.shape} differ in "
                         "shape")
    if not np.isfinite(score_array).all():
        raise ValueError("scores contain NaN or infinite values")
    if not np.isin(label_array, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    names = tuple(str(k) for k in range(score_array.shape[1])) if classes is None \
        else tuple(classes)
    if len(names) != score_array.shape[1]:
        raise ValueError(f"got {len(names)} class names for {score_array.shape[1]} columns")

    per_class: list[float | None] = []
    for column in range(score_array.shape[1]):
        truth = label_array[:, column]
        if truth.min() == truth.max():
            per_class.append(None)
        else:
            per_class.append(float(roc_auc_score(truth, score_array[:, column])))
    defined = [value for value in per_class if value is not None]
    undefined = tuple(name for name, value in zip(names, per_class, strict=True)
                      if value is None)
    summary = AurocSummary(classes=names, per_class=tuple(per_class),
                           mean=float(np.mean(defined)) if defined else None,
                           undefined=undefined)
    if undefined:
        log.warning(summary.note())
    return summary
