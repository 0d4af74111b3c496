"""``protoexplain import-protopnet``: a model trained by the original ProtoPNet code, as a run
directory of ours.

The checkpoint is read without the original's code (:mod:`protoexplain.original_checkpoint`)
and converted to :class:`prototypes.ProtoPNet`:

- the trunk's parameters are renamed to torchvision's layout (the original's VGG and DenseNet
  trunks hold torchvision's ``features`` one level deeper; its ResNet trunk has the same
  names), and the architecture is read from the parameters themselves: VGG's configuration
  from the positions and widths of its convolutions, ResNet's block type and blocks per stage,
  DenseNet's growth rate, bottleneck size, initial width and layers per block. A standard
  layout gets its name (``vgg16``, ``resnet34``, ``densenet121``, ...); any other keeps the
  nearest name plus the layout as ``model.backbone_options``. ``--arch`` overrides the name;
- add-on layers (``regular`` for one pair of 1x1 convolutions, ``bottleneck`` for more),
  prototypes (P, D, 1, 1), the last layer and the class identity are copied; a pickled
  model's class identity is used as saved (a pruned model's included), a state dict's is
  the original's default (P / K consecutive prototypes per class) when K divides P, else each
  prototype's strongest last-layer class;
- the activation (``log``/``linear``) and image size come from a pickled model; for a state
  dict from ``--activation`` (default ``log``, the original's) and ``--image-size`` (224);
- the original normalises images outside the model with ImageNet's mean and std
  (``preprocess.py``); the imported model stores them and normalises inside;
- the receptive field the checkpoint records (``proto_layer_rf_info``) is compared with the
  one our model traces, and both are written to ``imported.json``.

The projection: with ``--push-set DIR`` (or ``--push`` and a data set given with
``--set data.…``) the nearest training patch of each prototype's class is searched as push does
and recorded in ``projection.json``. The prototype vectors are *not* changed, so the imported
model's outputs stay the original's; ``--project`` replaces them by those patches, as a push
(for a checkpoint saved before its push). With ``--boxes FILE`` as well, the source images are
the ones the original's push saved (``bb-receptive_field<epoch>.npy`` or ``bb<epoch>.npy``:
per prototype the image's index in the push set, a box, and the image's class), and only the
latent position is searched, within that image; the push set must list its images in the
original's order (torchvision's ``ImageFolder``: classes, then files, sorted), which the saved
classes check. Otherwise the run records that its prototypes are unprojected
(``imported.json``: ``"projected": false``; no records).
"""

from __future__ import annotations

import copy
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protoexplain.atomic_io import atomic_write_json
from protoexplain.checkpoint import CHECKPOINT_NAME, save_checkpoint
from protoexplain.config import Config, ConfigError, load_config, save_config
from protoexplain.config_schema import to_dict
from protoexplain.original_checkpoint import (
    OriginalCheckpoint,
    OriginalCheckpointError,
    read_original_checkpoint,
)
from prototypes import BACKBONES, ProjectionRecord, ProtoPNet, resize_prototypes
from prototypes.backbones import _OLD_DENSENET_KEY
from prototypes.model import IMAGENET_MEAN, IMAGENET_STD
from prototypes.receptive_field import receptive_field_boxes

log = logging.getLogger("protoexplain")

__all__ = ["ImportedModel", "convert_original", "import_protopnet", "records_from_boxes"]

IMPORT_RECORD = "imported.json"
"""What an imported run records about its source (architecture found, receptive fields,
whether the prototypes are projected)."""

_VGG_CFGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}
_RESNET_LAYERS = {
    "resnet18": ("BasicBlock", [2, 2, 2, 2]), "resnet34": ("BasicBlock", [3, 4, 6, 3]),
    "resnet50": ("Bottleneck", [3, 4, 6, 3]), "resnet101": ("Bottleneck", [3, 4, 23, 3]),
    "resnet152": ("Bottleneck", [3, 8, 36, 3]),
}
_DENSENET_LAYOUTS = {
    "densenet121": {"growth_rate": 32, "block_config": [6, 12, 24, 16],
                    "num_init_features": 64, "bn_size": 4},
    "densenet161": {"growth_rate": 48, "block_config": [6, 12, 36, 24],
                    "num_init_features": 96, "bn_size": 4},
    "densenet169": {"growth_rate": 32, "block_config": [6, 12, 32, 32],
                    "num_init_features": 64, "bn_size": 4},
    "densenet201": {"growth_rate": 32, "block_config": [6, 12, 48, 32],
                    "num_init_features": 64, "bn_size": 4},
}
_TRUNK_CLASSES = {"VGG_features": "vgg", "ResNet_features": "resnet",
                  "DenseNet_features": "densenet"}


