"""A frozen trunk's output maps, computed once per data set instead of once per epoch.

While the trunk is frozen (ProtoPNet's warm-up and last-layer phases) its output for an
image does not change from epoch to epoch, so those phases can train the head (add-on layers,
prototypes, last layer) on stored trunk maps: one trunk pass per image for all such epochs
instead of one per epoch. With a pretrained trunk the trunk is nearly all of such an epoch's
cost: at 224 px, ProtoPNet's last-layer epochs on EfficientNet-Lite0's cached maps took
0.6 % of their time on images (``benchmarks/frozen_trunk_cache.py``).

The maps are exact only when each image's trunk output is a function of the image alone: the
trunk runs in eval mode (batch norms with their running statistics, which is how frozen parts
train by default, :func:`prototypes.training.run_epoch`), and the data set gives the same
image for an index every time (no random augmentation). Checking that is the caller's job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm


class TrunkMaps:
    """The trunk's output maps (N, C, h, w) and labels of a data set's N images, in the
    data set's order, kept on the CPU."""

    def __init__(self, maps: torch.Tensor, labels: torch.Tensor) -> None:
        if maps.ndim != 4 or labels.shape[0] != maps.shape[0]:
            raise ValueError(f"TrunkMaps needs maps (N, C, h, w) and N labels, got shapes "
                             f"{tuple(maps.shape)} and {tuple(labels.shape)}")
        self.maps = maps
        self.labels = labels

    @classmethod
    @torch.no_grad()
    def compute(cls, trunk: nn.Module, loader: Iterable[dict[str, Any]], *,
                normalize: Callable[[torch.Tensor], torch.Tensor],
                device: torch.device | str, progress: bool = False) -> TrunkMaps:
        """Run ``trunk`` in eval mode on ``normalize(images)`` over ``loader`` (unshuffled,
        yielding ``image`` in [0, 1] and ``label``), restoring the trunk's modes afterwards.
        For a prototype model: ``compute(model.features, loader,
        normalize=model.normalize, ...)``."""
        modes = [module.training for module in trunk.modules()]
        trunk.eval()
        maps, labels = [], []
        try:
            for batch in tqdm(loader, desc="caching trunk maps", disable=not progress,
                              leave=False):
                images = batch["image"].to(device)
                maps.append(trunk(normalize(images)).contiguous().cpu())
                labels.append(torch.as_tensor(batch["label"]).cpu())
        finally:
            for module, mode in zip(trunk.modules(), modes, strict=True):
                module.training = mode
        if not maps:
            raise ValueError("TrunkMaps.compute: the loader yielded no images")
        return cls(torch.cat(maps), torch.cat(labels))

    def __len__(self) -> int:
        return self.maps.shape[0]

    @property
    def nbytes(self) -> int:
        """Memory the maps take, in bytes."""
        return self.maps.element_size() * self.maps.nelement()

    def batches(self, batch_size: int, order: Iterable[int] | None = None) -> MapBatches:
        """Batches ``{"image": maps, "label": labels}`` of ``batch_size`` in ``order`` (data
        set indices; default: the data set's order), as a loader of images would give them:
        the ``image`` entry holds trunk maps, for a model's ``forward_from_trunk``."""
        return MapBatches(self, batch_size, order)


class MapBatches:
    """An epoch of :class:`TrunkMaps` batches; re-iterable, with a length."""

    def __init__(self, source: TrunkMaps, batch_size: int, order: Iterable[int] | None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.source = source
        self.batch_size = batch_size
        self.order = (torch.arange(len(source)) if order is None
                      else torch.as_tensor(list(order), dtype=torch.long))

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for indices in self.order.split(self.batch_size):
            yield {"image": self.source.maps[indices], "label": self.source.labels[indices]}
