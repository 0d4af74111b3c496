"""Keep freed tensor memory inside the process on Linux with glibc.

On the CPU, PyTorch takes every intermediate tensor from the C library's ``malloc``. glibc's
defaults hand large freed blocks back to the kernel: the top of the heap is trimmed once
more than ``M_TRIM_THRESHOLD`` is free there (128 KiB at start, at most 64 MiB as the dynamic
threshold grows), and the next tensor of that size is faulted back in, one zeroed page at a
time. Training and the learned masks allocate and free the same large batches at every step,
so the untuned demo spent 307 s in system time, in 96 million minor page faults
(docs/performance.md, "Keeping freed memory").

:func:`tune_malloc` raises three of glibc's ``mallopt(3)`` limits at the start of the
``protoexplain`` command, so freed memory stays in the process for reuse. PyTorch's CPU
tuning guide makes the same point by recommending an allocator that keeps memory (jemalloc,
tcmalloc); this keeps glibc and needs no extra library. What it buys and what it costs in
memory is measured side by side by ``research/malloc_tuning.py`` (see docs/performance.md).

It changes nothing:

- off Linux or off glibc (no ``mallopt``);
- when ``PROTOEXPLAIN_MALLOC_TUNING=0``;
- when the user set glibc's own variables (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``,
  ``MALLOC_MMAP_THRESHOLD_`` or ``GLIBC_TUNABLES``): theirs win.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

from protoexplain.config_schema import ConfigError

OPT_OUT_VARIABLE = "PROTOEXPLAIN_MALLOC_TUNING"
"""Set to ``0`` to leave glibc's defaults alone (``1``, or unset: tune)."""

USER_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_",
                  "GLIBC_TUNABLES")
"""glibc's own settings: when any is set, the user has chosen and we keep out."""

MIB = 1 << 20

# glibc's parameter numbers (malloc.h): M_TRIM_THRESHOLD -1, M_TOP_PAD -2, M_MMAP_THRESHOLD -3.
SETTINGS = {
    "trim_threshold": (-1, 1024 * MIB),
    "top_pad": (-2, 256 * MIB),
    "mmap_threshold": (-3, 32 * MIB),
}
"""``name: (mallopt parameter, bytes)``.

- ``trim_threshold`` 1 GiB: free memory at the heap's top is kept up to this much, instead
  of at most 64 MiB;
- ``top_pad`` 256 MiB: the heap grows in steps this much larger than asked, so a growing
  batch does not go back to the kernel at every step;
- ``mmap_threshold`` 32 MiB (glibc's largest): blocks below it come from the heap, whose
  memory is kept, rather than from their own mapping, which is returned on free.

Setting any of them also stops glibc's dynamic adjustment of the trim and mmap thresholds.
"""

log = logging.getLogger("protoexplain")


def _glibc() -> ctypes.CDLL | None:
    """The running C library when it is glibc on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    return libc


def tune_malloc(environ: dict[str, str] | None = None) -> dict[str, int]:
    """Apply :data:`SETTINGS` through ``mallopt`` unless opted out (see the module's
    docstring). Returns ``{name: bytes}`` of the settings glibc accepted ({} when nothing
    was changed). Raises :class:`ConfigError` when :data:`OPT_OUT_VARIABLE` is neither ``0``
    nor ``1``, rather than guessing what ``off`` or ``false`` meant."""
    environ = os.environ if environ is None else environ
    switch = environ.get(OPT_OUT_VARIABLE, "1")
    if switch not in ("0", "1"):
        raise ConfigError(f"environment variable {OPT_OUT_VARIABLE} must be 0 (leave glibc's "
                          f"defaults) or 1 (tune), got {switch!r}")
    if switch == "0":
        return {}
    if any(name in environ for name in USER_VARIABLES):
        log.debug("malloc tuning skipped: glibc's MALLOC_* / GLIBC_TUNABLES are set")
        return {}
    libc = _glibc()
    if libc is None:
        return {}
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    applied = {name: size for name, (parameter, size) in SETTINGS.items()
               if libc.mallopt(parameter, size) == 1}
    log.debug("malloc tuning: %s", applied)
    return applied
