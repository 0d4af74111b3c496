"""How many samples to explain at once: the largest batch whose peak memory fits the device.

The learned-mask engine's memory grows linearly with the batch: the model's weights and
workspace are fixed, and each sample adds its masks, its ``S`` (or ``2 S`` with the deletion
term) masked images and their activations. So two measured peaks, at batches ``b1 < b2``, give
the fixed part ``F`` and the part per sample ``P`` of ``peak(b) = F + P b``, and the batch
chosen is the largest ``b`` with ``F + P b <= headroom * budget``, rounded down to a multiple of
``multiple`` (tensor-core friendly on GPUs) once it reaches one, and capped at ``maximum``.

On CUDA the budget is what the process can still use (:func:`device_memory_budget`: the
device's free memory plus what PyTorch's caching allocator already holds), and a peak is
``torch.cuda.max_memory_allocated`` around one run (:func:`cuda_peak_bytes`). Other devices
have no such counters: give the budget and the measurement yourself (a test passes a fake
linear memory).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class BatchChoice:
    """The batch chosen and the memory model behind it (bytes)."""

    batch: int
    fixed_bytes: float
    bytes_per_sample: float
    budget_bytes: int
    probes: dict[int, int]

    def predicted_peak(self, batch: int) -> float:
        """``F + P * batch``: the peak the fitted model expects at ``batch``."""
        return self.fixed_bytes + self.bytes_per_sample * batch


def batch_size_for_memory(
    peak_bytes: Callable[[int], int],
    budget_bytes: int,
    *,
    probes: tuple[int, int] = (2, 4),
    headroom: float = 0.85,
    multiple: int = 8,
    maximum: int = 1024,
) -> BatchChoice:
    """The largest batch whose predicted peak memory stays within ``headroom * budget_bytes``.

    Args:
        peak_bytes: runs the work at a batch size and returns its peak memory in bytes.
        budget_bytes: the memory the work may use (e.g. :func:`device_memory_budget`).
        probes: the two batch sizes measured to fit ``peak(b) = F + P b``.
        headroom: share of the budget to fill (fragmentation, other allocations).
        multiple: round the batch down to a multiple of this once it is at least this.
        maximum: the largest batch returned.
    Raises:
        ValueError: when even one sample does not fit, or the arguments are invalid.
    """
    small, large = probes
    if not 1 <= small < large:
        raise ValueError(f"probes must be two batch sizes 1 <= b1 < b2, got {probes}")
    if not 0 < headroom <= 1:
        raise ValueError(f"headroom must lie in (0, 1], got {headroom}")
    if budget_bytes <= 0:
        raise ValueError(f"budget_bytes must be positive, got {budget_bytes}")
    measured = {small: int(peak_bytes(small)), large: int(peak_bytes(large))}
    per_sample = max((measured[large] - measured[small]) / (large - small), 1.0)
    fixed = measured[small] - per_sample * small
    usable = headroom * budget_bytes
    batch = int((usable - fixed) // per_sample)
    if batch < 1:
        raise ValueError(
            f"one sample needs about {(fixed + per_sample) / 2**20:.0f} MiB, more than "
            f"{headroom:.0%} of the {budget_bytes / 2**20:.0f} MiB budget"
        )
    batch = min(batch, maximum)
    if batch >= multiple:
        batch -= batch % multiple
    return BatchChoice(batch, fixed, per_sample, budget_bytes, measured)


def device_memory_budget(device: torch.device) -> int | None:
    """Bytes the process can still use on a CUDA ``device``: its free memory plus what
    PyTorch's caching allocator reserves (in use by live tensors or not; a peak measured by
    :func:`cuda_peak_bytes` counts the live ones). ``None`` on other devices."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device))


def cuda_peak_bytes(run: Callable[[], Any], device: torch.device) -> int:
    """Peak bytes allocated by PyTorch on a CUDA ``device`` while ``run()`` runs (live tensors
    from before included)."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    run()
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device))
