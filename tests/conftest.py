"""Shared test settings: deterministic, single-threaded torch so tests are reproducible.

One thread, unless OMP_NUM_THREADS says otherwise: the tests' models are tiny, so a second
thread gains nothing on an idle 2-core machine (42 s against 45 s for the whole suite), and
when another process holds a core the threads wait on each other (the suite took 9 min 35 s
with two threads beside a training run, 44 s with one beside two).
"""

import os

import pytest
import torch

if "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"  # for the subprocesses some tests start
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked ``cuda`` (``@pytest.mark.cuda``, or
    ``pytest.param(..., marks=pytest.mark.cuda)``) when no CUDA device is available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield
