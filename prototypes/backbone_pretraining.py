"""Supervised warm start of a randomly initialised trunk, for machines without ImageNet weights.

The original ProtoPNet always starts from an ImageNet-pretrained trunk; its warm-up phase
(backbone frozen) assumes features that already mean something. When no weights can be had
(offline, or a custom trunk such as ``small_cnn``), a few epochs of plain classification —
the trunk, global average pooling and a temporary linear head, trained with cross-entropy —
give the trunk that starting point. The head is discarded afterwards; ProtoPNet's own phases
then run unchanged. This is our addition, off by default (``epochs = 0``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from prototypes.model import ProtoPNet


@dataclass
class PretrainingOutput:
    """What the warm-start classifier returns: only ``logits`` (B, K)."""

    logits: torch.Tensor


class BackbonePretrainer(nn.Module):
    """``model``'s trunk (shared, not copied) with average pooling and a linear head."""

    def __init__(self, model: ProtoPNet) -> None:
        super().__init__()
        self.model = model
        with torch.no_grad():
            probe = torch.zeros(1, 3, *model.image_size, device=model.mean.device)
            channels = model.features(model.normalize(probe)).shape[1]
        self.head = nn.Linear(channels, model.num_classes).to(model.mean.device)

    def forward(self, images: torch.Tensor) -> PretrainingOutput:
        features = self.model.features(self.model.normalize(images))
        return PretrainingOutput(logits=self.head(features.mean(dim=(2, 3))))

    def parameters_to_train(self) -> list[nn.Parameter]:
        """The trunk's and the head's parameters (not the prototype layer's)."""
        return [*self.model.features.parameters(), *self.head.parameters()]


def pretraining_loss(output: PretrainingOutput, labels: torch.Tensor, model: nn.Module,
                     coefs: object) -> dict[str, torch.Tensor]:
    """Cross-entropy, in the ``loss_fn`` form of :func:`prototypes.training.run_epoch`."""
    loss = F.cross_entropy(output.logits, labels)
    return {"total": loss, "cross_entropy": loss}
