"""Checkpoints: state dicts plus the resolved config and a format version, written atomically.

A checkpoint never pickles a module: it holds plain state dicts, tensors and JSON-like
values, and is loaded with ``torch.load(weights_only=True)``. It is written with
:func:`protoexplain.atomic_io.atomic_write_bytes`, so an interrupted write never leaves a
truncated checkpoint behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from protoexplain.atomic_io import atomic_write_bytes

FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or of an unknown format."""


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
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt files
        raise CheckpointError(f"checkpoint {path} cannot be read: {error}") from error
    version = payload.get("format_version") if isinstance(payload, dict) else None
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {version!r}; "
                              f"this protoexplain reads version {FORMAT_VERSION}")
    return payload
