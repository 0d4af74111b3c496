"""``training.cache_frozen_trunk``: train the frozen-trunk stages on stored trunk maps.

The warm-up and last-layer stages do not train the trunk (:func:`prototypes.training.set_phase`)
and run its batch norms in eval mode, so each training and validation image's trunk output
is the same in all of them. With the option on, a training run computes those maps once
(:class:`prototypes.trunk_cache.TrunkMaps`) and trains and validates the head on them, in
the same sample order as without; the maps are recomputed after a stage that trains the
trunk (joint, pretrain). Push still runs on images.

It needs what makes the stored maps exact: training images without random augmentation
(``data.options.augment: false`` for photographs), one process, and no ProtoPNet
feature-alignment term (it needs a shallow trunk map). XProtoNet's transformation loss runs
the trunk on transformed images while the occurrence module trains, so with it on only the
last-layer stages use the maps. Memory: C x h
x w floats per image on the host (EfficientNet-Lite0 at 224 px: 1280 x 7 x 7, 251 kB; 3000
images, 0.75 GB).
"""

from __future__ import annotations

import logging

import torch

from protoexplain import distributed
from protoexplain.config import Config, ConfigError
from protoexplain.factory import RunData, make_loader
from prototypes.trunk_cache import MapBatches, TrunkMaps

log = logging.getLogger("protoexplain")

FROZEN_TRUNK_STAGES = ("warm", "last_layer")
"""Training stages whose trunk is frozen (the pretrain and joint stages train it)."""


def cached_stages(config: Config) -> tuple[str, ...]:
    """The stage kinds that train on the maps: both frozen-trunk kinds, or only the last
    layer while XProtoNet's transformation loss (``training.loss.transformation``), which
    needs the images, trains the occurrence module in the warm-up."""
    if getattr(config.training.loss, "transformation", 0):
        return ("last_layer",)
    return FROZEN_TRUNK_STAGES


def check_cacheable(config: Config, data: RunData) -> None:
    """A :class:`ConfigError` naming the key that keeps ``training.cache_frozen_trunk`` from
    giving exact trunk maps; nothing when the option is off or it can."""
    if not config.training.cache_frozen_trunk:
        return
    why = None
    if getattr(data.train, "augmentation", None) is not None:
        why = ("the training images are randomly augmented; set data.options.augment: false "
               "to cache")
    elif distributed.is_distributed():
        why = "it runs on one process only, not under torchrun"
    elif getattr(config.training.loss, "alignment", 0):
        why = "training.loss.alignment runs the trunk on every batch; set it to 0 to cache"
    if why is not None:
        raise ConfigError(f"'training.cache_frozen_trunk' cannot be used here: {why}")


class FrozenTrunkCache:
    """The stored trunk maps of a run's training and validation sets, computed on first use
    and dropped when a stage trains the trunk."""

    def __init__(self, model: torch.nn.Module, data: RunData, config: Config,
                 device: torch.device, *, progress: bool) -> None:
        self.model, self.data, self.config = model, data, config
        self.device, self.progress = device, progress
        self.maps: dict[str, TrunkMaps] = {}
        self.stages = cached_stages(config)
        if self.stages != FROZEN_TRUNK_STAGES:
            log.info("training.loss.transformation needs the warm-up's images: only the "
                     "last-layer stages train on cached trunk maps")

    def covers(self, kind: str) -> bool:
        """Whether stages of ``kind`` train and validate on the maps."""
        return kind in self.stages

    def _split(self, split: str) -> TrunkMaps:
        if split not in self.maps:
            dataset = self.data.push if split == "train" else self.data.val  # unaugmented
            loader = make_loader(dataset, self.config.data.eval_batch_size, self.config)
            self.maps[split] = TrunkMaps.compute(self.model.features, loader,
                                                 normalize=self.model.normalize,
                                                 device=self.device, progress=self.progress)
            log.info("cached the trunk maps of the %s set: %d images, %.2f GB", split,
                     len(self.maps[split]), self.maps[split].nbytes / 1e9)
        return self.maps[split]

    def train_batches(self, batch_size: int, shuffle_seed: int) -> MapBatches:
        """The training set's maps in the order a loader shuffled with ``shuffle_seed``
        gives its images (:func:`protoexplain.factory.make_loader`)."""
        maps = self._split("train")
        return maps.batches(batch_size, distributed.training_sampler(len(maps), shuffle_seed,
                                                                     shard=False))

    def val_batches(self) -> MapBatches:
        return self._split("val").batches(self.config.data.eval_batch_size)

    def after_stage(self, kind: str) -> None:
        """Drop the maps after a stage that trained the trunk."""
        if kind not in FROZEN_TRUNK_STAGES and kind != "push":
            self.maps.clear()
