"""Checkpoints: state dicts plus the resolved config and a format version, written atomically.

A checkpoint never pickles a module: it holds plain state dicts, tensors and JSON-like
values, and is loaded with ``torch.load(weights_only=True)``. Writes go to a temporary file
in the same directory followed by :func:`os.replace`, so an interrupted write never leaves a
truncated checkpoint behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or of an unknown format."""


def atomic_write_bytes(path: str | Path, write: Any) -> Path:
    """Call ``write(file_object)`` on a temporary file, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically."""
    return atomic_write_bytes(path, lambda stream: stream.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, value: Any) -> Path:
    """Write JSON (indented, for people) atomically."""
    return atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False) + "\n")


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