@dataclass
class ImportedModel:
    """A converted model and what the conversion found."""

    model: ProtoPNet
    backbone: str
    backbone_options: dict[str, Any]
    add_on: str
    prototypes_per_class: int
    activation: str
    image_size: int
    info: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------- trunk


def _family_of(trunk: dict[str, torch.Tensor]) -> str:
    if "conv0.weight" in trunk:
        return "densenet"
    if "conv1.weight" in trunk and any(k.startswith("layer1.") for k in trunk):
        return "resnet"
    if any(re.match(r"^\d+\.weight$", k) for k in trunk):
        return "vgg"
    raise OriginalCheckpointError("cannot tell the trunk's architecture from its parameters "
                                  f"(first keys: {sorted(trunk)[:5]}); known: VGG, ResNet, "
                                  "DenseNet")


def _trunk_state(checkpoint: OriginalCheckpoint) -> tuple[str, dict[str, torch.Tensor]]:
    """The trunk's family and its parameters in torchvision's names (no ``features.``)."""
    raw = {k[len("features."):]: v for k, v in checkpoint.state_dict.items()
           if k.startswith("features.")}
    if not raw:
        raise OriginalCheckpointError("the checkpoint has no trunk parameters ('features.*')")
    nested = all(k.startswith("features.") for k in raw)
    trunk = {k[len("features."):]: v for k, v in raw.items()} if nested else raw
    trunk = {_OLD_DENSENET_KEY.sub(r"\1\2", k): v for k, v in trunk.items()}
    family = _family_of(trunk)
    if checkpoint.trunk_class is not None and _TRUNK_CLASSES[checkpoint.trunk_class] != family:
        raise OriginalCheckpointError(f"the trunk is a {checkpoint.trunk_class} but its "
                                      f"parameters look like a {family}")
    if (family == "resnet") == nested:
        raise OriginalCheckpointError(f"unexpected parameter names for a {family} trunk "
                                      f"(first keys: {sorted(raw)[:3]})")
    return family, trunk


def _vgg_layout(trunk: dict[str, torch.Tensor], layers: list[str] | None,
                notes: list[str]) -> tuple[list, bool]:
    convs = sorted(int(k.split(".")[0]) for k, v in trunk.items()
                   if k.endswith(".weight") and v.ndim == 4)
    batch_norm = any(k.endswith(".running_mean") for k in trunk)
    if layers is not None:  # the pickled module list says exactly where the pools are
        cfg: list = []
        for index, kind in enumerate(layers):
            if kind == "conv":
                cfg.append(int(trunk[f"{index}.weight"].shape[0]))
            elif kind == "pool":
                cfg.append("M")
            elif kind not in ("bn", "relu"):
                raise OriginalCheckpointError(f"unexpected layer {kind} in the VGG trunk")
        return cfg, batch_norm
    slot = 3 if batch_norm else 2  # conv, [bn], relu
    cfg, expected = [], 0
    for index in convs:
        pools = index - expected
        if pools < 0:
            raise OriginalCheckpointError("the VGG trunk's convolutions are closer than a "
                                          "conv/[bn]/relu triple apart")
        cfg += ["M"] * pools + [int(trunk[f"{index}.weight"].shape[0])]
        expected = index + slot
    notes.append("a state dict does not show whether the VGG trunk ends in a max-pool; it is "
                 "taken to, as in every VGG configuration of the original")
    return cfg + ["M"], batch_norm


