"""Build the objects a run needs (device, data sets, loaders, model) from its config."""

from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from protoexplain import distributed
from protoexplain.config import Config, ConfigError, dataset_class
from protoexplain.data.collate import collate
from prototypes import ProtoPNet, XProtoNet
from prototypes.backbones import build_backbone

log = logging.getLogger("protoexplain")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; anything else is passed to :class:`torch.device`.

    Under torchrun the process also joins the process group here
    (:func:`protoexplain.distributed.join`: gloo on the CPU, nccl on CUDA, where each process
    takes the GPU ``LOCAL_RANK``)."""
    if name == "auto":
        return distributed.join(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        device = torch.device(name)
    except RuntimeError as error:  # an unknown device type, e.g. 'tpu'
        raise ConfigError(f"'device' is {name!r}, which torch does not know: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"'device' is {name!r} but CUDA is not available on this machine")
    return distributed.join(device)


def use_deterministic_kernels(device: torch.device, enabled: bool) -> None:
    """On a GPU, make PyTorch choose deterministic kernels (cuDNN convolutions and reductions
    of a fixed order; an op that has none warns and runs anyway), so that a seed gives the same
    weights on every run and a resumed run continues exactly. Without them, two trainings of
    one seed on an H100 ended at test accuracies 0.921 and 0.949 (docs/reproducibility.md).
    The CPU path is deterministic already, so nothing changes there. Process-wide, as
    PyTorch's own switch is; cuBLAS needs its workspace setting before its first use, hence
    the call before the model moves to the device."""
    if device.type != "cuda":
        return
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.benchmark = False


def build_dataset(config: Config, split: str, *, augment: bool | None = None) -> Dataset:
    """The configured data set for ``split``.

    ``augment`` is passed only to data sets that take it (real photographs do; generated
    sets are varied by construction), so the push set can be the unaugmented training set;
    ``data.options.augment: false`` turns augmentation off everywhere.
    The data set's own ``seed`` option is left alone: training seeds vary the model, not
    the data. A value the data set refuses (or a corrupt file it names) is a ConfigError
    naming the data set, the split and its options, which the CLI reports in one line.
    """
    cls = dataset_class(config.data.dataset)
    kwargs = dict(config.data.options)
    parameters = inspect.signature(cls).parameters
    if augment is not None and "augment" in parameters:
        kwargs["augment"] = augment and kwargs.get("augment", True)
    try:
        return cls(root=config.data.root, split=split, **kwargs)
    except ValueError as error:  # a value of data.options, or a file, the data set refuses
        raise ConfigError(f"data set {config.data.dataset} ({split} split, data.options "
                          f"{dict(config.data.options)}): {error}") from None


@dataclass
class RunData:
    """The four views of the data a training run uses."""

    train: Dataset
    push: Dataset
    val: Dataset
    test: Dataset

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def image_size(self) -> int:
        """The side of the (square) images."""
        return int(self.train[0]["image"].shape[-1])


def build_run_data(config: Config) -> RunData:
    """Training (augmented), push (unaugmented training), validation and test sets.

    A split without items is a ConfigError naming the data set and split (a run needs all
    three: training, model selection and the test metrics). The images that
    ``on_bad_image: skip`` left out are logged, their count and files
    (:func:`skipped_images` gives them for ``metrics.json``).
    """
    data = RunData(
        train=build_dataset(config, "train", augment=True),
        push=build_dataset(config, "train", augment=False),
        val=build_dataset(config, "val", augment=False),
        test=build_dataset(config, "test", augment=False),
    )
    for split, files in skipped_images(data).items():
        shown = ", ".join(f"{entry['file']} ({entry['reason']})" for entry in files[:20])
        more = f" and {len(files) - 20} more (all in metrics.json)" if len(files) > 20 else ""
        log.warning("on_bad_image: skip left out %d unreadable image(s) of the %s split: %s%s",
                    len(files), split, shown, more)
    for split in ("train", "val", "test"):
        if len(getattr(data, split)) == 0:
            skipped = len(skipped_images(data).get(split, []))
            why = f" (all {skipped} of its images were unreadable and skipped)" if skipped else ""
            raise ConfigError(f"data set {config.data.dataset}: the {split} split is "
                              f"empty{why}; a run needs images in train, val and test "
                              f"(data.root {config.data.root}, data.options "
                              f"{dict(config.data.options)})")
    return data


def skipped_images(data: RunData) -> dict[str, list[dict[str, str]]]:
    """Per split (``train``, ``val``, ``test``), the files that ``on_bad_image: skip`` left
    out, as ``{"file": ..., "reason": ...}``; splits without any are left out."""
    found = {}
    for split in ("train", "val", "test"):
        skipped = getattr(getattr(data, split), "skipped", None) or []
        if skipped:
            found[split] = [{"file": str(path), "reason": str(reason)}
                            for path, reason in skipped]
    return found


def make_loader(dataset: Dataset, batch_size: int, config: Config, *,
                shuffle_seed: int | None = None, shard: bool = False) -> DataLoader:
    """A loader with the project's collate.

    ``shuffle_seed``: shuffle, in the order of
    :class:`~protoexplain.distributed.ShuffledShard` (``torch.randperm`` drawn from that seed
    at every pass, so the order does not depend on anything else touching the loader).
    ``shard``: under torch.distributed, only this process's part: with ``shuffle_seed``, its
    positions of the permutation, ``batch_size`` being the per-process batch; without, the
    batches of the unshuffled loader that fall to this process
    (:class:`~protoexplain.distributed.BatchShard`). On one process it changes nothing.
    """
    if shard and shuffle_seed is None and distributed.is_distributed():
        return DataLoader(dataset, batch_sampler=distributed.BatchShard(len(dataset),
                                                                        batch_size),
                          collate_fn=collate, num_workers=config.data.num_workers)
    sampler = generator = None
    if shuffle_seed is not None:
        sampler = distributed.training_sampler(len(dataset), shuffle_seed, shard=shard)
        generator = torch.Generator().manual_seed(shuffle_seed)  # the workers' base seed
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, generator=generator,
                      collate_fn=collate, num_workers=config.data.num_workers)


def build_model(config: Config, num_classes: int, image_size: int, *,
                load_pretrained: bool = True) -> ProtoPNet | XProtoNet:
    """The ``model.architecture`` (ProtoPNet or XProtoNet) the config describes, for square
    images of side ``image_size``.

    Backbone weights come from ``model.pretrained`` when ``load_pretrained``; a model about to
    receive a checkpoint's state dict skips that.
    """
    model = config.model
    shared = dict(
        backbone=model.backbone,
        num_classes=num_classes,
        prototypes_per_class=model.prototypes_per_class,
        prototype_dim=model.prototype_dim,
        add_on=model.add_on,
        mean=tuple(model.mean),
        std=tuple(model.std),
        image_size=image_size,
        pretrained=model.pretrained if load_pretrained else None,
        backbone_options=model.backbone_options,
    )
    try:
        if model.architecture == "xprotonet":
            return XProtoNet(**shared, **model.xprotonet)
        return ProtoPNet(**shared, activation=model.activation,
                         incorrect_class_connection=model.incorrect_class_connection)
    except (ValueError, RuntimeError) as error:  # a value the trunk or the model refuses
        smallest = smallest_image_size(model.backbone, model.backbone_options)
        if smallest is not None and image_size < smallest:
            raise ConfigError(
                f"'model.backbone' {model.backbone!r} needs images of at least {smallest} px, "
                f"and the data set gives {image_size} px (data.options.image_size); use "
                "larger images or a trunk with a smaller total stride (e.g. small_cnn)"
            ) from None
        text = " ".join(str(error).split())
        raise ConfigError(f"the model cannot be built (model.backbone {model.backbone!r}, "
                          f"model.backbone_options {dict(model.backbone_options)}, "
                          f"model.pretrained {model.pretrained!r}, {image_size} px images): "
                          f"{text}") from None


def smallest_image_size(backbone: str, options: dict[str, Any],
                        largest: int = 1024) -> int | None:
    """The smallest square image side for which ``backbone`` (randomly initialised, with
    ``options``) gives a latent map of at least one position; None when the trunk cannot be
    built or no side up to ``largest`` works."""
    try:
        trunk, _ = build_backbone(backbone, None, **dict(options))
    except (ValueError, TypeError, RuntimeError):
        return None
    trunk.eval()

    def works(side: int) -> bool:
        try:
            with torch.no_grad():
                output = trunk(torch.zeros(1, 3, side, side))
        except (RuntimeError, ValueError):
            return False
        return min(output.shape[-2:]) >= 1

    high = 1
    while not works(high):  # double up to a side that works (small forwards first)
        if high >= largest:
            return None
        high *= 2
    low = high // 2 + 1 if high > 1 else 1  # then bisect down to the smallest one
    while low < high:
        middle = (low + high) // 2
        if works(middle):
            high = middle
        else:
            low = middle + 1
    return low
