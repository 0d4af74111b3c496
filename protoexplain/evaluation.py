"""Evaluating a trained model on a held-out split: accuracy for single-label data sets, the
per-class AUROC and its mean for multi-label ones (``dataset.multi_label``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from protoexplain.config import Config
from protoexplain.data.labels import class_names_of, is_multi_label
from protoexplain.factory import make_loader
from protoexplain.metrics.auroc import AurocSummary, per_class_auroc


class ScoreRecorder:
    """A ``loss_fn`` for :func:`prototypes.training.run_epoch` that keeps every batch's
    logits and labels (on the CPU) before computing the wrapped loss, so that one pass gives
    both the loss terms and the scores for the AUROC."""

    def __init__(self, loss_fn: Callable[..., dict[str, torch.Tensor]]) -> None:
        self.loss_fn = loss_fn
        self.logits: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def __call__(self, output: Any, labels: torch.Tensor, model: torch.nn.Module,
                 coefs: Any) -> dict[str, torch.Tensor]:
        self.logits.append(output.logits.detach().float().cpu())
        self.labels.append(labels.detach().float().cpu())
        return self.loss_fn(output, labels, model, coefs)

    def auroc(self, classes: Sequence[str]) -> AurocSummary:
        """Per-class AUROC of the recorded logits against the recorded multi-hot labels."""
        return per_class_auroc(torch.cat(self.logits), torch.cat(self.labels), classes)


@torch.no_grad()
def classification_metrics(model: torch.nn.Module, dataset: Dataset, config: Config,
                           device: torch.device, *, prefix: str = "test",
                           progress: bool = True) -> dict[str, Any]:
    """Test metrics of ``model`` on ``dataset``.

    Single-label: ``{prefix}_accuracy`` (largest logit is the label) and
    ``{prefix}_per_class_accuracy``. Multi-label: ``{prefix}_auroc`` (the mean over classes
    whose AUROC is defined) and ``{prefix}_per_class_auroc`` (class name -> AUROC), see
    :func:`protoexplain.metrics.auroc.per_class_auroc`. Both: ``{prefix}_samples``.
    """
    model.eval()
    loader = make_loader(dataset, config.data.eval_batch_size, config)
    logits, labels = [], []
    for batch in tqdm(loader, desc=f"evaluating ({prefix})", disable=not progress):
        logits.append(model(batch["image"].to(device)).logits.float().cpu())
        labels.append(batch["label"])
    logits, labels = torch.cat(logits), torch.cat(labels)
    if is_multi_label(dataset):
        metrics = per_class_auroc(logits, labels, class_names_of(dataset)).as_metrics(prefix)
    else:
        metrics = _accuracy_metrics(logits, labels, dataset.num_classes, prefix)
    metrics[f"{prefix}_samples"] = int(labels.shape[0])
    return metrics


def _accuracy_metrics(logits: torch.Tensor, labels: torch.Tensor, num_classes: int,
                      prefix: str) -> dict[str, Any]:
    predicted = logits.argmax(dim=1)
    total = torch.bincount(labels, minlength=num_classes)
    correct = torch.bincount(labels[predicted == labels], minlength=num_classes)
    per_class = (correct.float() / total.clamp(min=1).float()).tolist()
    return {
        f"{prefix}_accuracy": float(correct.sum() / total.sum().clamp(min=1)),
        f"{prefix}_per_class_accuracy": [round(v, 4) for v in per_class],
    }


def headline(metrics: dict[str, Any], prefix: str = "test") -> str:
    """One phrase for logs: ``test mean AUROC 0.9440`` or ``test accuracy 0.9120``."""
    if f"{prefix}_auroc" in metrics:
        value = metrics[f"{prefix}_auroc"]
        return f"{prefix} mean AUROC " + ("undefined" if value is None else f"{value:.4f}")
    return f"{prefix} accuracy {metrics[f'{prefix}_accuracy']:.4f}"
