"""Reading checkpoints saved by the original ProtoPNet code, without that code and without
running anything the file asks for.

The original (cfchen-duke/ProtoPNet) saves whole pickled models: ``torch.save(obj=ppnet)`` of
its ``model.PPNet``, whose ``features`` come from its modules ``vgg_features``
(``VGG_features``), ``resnet_features`` (``ResNet_features``, ``BasicBlock``, ``Bottleneck``)
and ``densenet_features`` (``DenseNet_features``, ``_DenseBlock``, ``_DenseLayer``,
``_Transition``). Unpickling such a file normally imports those modules and lets the file
call whatever it names. Here :class:`RestrictedUnpickler` resolves a name only when it is

- one of those classes, or one of the ``torch.nn`` layer classes a PPNet is built from:
  each becomes a :class:`PickledObject` that only keeps its pickled attributes;
- one of torch's own tensor, storage and dtype helpers that ``torch.load(weights_only=True)``
  trusts (``collections.OrderedDict`` among them);
- ``torch.nn.backends.thnn._get_thnn_function_backend``, which old torch versions pickled
  into every module and which returns nothing.

Anything else is refused with an :class:`OriginalCheckpointError` that names it. No
constructor, ``__setstate__`` or ``__reduce__`` of a pickled class ever runs, so a file can
only produce plain attributes, tensors and containers. A plain state dict
(``ppnet.state_dict()``) is read the same way.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import types
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from protoexplain.checkpoint import CheckpointError

__all__ = ["ORIGINAL_CLASSES", "TORCH_LAYER_CLASSES", "OriginalCheckpoint",
           "OriginalCheckpointError", "PickledObject", "RestrictedUnpickler",
           "read_original_checkpoint"]

ORIGINAL_CLASSES = (
    "model.PPNet",
    "vgg_features.VGG_features",
    "resnet_features.ResNet_features",
    "resnet_features.BasicBlock",
    "resnet_features.Bottleneck",
    "densenet_features.DenseNet_features",
    "densenet_features._DenseBlock",
    "densenet_features._DenseLayer",
    "densenet_features._Transition",
)
"""The original's classes a saved PPNet holds (``module.ClassName``)."""

TORCH_LAYER_CLASSES = tuple(
    f"torch.nn.modules.{name}" for name in (
        "conv.Conv2d", "batchnorm.BatchNorm2d", "activation.ReLU", "activation.Sigmoid",
        "pooling.MaxPool2d", "pooling.AvgPool2d", "container.Sequential", "linear.Linear",
        "dropout.Dropout", "linear.Identity")
) + ("torch.nn.parallel.data_parallel.DataParallel",)
"""The ``torch.nn`` module classes a saved PPNet is made of (DataParallel when the wrapped
model was saved)."""


class OriginalCheckpointError(CheckpointError):
    """A file that is not a checkpoint of the original ProtoPNet, or holds something this
    reader refuses to load."""


