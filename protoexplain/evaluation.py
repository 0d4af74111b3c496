"""Evaluating a trained model: accuracy on the held-out test split."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from protoexplain.config import Config
from protoexplain.factory import make_loader


@torch.no_grad()
def classification_metrics(model: torch.nn.Module, dataset: Dataset, config: Config,
                           device: torch.device, *, prefix: str = "test",
                           progress: bool = True) -> dict[str, Any]:
    """Accuracy and per-class accuracy of ``model`` on ``dataset``."""
    model.eval()
    loader = make_loader(dataset, config.data.eval_batch_size, config)
    num_classes = dataset.num_classes
    correct = torch.zeros(num_classes, dtype=torch.long)
    total = torch.zeros(num_classes, dtype=torch.long)
    for batch in tqdm(loader, desc=f"evaluating ({prefix})", disable=not progress):
        labels = batch["label"].to(device)
        predicted = model(batch["image"].to(device)).logits.argmax(dim=1)
        total += torch.bincount(labels, minlength=num_classes).cpu()
        correct += torch.bincount(labels[predicted == labels], minlength=num_classes).cpu()
    per_class = (correct.float() / total.clamp(min=1).float()).tolist()
    return {
        f"{prefix}_accuracy": float(correct.sum() / total.sum().clamp(min=1)),
        f"{prefix}_per_class_accuracy": [round(v, 4) for v in per_class],
        f"{prefix}_samples": int(total.sum()),
    }
