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


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield
