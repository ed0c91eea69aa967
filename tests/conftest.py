"""Test-session setup shared by every test module.

pytest runs two workers on two cores (`make test`): a torch process that also
spins two threads per op then waits on its twin at every small op, which made
SB3 updates and some MC-dropout passes many times slower
(benchmarks/bench_sb3_training.py --torch-threads 2 shows it). One thread per
worker, inherited by the DVC stages the integration tests start, avoids that.
"""

from __future__ import annotations

import os

import pytest

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")


@pytest.fixture
def one_torch_thread():
    """torch with one intra-op thread for the test, restored afterwards: tiny
    models gain nothing from intra-op threads, and on a shared 2-core box
    spinning OpenMP workers make small ops many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
