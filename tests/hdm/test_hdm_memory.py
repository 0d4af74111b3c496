"""Choosing the batch size from a memory budget (hdm/memory.py), with a fake linear memory."""

from __future__ import annotations

import pytest
import torch

from hdm.memory import batch_size_for_memory, device_memory_budget

MIB = 2**20


def _fake_peak(fixed: int, per_sample: int, calls: list[int]):
    def peak(batch: int) -> int:
        calls.append(batch)
        return fixed + per_sample * batch

    return peak


def test_largest_batch_within_the_headroom_is_chosen_and_rounded_to_the_multiple():
    calls: list[int] = []
    choice = batch_size_for_memory(
        _fake_peak(500 * MIB, 30 * MIB, calls), 8000 * MIB, headroom=0.85, multiple=8
    )
    # (0.85 * 8000 - 500) / 30 = 210 -> 208, a multiple of 8
    assert choice.batch == 208
    assert calls == [2, 4]
    assert choice.fixed_bytes == pytest.approx(500 * MIB)
    assert choice.bytes_per_sample == pytest.approx(30 * MIB)
    assert choice.predicted_peak(choice.batch) <= 0.85 * 8000 * MIB
    assert choice.predicted_peak(choice.batch + 8) > 0.85 * 8000 * MIB - 8 * 30 * MIB


def test_small_budgets_give_small_batches_and_a_cap_applies():
    assert batch_size_for_memory(_fake_peak(100, 100, []), 700, headroom=1.0).batch == 6
    assert batch_size_for_memory(_fake_peak(0, 1, []), 10**9, maximum=64).batch == 64


def test_a_budget_that_holds_no_sample_is_refused_with_the_sizes():
    with pytest.raises(ValueError, match="one sample needs about 2 MiB"):
        batch_size_for_memory(_fake_peak(MIB, MIB, []), MIB, headroom=1.0)
    with pytest.raises(ValueError, match="probes"):
        batch_size_for_memory(_fake_peak(0, 1, []), 100, probes=(4, 2))


def test_no_budget_is_read_off_a_cpu():
    assert device_memory_budget(torch.device("cpu")) is None
