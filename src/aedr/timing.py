"""Where a run's time goes: seconds per pipeline stage, for ``benchmarks/speed.py``.

The stages are marked where they run (``with stage("encoder"): ...``); they cost nothing but a
check unless a collection is active (``with collect() as times: ...``), which sums each stage's
seconds over every thread that ran it (reader threads overlap the autoencoder's passes, so the
sum can exceed the wall time).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

STAGES = ("load", "hash", "store", "decode", "homogeneity", "preprocessing", "encoder",
          "decoder", "evidence", "write")  # fmt: skip
"""The stages in pipeline order: model loading, file hashing, score-store lookups and saves,
image decoding, GLCM homogeneity, alignment and degradation search (the model's input), the
autoencoder's encoder and decoder passes, losses and high-pass evidence, writing results."""


class StageTimes:
    """Seconds per stage, summed over threads, and how many times each ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.seconds[name] += seconds
            self.calls[name] += 1


_active: StageTimes | None = None


@contextmanager
def collect() -> Iterator[StageTimes]:
    """Time every marked stage until the block ends."""
    global _active
    if _active is not None:
        raise RuntimeError("a stage collection is active already")
    _active = times = StageTimes()
    try:
        yield times
    finally:
        _active = None


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Count the block's seconds to stage ``name`` while a collection is active."""
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}: one of {', '.join(STAGES)}")
    times = _active
    if times is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        times.add(name, time.perf_counter() - start)