def _resnet_layout(trunk: dict[str, torch.Tensor], block_hint: str | None) -> tuple[str, list]:
    block = "Bottleneck" if "layer1.0.conv3.weight" in trunk else "BasicBlock"
    if block_hint is not None and block_hint != block:
        raise OriginalCheckpointError(f"the ResNet trunk says its blocks are {block_hint} but "
                                      f"its parameters are those of a {block}")
    if int(trunk["conv1.weight"].shape[0]) != 64:
        raise OriginalCheckpointError("the ResNet trunk's first convolution does not have 64 "
                                      "channels; only the standard widths can be imported")
    layers = []
    for stage in range(1, 5):
        blocks = {int(k.split(".")[1]) for k in trunk if k.startswith(f"layer{stage}.")}
        if not blocks:
            raise OriginalCheckpointError(f"the ResNet trunk has no layer{stage}")
        layers.append(max(blocks) + 1)
    return block, layers


def _densenet_layout(trunk: dict[str, torch.Tensor]) -> dict[str, Any]:
    growth = int(trunk["denseblock1.denselayer1.conv2.weight"].shape[0])
    blocks = []
    number = 1
    while any(k.startswith(f"denseblock{number}.") for k in trunk):
        blocks.append(len({k.split(".")[1] for k in trunk
                           if k.startswith(f"denseblock{number}.")}))
        number += 1
    return {"growth_rate": growth, "block_config": blocks,
            "num_init_features": int(trunk["conv0.weight"].shape[0]),
            "bn_size": int(trunk["denseblock1.denselayer1.conv1.weight"].shape[0]) // growth}


def _backbone(family: str, trunk: dict[str, torch.Tensor], checkpoint: OriginalCheckpoint,
              arch: str | None, notes: list[str]) -> tuple[str, dict[str, Any]]:
    """(backbone name, layout options) of the trunk; options only for a non-standard layout."""
    if family == "vgg":
        cfg, batch_norm = _vgg_layout(trunk, checkpoint.trunk_layers, notes)
        suffix = "_bn" if batch_norm else ""
        standard = [name for name, layout in _VGG_CFGS.items() if layout == cfg]
        depth = sum(1 for v in cfg if v != "M") + 3
        name = (standard[0] if standard else
                f"vgg{depth}" if f"vgg{depth}" in _VGG_CFGS else "vgg11") + suffix
        if arch is not None:
            name = arch
        options = {} if _VGG_CFGS.get(name.removesuffix("_bn")) == cfg else {"cfg": cfg}
        if arch is not None and arch.endswith("_bn") != batch_norm:
            raise OriginalCheckpointError(f"--arch {arch} does not match the trunk, which "
                                          f"{'has' if batch_norm else 'has no'} batch norm")
    elif family == "resnet":
        block, layers = _resnet_layout(trunk, checkpoint.resnet_block)
        standard = [n for n, (b, ls) in _RESNET_LAYERS.items() if (b, ls) == (block, layers)]
        name = arch or (standard[0] if standard else
                        "resnet18" if block == "BasicBlock" else "resnet50")
        if arch is not None and _RESNET_LAYERS.get(arch, (block,))[0] != block:
            raise OriginalCheckpointError(f"--arch {arch} does not match the trunk's "
                                          f"{block} blocks")
        options = {} if _RESNET_LAYERS.get(name) == (block, layers) else {"layers": layers}
    else:
        layout = _densenet_layout(trunk)
        standard = [n for n, values in _DENSENET_LAYOUTS.items() if values == layout]
        name = arch or (standard[0] if standard else "densenet121")
        options = {} if _DENSENET_LAYOUTS.get(name) == layout else layout
    if name not in BACKBONES or not name.startswith(family):
        known = ", ".join(b for b in BACKBONES if b.startswith(family))
        raise OriginalCheckpointError(f"--arch {name!r} is not a {family} backbone; choose one "
                                      f"of {known}")
    return name, options


# -------------------------------------------------------------------------------- convert


def _class_identity(checkpoint: OriginalCheckpoint, count: int, classes: int,
                    weight: torch.Tensor) -> tuple[torch.Tensor, str]:
    if checkpoint.class_identity is not None:
        identity = checkpoint.class_identity
        if tuple(identity.shape) != (count, classes):
            raise OriginalCheckpointError(f"the class identity is {tuple(identity.shape)}, "
                                          f"expected ({count}, {classes})")
        return identity, "saved with the model"
    if count % classes == 0:
        identity = torch.zeros(count, classes)
        identity[torch.arange(count), torch.arange(count) // (count // classes)] = 1
        return identity, "the original's default (consecutive prototypes per class)"
    identity = torch.zeros(count, classes)
    identity[torch.arange(count), weight.argmax(dim=0)] = 1
    return identity, "each prototype's largest last-layer weight (the state dict has none)"


def convert_original(checkpoint: OriginalCheckpoint, *, arch: str | None = None,
                     image_size: int | None = None,
                     activation: str | None = None) -> ImportedModel:
    """Our :class:`~prototypes.ProtoPNet` with the original checkpoint's weights.

    ``arch``, ``image_size`` and ``activation`` override what the checkpoint says (a state
    dict says nothing about the last two: 224 and ``log`` then).
    """
    notes: list[str] = list(checkpoint.notes)
    state = checkpoint.state_dict
    family, trunk = _trunk_state(checkpoint)
    name, options = _backbone(family, trunk, checkpoint, arch, notes)
    vectors = state["prototype_vectors"]
    weight = state["last_layer.weight"]
    if vectors.ndim != 4 or tuple(vectors.shape[2:]) != (1, 1):
        raise OriginalCheckpointError(f"prototype shape {tuple(vectors.shape)}: only 1x1 "
                                      "prototypes (P, D, 1, 1) can be imported")
    count, dim = int(vectors.shape[0]), int(vectors.shape[1])
    classes = int(weight.shape[0])
    if weight.shape[1] != count:
        raise OriginalCheckpointError(f"the last layer takes {weight.shape[1]} inputs for "
                                      f"{count} prototypes")
    if checkpoint.activation is not None and activation not in (None, checkpoint.activation):
        raise OriginalCheckpointError(f"the checkpoint's activation is "
                                      f"{checkpoint.activation!r}, not {activation!r}")
    activation = checkpoint.activation or activation or "log"
    if activation not in ("log", "linear"):
        raise OriginalCheckpointError(f"activation {activation!r}: only 'log' and 'linear' can "
                                      "be imported")
    if checkpoint.epsilon is not None and abs(checkpoint.epsilon - 1e-4) > 1e-12:
        raise OriginalCheckpointError(f"the checkpoint's epsilon is {checkpoint.epsilon}; only "
                                      "the original's 1e-4 can be imported")
    size = int(image_size or checkpoint.image_size or 224)
    add_on_convs = sum(1 for k, v in state.items()
                       if k.startswith("add_on_layers.") and k.endswith(".weight") and v.ndim == 4)
    add_on = "regular" if add_on_convs == 2 else "bottleneck"
    identity, identity_source = _class_identity(checkpoint, count, classes, weight)
    uniform = count % classes == 0
    model = ProtoPNet(name, classes, prototypes_per_class=count // classes if uniform else 1,
                      prototype_dim=dim, add_on=add_on, activation=activation,
                      image_size=size, backbone_options=options,
                      mean=IMAGENET_MEAN, std=IMAGENET_STD)
    if tuple(model.prototype_class_identity.shape) != tuple(identity.shape):
        resize_prototypes(model, identity)
    ours = {f"features.{k}": v for k, v in trunk.items()}
    ours.update({k: v for k, v in state.items() if k.startswith("add_on_layers.")})
    ours.update({"prototype_vectors": vectors, "last_layer.weight": weight,
                 "prototype_class_identity": identity.float(),
                 "mean": model.mean, "std": model.std})
    try:
        model.load_state_dict(ours)
    except RuntimeError as error:
        raise OriginalCheckpointError(f"the checkpoint does not fit a {name} ProtoPNet "
                                      f"{options or ''}: {error}") from None
    model.eval()
    field_ = model.receptive_field
    ours_rf = [int(model.latent_size[0]), field_.jump, field_.size, field_.start]
    saved_rf = checkpoint.receptive_field_info
    info = {"source_kind": checkpoint.kind, "backbone": name, "backbone_options": options,
            "add_on": add_on, "activation": activation, "image_size": size,
            "num_prototypes": count, "num_classes": classes,
            "class_identity": identity_source,
            "receptive_field": {"ours": ours_rf, "checkpoint": saved_rf,
                                "match": (None if saved_rf is None else
                                          all(abs(a - b) < 1e-6
                                              for a, b in zip(ours_rf, saved_rf, strict=True)))},
            "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "notes": notes}
    if saved_rf is not None and not info["receptive_field"]["match"]:
        log.warning("the checkpoint's receptive field %s differs from the traced one %s",
                    saved_rf, ours_rf)
    return ImportedModel(model=model, backbone=name, backbone_options=options, add_on=add_on,
                         prototypes_per_class=count // classes if uniform else 1,
                         activation=activation, image_size=size, info=info)


# ------------------------------------------------------------------------------ run dir


def records_from_boxes(model: ProtoPNet, dataset, boxes: np.ndarray, *, batch_size: int,
                       device: torch.device) -> tuple[list[ProjectionRecord], dict[str, Any]]:
    """Projection records whose source images are those of the original's saved boxes
    (column 0: image index in the push set; column 5, when present: its class); in each image
    the prototype's nearest latent position is found. Also returns how many saved boxes our
    receptive-field boxes reproduce (meaningful for ``bb-receptive_field*.npy``)."""
    boxes = np.asarray(boxes)
    count = model.num_prototypes
    if boxes.ndim != 2 or boxes.shape[0] != count or boxes.shape[1] < 5:
        raise ConfigError(f"the boxes file holds an array of shape {boxes.shape}; expected "
                          f"({count}, 5 or 6) as the original's push saves")
    samples = [int(v) for v in boxes[:, 0]]
    if min(samples) < 0 or max(samples) >= len(dataset):
        raise ConfigError(f"the boxes name images up to index {max(samples)}, but the push set "
                          f"has {len(dataset)}")
    if boxes.shape[1] > 5:
        wrong = [j for j, s in enumerate(samples)
                 if int(boxes[j, 5]) >= 0 and int(dataset[s]["label"]) != int(boxes[j, 5])]
        if wrong:
            raise ConfigError(f"the push set's image {samples[wrong[0]]} is not of class "
                              f"{int(boxes[wrong[0], 5])} as the boxes say ({len(wrong)} such): "
                              "it lists its images in another order than the original's "
                              "push set")
    model = model.to(device).eval()
    order = torch.arange(count)
    distance = torch.empty(count)
    position = torch.empty(count, dtype=torch.long)
    width = int(model.latent_size[1])
    with torch.no_grad():
        for start in range(0, count, batch_size):
            chunk = order[start:start + batch_size]
            images = torch.stack([dataset[samples[j]]["image"] for j in chunk.tolist()])
            maps = model.distances(model.latent(images.to(device)))  # (B, P, h, w)
            own = maps[torch.arange(len(chunk)), chunk.to(device)].flatten(1)  # (B, h*w)
            best, where = own.min(dim=1)
            distance[chunk], position[chunk] = best.cpu(), where.cpu()
        similarity = model.similarity(distance)
    size = tuple(dataset[samples[0]]["image"].shape[-2:])
    rows, columns = position // width, position % width
    fields = receptive_field_boxes(model.receptive_field, rows, columns, size)
    classes = model.prototype_classes.cpu().tolist()
    records = [ProjectionRecord(prototype=j, class_index=classes[j], sample_index=samples[j],
                                latent_position=(int(rows[j]), int(columns[j])),
                                distance=float(distance[j]), similarity=float(similarity[j]),
                                receptive_field_box=tuple(int(v) for v in fields[j]))
               for j in range(count)]
    same = int((fields.numpy() == boxes[:, 1:5]).all(axis=1).sum())
    return records, {"boxes_reproduced": same}


def _run_config(imported: ImportedModel, push_set: Path | None,
                overrides: list[str]) -> Config:
    base = [f"model.backbone={imported.backbone}",
            f"model.backbone_options={json.dumps(imported.backbone_options)}",
            f"model.prototypes_per_class={imported.prototypes_per_class}",
            f"model.prototype_dim={imported.model.prototype_dim}",
            f"model.add_on={imported.add_on}", f"model.activation={imported.activation}",
            "data.dataset=ImageFolder",
            f"data.root={json.dumps(str(push_set)) if push_set else 'null'}",
            f"data.options={json.dumps({'image_size': imported.image_size})}"]
    return load_config(None, base + list(overrides))


def import_protopnet(checkpoint_path: str | Path, out: str | Path, *, arch: str | None = None,
                     image_size: int | None = None, activation: str | None = None,
                     push_set: str | Path | None = None, push_now: bool = False,
                     project: bool = False, boxes: str | Path | None = None,
                     overrides: list[str] | tuple = (),
                     progress: bool = True) -> dict[str, Any]:
    """Convert ``checkpoint_path`` and write the run directory ``out`` (see the module
    docstring). Returns what ``imported.json`` holds."""
    from protoexplain.factory import build_dataset, make_loader, resolve_device
    from protoexplain.pipeline import write_projection
    from protoexplain.run_dir import load_run
    from protoexplain.run_lock import run_lock
    from prototypes import push

    out = Path(out)
    if (out / CHECKPOINT_NAME).exists():
        raise ConfigError(f"{out} already holds a run; choose another --out")
    imported = convert_original(read_original_checkpoint(checkpoint_path), arch=arch,
                                image_size=image_size, activation=activation)
    push_set = Path(push_set) if push_set is not None else None
    config = _run_config(imported, push_set, list(overrides))
    info = {"source": str(checkpoint_path), **imported.info, "projected": False,
            "prototypes_replaced": False}
    records: list[dict[str, Any]] = []
    model = imported.model
    out.mkdir(parents=True, exist_ok=True)
    if boxes is not None and project:
        raise ConfigError("--project searches the push set for new prototypes; --boxes keeps "
                          "them and takes their images from the file: choose one")
    if boxes is not None and push_set is None and not push_now:
        raise ConfigError("--boxes names images of the push set: give it with --push-set DIR "
                          "(or --push and --set data.*)")
    with run_lock(out, "protoexplain import-protopnet"):
        if boxes is not None:
            dataset = build_dataset(config, "train", augment=False)
            found, agreement = records_from_boxes(
                model, dataset, np.load(boxes, allow_pickle=False),
                batch_size=config.data.eval_batch_size, device=resolve_device(config.device))
            model = model.cpu()
            records = [record.to_dict() for record in found]
            distances = [record.distance for record in found]
            info.update(projected=True, projection_source=str(boxes), **agreement,
                        projection_max_distance=max(distances),
                        projection_mean_distance=sum(distances) / len(distances))
        elif push_set is not None or push_now:
            dataset = build_dataset(config, "train", augment=False)
            if getattr(dataset, "num_classes", model.num_classes) != model.num_classes:
                raise ConfigError(f"the push set has {dataset.num_classes} classes, the model "
                                  f"{model.num_classes}")
            device = resolve_device(config.device)
            target = model if project else copy.deepcopy(model)
            found = push(target.to(device), make_loader(dataset, config.data.eval_batch_size,
                                                        config), progress=progress)
            model = target.cpu() if project else model
            records = [record.to_dict() for record in found]
            distances = [record.distance for record in found]
            info.update(projected=True, prototypes_replaced=project,
                        projection_max_distance=max(distances),
                        projection_mean_distance=sum(distances) / len(distances))
        save_config(config, out / "config.yaml")
        save_checkpoint(out / CHECKPOINT_NAME, {
            "config": to_dict(config), "image_size": imported.image_size,
            "model": model.state_dict(), "records": records, "selected_stage": None,
            "imported": info})
        atomic_write_json(out / IMPORT_RECORD, info)
        atomic_write_json(out / "metrics.json", {"num_prototypes": model.num_prototypes,
                                                 "imported": True,
                                                 "projected": info["projected"]})
        if records:
            write_projection(load_run(out), progress=progress)
    return info
