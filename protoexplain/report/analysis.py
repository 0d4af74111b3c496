"""The numbers behind a report: one pass over the test set, the overview, the informative test
images, the "this looks like that" decomposition of a logit, and the prototypes to look at.

A prototype network's logit is a sum over prototypes (ProtoPNet's last layer has no bias,
XProtoNet's own-class layer neither): ``logit_c = sum_p s_p * w_cp``, with ``s_p`` the
prototype's similarity and ``w_cp`` its last-layer weight for class ``c``. A local explanation
shows the top terms (the original's ``local_analysis.py`` ranks them the same way) and one
``rest`` term, the sum of all the others, so that the shown terms add up to the logit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from protoexplain.metrics.auroc import per_class_auroc
from prototypes import ProjectionRecord, duplicate_prototypes


def class_weights(model: nn.Module) -> torch.Tensor:
    """(K, P) the last-layer weights as the model applies them (XProtoNet's
    ``class_weights()`` masks its own-class layer; ProtoPNet uses its last layer as is)."""
    weights = getattr(model, "class_weights", None)
    return weights() if callable(weights) else model.last_layer.weight


@dataclass
class Predictions:
    """What one pass of the model over the test set keeps, on the CPU.

    ``logits`` (N, K); ``labels`` (N,) class indices, or (N, K) multi-hot floats;
    ``predicted`` (N,) the highest logit; ``confidence`` (N,) its softmax probability (sigmoid
    for multi-label); ``correct`` (N,) bool (multi-label: the predicted finding is present);
    ``top_evidence`` (N,) the prototype with the largest contribution to the predicted logit.
    """

    logits: torch.Tensor
    labels: torch.Tensor
    predicted: torch.Tensor
    confidence: torch.Tensor
    correct: torch.Tensor
    top_evidence: torch.Tensor
    multi_label: bool


@torch.no_grad()
def predict_test_set(model: nn.Module, loader: Iterable[dict[str, Any]], *, multi_label: bool,
                     device: torch.device, progress: bool = True) -> Predictions:
    """Run ``model`` (eval mode) once over the test set's batches (dicts with ``image`` and
    ``label``)."""
    weights = class_weights(model).detach()
    logits, labels, evidence = [], [], []
    for batch in tqdm(loader, desc="report: test set", disable=not progress):
        output = model(batch["image"].to(device))
        predicted = output.logits.argmax(dim=1)
        evidence.append((output.similarities * weights[predicted]).argmax(dim=1).cpu())
        logits.append(output.logits.float().cpu())
        labels.append(batch["label"])
    logits = torch.cat(logits)
    labels = torch.cat(labels)
    predicted = logits.argmax(dim=1)
    if multi_label:
        confidence = logits.sigmoid().gather(1, predicted[:, None])[:, 0]
        correct = labels.gather(1, predicted[:, None])[:, 0] > 0.5
    else:
        confidence = logits.softmax(dim=1).gather(1, predicted[:, None])[:, 0]
        correct = predicted == labels
    return Predictions(logits=logits, labels=labels, predicted=predicted, confidence=confidence,
                    correct=correct, top_evidence=torch.cat(evidence), multi_label=multi_label)


def overview(test: Predictions, class_names: list[str]) -> dict[str, Any]:
    """Test accuracy, per-class accuracy and the confusion matrix (rows: true class, columns:
    predicted); for multi-label runs the mean and per-class AUROC instead."""
    count = len(class_names)
    if test.multi_label:
        summary = per_class_auroc(test.logits, test.labels, class_names)
        return {"test_samples": len(test.labels), "test_auroc": summary.mean,
                "per_class_auroc": dict(zip(class_names, summary.per_class, strict=True)),
                "per_class_positives": [int(v) for v in test.labels.sum(dim=0).tolist()]}
    confusion = torch.zeros(count, count, dtype=torch.long)
    confusion.index_put_((test.labels, test.predicted), torch.ones_like(test.labels),
                         accumulate=True)
    total = confusion.sum(dim=1)
    per_class = [float(confusion[k, k] / total[k]) if total[k] else None for k in range(count)]
    return {"test_samples": len(test.labels),
            "test_accuracy": float(test.correct.float().mean()) if len(test.labels) else None,
            "per_class_accuracy": per_class, "per_class_samples": total.tolist(),
            "confusion_matrix": confusion.tolist()}


def true_classes(test: Predictions, index: int) -> list[int]:
    """The classes present in test image ``index`` (one for single-label data)."""
    label = test.labels[index]
    if test.multi_label:
        return [int(k) for k in (label > 0.5).nonzero()[:, 0].tolist()]
    return [int(label)]


def choose_test_images(test: Predictions, count: int) -> list[tuple[int, str]]:
    """Up to ``count`` informative test images as (index, why chosen), in the order to show.

    First the most and the least confident prediction of the whole set and its most confident
    mistake; then rounds over the classes (by true class; a multi-label image by its first
    finding, images without any as one more group): each class's most confident correct
    image, its most confident mistake, its least confident correct image; then the remaining
    mistakes, most confident first.
    """
    if count <= 0 or len(test.labels) == 0:
        return []
    order = test.confidence.argsort(descending=True, stable=True).tolist()
    chosen: dict[int, str] = {}

    def take(index: int | None, why: str) -> None:
        if index is not None and index not in chosen and len(chosen) < count:
            chosen[index] = why

    wrong = [i for i in order if not test.correct[i]]
    take(order[0], "most confident in the test set")
    take(order[-1], "least confident in the test set")
    take(wrong[0] if wrong else None, "most confident mistake in the test set")
    groups: dict[int, list[int]] = {}
    for i in order:
        present = true_classes(test, i)
        groups.setdefault(present[0] if present else -1, []).append(i)
    rounds = [
        ("most confident correct of its class", lambda members: next(
            (i for i in members if test.correct[i]), None)),
        ("most confident mistake of its class", lambda members: next(
            (i for i in members if not test.correct[i]), None)),
        ("least confident correct of its class", lambda members: next(
            (i for i in reversed(members) if test.correct[i]), None)),
    ]
    for why, pick in rounds:
        for group in sorted(groups):
            take(pick(groups[group]), why)
    for i in wrong:
        take(i, "misclassified")
    return list(chosen.items())


def explained_classes(test: Predictions, index: int) -> list[int]:
    """The classes a local explanation decomposes: the predicted one and, for a mistake, the
    true one (multi-label: the present finding with the highest logit)."""
    predicted = int(test.predicted[index])
    if test.correct[index]:
        return [predicted]
    present = true_classes(test, index)
    if not present:
        return [predicted]
    best = max(present, key=lambda k: float(test.logits[index, k]))
    return [predicted, best]


def decompose_logit(similarities: torch.Tensor, weights: torch.Tensor, logit: float,
                    class_index: int, top_k: int) -> dict[str, Any]:
    """The top ``top_k`` prototypes of one logit and the sum of all the others.

    Args:
        similarities: (P,) the image's similarity to each prototype.
        weights: (K, P) the last-layer weights as applied (:func:`class_weights`).
        logit: the model's logit of ``class_index`` for the image.
        class_index: the explained class.
        top_k: prototypes shown, by contribution (similarity × weight), largest first.

    Returns:
        ``{"class": c, "logit": logit, "prototypes": [{"prototype", "similarity", "weight",
        "contribution"}...], "rest": sum of the other contributions}``, sums in float64.
    """
    similarities = similarities.detach().double().cpu()
    row = weights[class_index].detach().double().cpu()
    contributions = similarities * row
    top = contributions.argsort(descending=True, stable=True)[:top_k]
    others = torch.ones_like(contributions, dtype=torch.bool)
    others[top] = False
    return {"class": int(class_index), "logit": float(logit),
            "prototypes": [{"prototype": int(p), "similarity": float(similarities[p]),
                            "weight": float(row[p]), "contribution": float(contributions[p])}
                           for p in top.tolist()],
            "rest": float(contributions[others].sum())}


def duplicate_groups(model: nn.Module, records: list[ProjectionRecord] | None
                     ) -> list[list[int]] | None:
    """Groups of duplicate prototypes (the same source patch, given one record per prototype,
    or near-identical vectors; :func:`prototypes.duplicate_prototypes`), or ``None`` where
    that test does not apply (XProtoNet: a prototype's score also depends on its own
    occurrence head)."""
    try:
        return duplicate_prototypes(model, records)
    except TypeError:
        return None


def near_zero_weights(weights: torch.Tensor, classes: torch.Tensor,
                      tolerance: float = 0.05) -> list[bool]:
    """Per prototype: whether its weight to its own class is near zero, i.e. at most
    ``tolerance`` times the largest own-class weight (absolute values) of the model."""
    own = weights.detach().gather(0, classes[None].to(weights.device))[0].abs().cpu()
    largest = float(own.max()) if own.numel() else 0.0
    return [bool(v <= tolerance * largest) for v in own.tolist()]


def region_on_object(heatmap: torch.Tensor, mask: torch.Tensor,
                     percentile: float = 95.0) -> float:
    """The share of a map's high-activation region that lies on the object: of the pixels of
    ``heatmap`` (H, W) at or above its ``percentile``-th percentile (the region the box is
    drawn around), those on ``mask`` (H, W) bool. A box is a poor measure here: a bird's part
    rarely fills its bounding rectangle."""
    values = heatmap.detach().float().cpu()
    region = values >= torch.quantile(values.flatten(), percentile / 100)
    return float(mask.cpu()[region].float().mean())


def ground_truth_mask(item: dict[str, Any], class_index: int) -> torch.Tensor | None:
    """Where the object is in a data set item, if the data says: its ``object_mask``, or the
    union of its labelled boxes of ``class_index`` (findings of a chest X-ray); else ``None``."""
    if "object_mask" in item:
        return torch.as_tensor(item["object_mask"]).bool()
    if "box_labels" in item and "boxes" in item:
        boxes = finding_boxes(item, class_index)
        if not boxes:
            return None
        mask = torch.zeros(item["image"].shape[-2:], dtype=torch.bool)
        for y0, y1, x0, x1 in boxes:
            mask[y0:y1, x0:x1] = True
        return mask
    return None


def finding_boxes(item: dict[str, Any], class_index: int) -> list[list[int]]:
    """The item's labelled boxes (y0, y1, x0, x1) of class ``class_index`` (data with
    ``box_labels``); empty otherwise."""
    if "box_labels" not in item:
        return []
    return [[int(v) for v in box] for box, label in zip(item["boxes"].tolist(),
                                                          item["box_labels"].tolist(),
                                                          strict=True)
            if int(label) == class_index]
