"""Checkpoints: state dicts plus the resolved config and a format version, written atomically.

A checkpoint never pickles a module: it holds plain state dicts, tensors and JSON-like
values, and is loaded with ``torch.load(weights_only=True)``. It is written with
:func:`protoexplain.atomic_io.atomic_write_bytes`, so an interrupted write never leaves a
truncated checkpoint behind.
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from protoexplain.atomic_io import atomic_write_bytes

FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, not protoexplain's, of an unknown format or
    missing a field; the message is one line naming the file."""


_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def _unreadable(path: Path, error: Exception) -> CheckpointError:
    """One line saying why ``path`` is not a checkpoint protoexplain reads (PyTorch's own
    message, which suggests unpickling the file unsafely, is left out)."""
    found = _UNSUPPORTED_GLOBAL.search(str(error))
    if isinstance(error, pickle.UnpicklingError) and found:
        what = f" ({found.group(1)})"
        return CheckpointError(
            f"{path} is not a protoexplain checkpoint: it holds pickled Python objects{what}, "
            "and protoexplain only reads state dicts, tensors and plain values (it never "
            "unpickles code); a model saved by the original ProtoPNet code is read with "
            "'protoexplain import-protopnet'")
    return CheckpointError(f"{path} is not a checkpoint protoexplain can read (not a PyTorch "
                           f"file, or a truncated one: {type(error).__name__})")


def require_fields(payload: dict[str, Any], path: str | Path, names: Iterable[str], *,
                   within: str = "") -> None:
    """Raise a CheckpointError naming the first of ``names`` that ``payload`` lacks."""
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path}: {within or 'the checkpoint'} is not a "
                              "mapping")
    for name in names:
        if name not in payload:
            key = f"{within}.{name}" if within else name
            raise CheckpointError(f"checkpoint {path} has no '{key}': it was not written by "
                                  "this protoexplain's 'train', or is damaged")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Save ``state`` (state dicts, tensors, plain values) with the format version."""
    payload = {"format_version": FORMAT_VERSION, **state}
    return atomic_write_bytes(path, lambda stream: torch.save(payload, stream))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, checking its format version."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # e.g. a pickle protocol torch.load does not expect
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt files
        raise _unreadable(path, error) from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path} is not a protoexplain checkpoint (it has no "
                              "format_version)")
    version = payload["format_version"]
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {version!r}; "
                              f"this protoexplain reads version {FORMAT_VERSION}")
    return payload


def load_model_state(model: torch.nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """``model.load_state_dict(state)``; a state that does not fit the model (another shape
    or other parameters than the checkpoint's config describes) is a one-line
    CheckpointError."""
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as error:
        first = str(error).strip().splitlines()
        detail = " ".join(line.strip() for line in first[1:3]) if len(first) > 1 else first[0]
        raise CheckpointError(f"checkpoint {path} does not fit the model its config describes "
                              f"({detail[:300]})") from None
