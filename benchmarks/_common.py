"""Shared helpers for benchmark scripts: timing and machine description."""

from __future__ import annotations

import os
import platform
import time


def machine() -> str:
    import jax

    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, jax {jax.__version__} on {jax.default_backend()}"


def best_of(fn, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls of ``fn`` (seconds); ``fn`` must block."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)
