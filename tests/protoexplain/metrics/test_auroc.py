"""Per-class AUROC against scikit-learn, and classes whose AUROC is undefined."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from protoexplain.metrics.auroc import per_class_auroc


def test_per_class_values_and_mean_match_sklearn_on_a_tiny_case():
    scores = torch.tensor([[0.9, 0.1, 2.0], [0.8, 0.7, -1.0], [0.3, 0.2, 0.5],
                           [0.1, 0.9, 0.4], [0.6, 0.4, 0.5]])
    labels = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0]])
    summary = per_class_auroc(scores, labels, ["a", "b", "c"])
    expected = [roc_auc_score(labels[:, k].numpy(), scores[:, k].numpy()) for k in range(3)]
    assert summary.per_class == pytest.approx(expected)
    assert summary.mean == pytest.approx(np.mean(expected))
    # by hand: class a ranks every positive above every negative; class c has one tied pair
    assert summary.per_class[0] == 1.0
    assert summary.per_class[2] == pytest.approx((1 + 1 + 1 + 1 + 1 + 0.5) / 6)
    assert summary.undefined == ()
    per_class = dict(zip("abc", expected, strict=True))
    assert summary.as_metrics("val") == {"val_auroc": summary.mean,
                                         "val_per_class_auroc": per_class}


def test_a_class_with_one_label_value_is_undefined_skipped_from_the_mean_and_named():
    scores = np.array([[0.2, 0.9, 0.1], [0.8, 0.1, 0.3], [0.5, 0.5, 0.2]])
    labels = np.array([[0, 0, 1], [1, 0, 1], [1, 0, 1]])  # b all negative, c all positive
    summary = per_class_auroc(scores, labels, ["a", "b", "c"])
    assert summary.per_class == (1.0, None, None)
    assert summary.mean == 1.0
    assert summary.undefined == ("b", "c")
    metrics = summary.as_metrics()
    assert metrics["test_auroc"] == 1.0
    assert metrics["test_per_class_auroc"] == {"a": 1.0, "b": None, "c": None}
    assert metrics["test_auroc_undefined"] == ["b", "c"]
    assert "b, c" in metrics["test_auroc_note"] and "1 class" in metrics["test_auroc_note"]


def test_no_defined_class_gives_no_mean():
    summary = per_class_auroc(np.zeros((2, 2)), np.array([[1, 0], [1, 0]]))
    assert summary.mean is None and summary.undefined == ("0", "1")


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="differ in shape"):
        per_class_auroc(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        per_class_auroc(np.array([[np.nan], [0.0]]), np.array([[0], [1]]))
    with pytest.raises(ValueError, match="0 or 1"):
        per_class_auroc(np.zeros((2, 1)), np.array([[0.5], [1.0]]))
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        per_class_auroc(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="class names"):
        per_class_auroc(np.zeros((2, 2)), np.array([[0, 1], [1, 0]]), ["only"])