class PickledObject:
    """An instance of an allowed class, reduced to its pickled attributes.

    ``qualified_name`` (``module.ClassName``) says which class it was; ``state`` holds what
    the pickle stored (a module's ``__dict__``: ``_parameters``, ``_buffers``, ``_modules``
    and its plain attributes).
    """

    qualified_name = ""
    dump_patches = False  # read by torch's loader of the pre-1.6 file format

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (__dict__, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        self.state = dict(state) if isinstance(state, Mapping) else {"value": state}

    def __repr__(self) -> str:
        return f"<pickled {self.qualified_name}>"

    @property
    def class_name(self) -> str:
        return self.qualified_name.rsplit(".", 1)[-1]

    def get(self, name: str, default: Any = None) -> Any:
        return self.state.get(name, default)

    def children(self) -> dict[str, Any]:
        """The pickled module's sub-modules by name (``_modules``)."""
        return dict(self.state.get("_modules") or {})

    def module_state_dict(self, prefix: str = "") -> OrderedDict[str, torch.Tensor]:
        """What ``state_dict()`` would give for the pickled module: parameters and
        persistent buffers of it and its sub-modules, by dotted name."""
        result: OrderedDict[str, torch.Tensor] = OrderedDict()
        skipped = set(self.state.get("_non_persistent_buffers_set") or ())
        for name, value in (self.state.get("_parameters") or {}).items():
            if value is not None:
                result[prefix + name] = value.detach()
        for name, value in (self.state.get("_buffers") or {}).items():
            if value is not None and name not in skipped:
                result[prefix + name] = value
        for name, child in self.children().items():
            if isinstance(child, PickledObject):
                result.update(child.module_state_dict(f"{prefix}{name}."))
        return result


_STUBS: dict[str, type[PickledObject]] = {
    name: type(name.rsplit(".", 1)[-1], (PickledObject,), {"qualified_name": name})
    for name in ORIGINAL_CLASSES + TORCH_LAYER_CLASSES
}


def _no_backend() -> None:
    """Stand-in for old torch's pickled ``_get_thnn_function_backend``."""
    return None


def _reconstructor(cls: type, base: type, state: Any) -> PickledObject:
    """``copyreg._reconstructor`` (pickle protocols 0 and 1), for allowed classes only."""
    if not (isinstance(cls, type) and issubclass(cls, PickledObject)):
        raise OriginalCheckpointError(f"the checkpoint reconstructs {cls!r}, which is not an "
                                      "allowed class")
    return cls()


def _torch_safe_globals() -> dict[str, Any]:
    """torch's own allow-list of ``weights_only`` loading (tensors, storages, dtypes,
    ``OrderedDict``); a minimal list where torch does not expose it."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        return dict(_get_allowed_globals())
    except (ImportError, AttributeError):  # pragma: no cover - older or newer torch
        import torch._utils

        return {"collections.OrderedDict": OrderedDict,
                "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
                "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
                "torch.Size": torch.Size}


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle reader whose ``find_class`` resolves only the allowed names (see the module
    docstring) and refuses every other one, naming it."""

    _allowed: dict[str, Any] | None = None

    @classmethod
    def allowed(cls) -> dict[str, Any]:
        if cls._allowed is None:
            allowed = _torch_safe_globals()
            allowed.update(_STUBS)
            allowed["torch.nn.backends.thnn._get_thnn_function_backend"] = _no_backend
            allowed["copyreg._reconstructor"] = _reconstructor
            cls._allowed = allowed
        return cls._allowed

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names, which protocols 0-2 (torch's default is 2) write: __builtin__.set
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        qualified = f"{module}.{name}"
        found = self.allowed().get(qualified)
        if found is None:
            raise OriginalCheckpointError(
                f"the checkpoint refers to {qualified}, which is neither a class of the original "
                "ProtoPNet code nor one of torch's; it is not loaded (nothing in the file was "
                "run)")
        return found


def _restricted_pickle_module() -> types.ModuleType:
    module = types.ModuleType("restricted_pickle")
    module.Unpickler = RestrictedUnpickler
    module.load = lambda file, **kwargs: RestrictedUnpickler(file, **kwargs).load()
    module.loads = lambda data, **kwargs: RestrictedUnpickler(io.BytesIO(data), **kwargs).load()
    module.__name__ = "restricted_pickle"
    return module


@dataclass
class OriginalCheckpoint:
    """What a checkpoint of the original holds, as plain values.

    ``state_dict``: parameter name -> tensor, in the original's names (``features.…``,
    ``add_on_layers.…``, ``prototype_vectors``, ``last_layer.weight``; ``ones`` dropped);
    ``kind``: ``"model"`` (a pickled PPNet) or ``"state_dict"``. The other fields are only
    known for pickled models (``None`` for state dicts): ``trunk_class`` (``VGG_features``,
    ``ResNet_features`` or ``DenseNet_features``), ``trunk_layers`` (the trunk's layer kinds
    in order for VGG: ``conv``/``bn``/``relu``/``pool``), ``class_identity`` (P, K),
    ``activation``, ``epsilon``, ``image_size``, ``num_classes``, ``receptive_field_info``
    (the original's ``proto_layer_rf_info``: latent size, jump, field size, start).
    """

    state_dict: dict[str, torch.Tensor]
    kind: str
    trunk_class: str | None = None
    trunk_layers: list[str] | None = None
    resnet_block: str | None = None
    class_identity: torch.Tensor | None = None
    activation: str | None = None
    epsilon: float | None = None
    image_size: int | None = None
    num_classes: int | None = None
    receptive_field_info: list[float] | None = None
    notes: list[str] = field(default_factory=list)


_LAYER_KINDS = {"Conv2d": "conv", "BatchNorm2d": "bn", "ReLU": "relu", "MaxPool2d": "pool",
                "AvgPool2d": "avgpool", "Dropout": "dropout"}


def _strip_module_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """Keys of a DataParallel-wrapped model's state dict lose their ``module.`` prefix."""
    if state and all(key.startswith("module.") for key in state):
        return {key[len("module."):]: value for key, value in state.items()}
    return dict(state)


def _from_model(ppnet: PickledObject) -> OriginalCheckpoint:
    state = ppnet.module_state_dict()
    state.pop("ones", None)
    features = ppnet.children().get("features")
    if not isinstance(features, PickledObject):
        raise OriginalCheckpointError("the pickled PPNet has no 'features' module")
    trunk_layers = None
    block = None
    if features.class_name == "VGG_features":
        inner = features.children().get("features")
        trunk_layers = [_LAYER_KINDS.get(child.class_name, child.class_name)
                        for child in inner.children().values()] if inner else None
    elif features.class_name == "ResNet_features":
        block_class = features.get("block")
        block = getattr(block_class, "qualified_name", "").rsplit(".", 1)[-1] or None
    elif features.class_name != "DenseNet_features":
        raise OriginalCheckpointError(f"the PPNet's trunk is a {features.qualified_name}; "
                                      "known trunks: VGG_features, ResNet_features, "
                                      "DenseNet_features")
    activation = ppnet.get("prototype_activation_function")
    if not isinstance(activation, str):
        raise OriginalCheckpointError(
            f"the PPNet's prototype_activation_function is {activation!r}; only 'log' and "
            "'linear' can be imported")
    identity = ppnet.get("prototype_class_identity")
    image_size = ppnet.get("img_size")
    rf_info = ppnet.get("proto_layer_rf_info")
    return OriginalCheckpoint(
        state_dict=dict(state), kind="model", trunk_class=features.class_name,
        trunk_layers=trunk_layers, resnet_block=block,
        class_identity=identity.clone().float() if isinstance(identity, torch.Tensor) else None,
        activation=activation, epsilon=float(ppnet.get("epsilon", 1e-4)),
        image_size=int(image_size) if image_size is not None else None,
        num_classes=int(ppnet.get("num_classes")) if ppnet.get("num_classes") else None,
        receptive_field_info=[float(v) for v in rf_info] if rf_info is not None else None)


def read_original_checkpoint(path: str | Path) -> OriginalCheckpoint:
    """Read a pickled ``model.PPNet`` or a ``ppnet.state_dict()`` file of the original code.

    Raises:
        OriginalCheckpointError: the file names a class outside the allow-list (the message
            names it), or holds neither a PPNet nor a state dict of one.
        FileNotFoundError: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the pre-1.6 format warns about class sources
            loaded = torch.load(path, map_location="cpu", weights_only=False,
                                pickle_module=_restricted_pickle_module())
    except OriginalCheckpointError:
        raise
    except Exception as error:  # noqa: BLE001 - torch raises many types for foreign files
        cause = error
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__
            if isinstance(cause, OriginalCheckpointError):
                raise cause from None
        raise OriginalCheckpointError(f"{path} cannot be read as a torch checkpoint: "
                                      f"{error}") from error
    if isinstance(loaded, PickledObject) and loaded.class_name == "DataParallel":
        loaded = loaded.children().get("module")
    if isinstance(loaded, PickledObject):
        if loaded.qualified_name != "model.PPNet":
            raise OriginalCheckpointError(f"{path} holds a {loaded.qualified_name}, not the "
                                          "original's model.PPNet")
        return _from_model(loaded)
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(
            loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if isinstance(loaded, Mapping) and loaded and all(
            isinstance(v, torch.Tensor) for v in loaded.values()):
        state = _strip_module_prefix(loaded)
        state.pop("ones", None)
        if "prototype_vectors" not in state or "last_layer.weight" not in state:
            raise OriginalCheckpointError(f"{path} holds a state dict without "
                                          "'prototype_vectors' and 'last_layer.weight', so "
                                          "not one of the original's PPNet")
        return OriginalCheckpoint(state_dict=state, kind="state_dict")
    raise OriginalCheckpointError(f"{path} holds a {type(loaded).__name__}, neither the "
                                  "original's pickled PPNet nor its state dict")
