"""Atomic file writes: every file of a run directory is complete or absent, never truncated.

Each write goes to a temporary file in the target's directory, is flushed to disk, and is
then renamed onto the target with :func:`os.replace` (atomic on POSIX and Windows within one
file system). A write that fails leaves the previous file as it was and removes its
temporary file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write_bytes(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(file_object)`` on a temporary file, then rename it onto ``path``
    (creating ``path``'s directory if needed). Returns ``path``."""
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
    """Write ``text`` as UTF-8 atomically."""
    return atomic_write_bytes(path, lambda stream: stream.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, value: Any) -> Path:
    """Write JSON (indented by 2, keys in insertion order, a final newline) atomically."""
    return atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False) + "\n")
