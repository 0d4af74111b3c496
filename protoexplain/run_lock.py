"""One writer per run directory: a lock file, and the clean-up of interrupted writes.

Every command that writes into a run directory holds its lock while it writes::

    from protoexplain.run_lock import run_lock

    with run_lock(run_dir, "protoexplain report"):
        ...  # write files into run_dir

The lock is the file ``RUN_DIR/run.lock``, created atomically (``O_CREAT | O_EXCL``), holding
the holder's process id, host, start time and command as JSON. A second writer is refused
with a :class:`RunLockError` that names the holder. A lock whose process is gone (same host,
no process of that id, or another process that took the id later) is stale: it is taken over
with a log line. A lock from another host cannot be checked; its message says how to remove
it. The lock is released when the ``with`` block ends, also on an error or Ctrl-C; a process
killed outright leaves a stale lock, which the next command takes over.

A process that already holds a directory's lock may take it again (nested ``with`` blocks
share it), so library functions can lock what the command line has locked already.

On taking the lock, the temporary files of atomic writes that an interrupted process left
behind (``.NAME.XXXXXXXX.tmp``, see :mod:`protoexplain.atomic_io`) are removed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger("protoexplain")

__all__ = ["LOCK_NAME", "RunDirError", "RunLockError", "remove_temporary_files", "run_lock"]

LOCK_NAME = "run.lock"
"""The lock file's name inside a run directory."""

TEMPORARY_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
"""The names :func:`protoexplain.atomic_io.atomic_write_bytes` gives its temporary files
(:func:`tempfile.mkstemp`: ``.NAME.`` + 8 random characters + ``.tmp``)."""

WRITTEN_FOLDERS = ("prototypes", "explanations", "report")
"""The folders inside a run directory that commands write into; temporary files are looked
for in the directory itself and in these (never elsewhere, in case ``--out`` names a folder
holding other things)."""

_HELD: dict[Path, int] = {}
"""The run directories this process holds (resolved path -> nesting depth)."""


class RunDirError(RuntimeError):
    """A run directory that cannot be used as asked: taken, not a run, or not resumable."""


class RunLockError(RunDirError):
    """The run directory is locked by another process."""


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from ``/proc``), to tell a
    process from a later one that reuses its id; None where ``/proc`` does not say."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()  # after "pid (command name) "
    return fields[19] if len(fields) > 19 else None


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    except OSError:
        return True
    return True


def _holder_description(holder: dict[str, Any]) -> str:
    command = holder.get("command")
    return (f"process {holder.get('pid')} on {holder.get('host')} since "
            f"{holder.get('started')}" + (f" ({command})" if command else ""))


def _is_stale(holder: dict[str, Any]) -> bool:
    """Whether the holder's process is gone: only decidable on the same host."""
    if holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if not _is_running(pid):
        return True
    recorded = holder.get("process_start")
    return recorded is not None and _process_start(pid) not in (None, recorded)


def _read_holder(path: Path) -> tuple[str, dict[str, Any] | None]:
    """The lock file's text and its parsed holder (None when unreadable or incomplete: a
    lock being written this instant), retried briefly."""
    text = ""
    for _ in range(20):
        try:
            text = path.read_text()
        except FileNotFoundError:
            return "", None
        try:
            holder = json.loads(text)
            if isinstance(holder, dict):
                return text, holder
        except json.JSONDecodeError:
            pass
        time.sleep(0.05)
    return text, None


def _take_over(path: Path, stale_text: str) -> None:
    """Remove a stale lock, unless another process replaced it meanwhile."""
    aside = path.with_name(f"{path.name}.stale.{os.getpid()}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return  # another process took it over first
    if aside.read_text() != stale_text:  # a fresh lock of another process: put it back
        try:
            os.link(aside, path)
        except OSError:
            pass
    aside.unlink(missing_ok=True)


def _create(path: Path, holder: dict[str, Any]) -> bool:
    """Create the lock file holding ``holder``; False when it exists."""
    try:
        handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(handle, "w") as stream:
        stream.write(json.dumps(holder) + "\n")
        stream.flush()
        os.fsync(stream.fileno())
    return True


def _acquire(run_dir: Path, command: str) -> Path:
    path = run_dir / LOCK_NAME
    holder = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "command": command,
              "process_start": _process_start(os.getpid())}
    for _ in range(10):
        if _create(path, holder):
            return path
        text, found = _read_holder(path)
        if found is None and not text:
            continue  # released meanwhile: try again
        if found is None:
            raise RunLockError(f"{run_dir} is locked ({path} is not a lock this protoexplain "
                               f"can read); if no protoexplain command is writing there, "
                               f"remove {path}")
        if not _is_stale(found):
            where = ("" if found.get("host") == socket.gethostname() else
                     f"; if that process is gone, remove {path}")
            raise RunLockError(f"{run_dir} is in use by {_holder_description(found)}: one "
                               "process writes a run directory at a time; wait for it to "
                               f"finish or choose another directory{where}")
        log.warning("taking over the stale lock of %s in %s (that process is gone)",
                    _holder_description(found), run_dir)
        _take_over(path, text)
    raise RunLockError(f"could not lock {run_dir}: {path} keeps changing; is another "
                       "protoexplain command starting there?")


def _release(path: Path) -> None:
    """Remove the lock file if it is still this process's."""
    _, found = _read_holder(path)
    if found is not None and found.get("pid") == os.getpid() \
            and found.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


def remove_temporary_files(run_dir: str | Path) -> list[Path]:
    """Delete the temporary files of interrupted atomic writes under ``run_dir`` (only call
    it while holding the directory's lock); returns what was removed."""
    run_dir = Path(run_dir)
    removed: list[Path] = []
    if not run_dir.is_dir():
        return removed
    candidates = list(run_dir.glob(".*.tmp"))
    for folder in WRITTEN_FOLDERS:
        if (run_dir / folder).is_dir():
            candidates += (run_dir / folder).rglob(".*.tmp")
    for path in sorted(candidates):
        if TEMPORARY_FILE.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.info("removed %d temporary file(s) of interrupted writes in %s: %s", len(removed),
                 run_dir, ", ".join(str(p.relative_to(run_dir)) for p in removed))
    return removed


def command_line() -> str:
    """This process's command, as the lock records it."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return " ".join([name, *sys.argv[1:]])


@contextmanager
def run_lock(run_dir: str | Path, command: str | None = None, *,
             create: bool = True) -> Iterator[Path]:
    """Hold ``run_dir``'s lock for the ``with`` block (see the module docstring).

    ``command`` is recorded for the message another writer gets (default: this process's
    command line). ``create`` makes the directory when it does not exist; otherwise a
    missing directory is a :class:`RunDirError`. Yields the directory. Raises
    :class:`RunLockError` when another live process holds the lock.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        if not create:
            raise RunDirError(f"{run_dir} is not a directory")
        run_dir.mkdir(parents=True, exist_ok=True)
    key = run_dir.resolve()
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield run_dir
        finally:
            _HELD[key] -= 1
        return
    path = _acquire(run_dir, command or command_line())
    _HELD[key] = 1
    try:
        remove_temporary_files(run_dir)
        yield run_dir
    finally:
        del _HELD[key]
        _release(path)
