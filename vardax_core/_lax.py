"""Mapping over events without batching LAPACK kernels."""

from __future__ import annotations

import jax


def map_events(fn, *args):
    """``fn`` applied to each event of the batched ``args`` in turn (``lax.map``).

    Per-event code that factors small matrices (Cholesky, triangular solves) must not
    be ``vmap``-ped on CPU: jaxlib 0.10.2 runs batched LAPACK kernels through a parallel
    batch map on XLA's intra-op thread pool, and two such calls in flight at once can
    wait on each other forever on a 2-core machine (observed: a hang in
    ``lapack_strsm_ffi`` → ``jax::ParallelBatchMap`` → ``BlockingCounter::Wait``).
    ``lax.map`` keeps every LAPACK call unbatched; for the small matrices here it is
    also faster than the batched kernels."""
    return jax.lax.map(lambda a: fn(*a), args)
