"""Test-session setup shared by every test module.

pytest runs two workers on two cores (`make test`): a torch process that also
spins two threads per op then waits on its twin at every small op, which made
SB3 updates ~4x and some MC-dropout passes 100x slower on the project machine
(benchmarks/bench_sb3_training.py --torch-threads 2). One thread per worker,
inherited by the DVC stages the integration tests start, avoids that.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
