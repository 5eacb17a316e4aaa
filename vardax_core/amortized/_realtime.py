"""The real-time path of an amortized posterior: one event at a time through a program
compiled ahead of time, with the inputs checked once at construction, not per call."""

from __future__ import annotations

from typing import final

import jax
import jax.numpy as jnp

from .._checks import check_observations
from ._posterior import AmortizedPosterior, _as_key, _point, _sample


@final
class RealtimeAnalysis:
    """The analysis of single events by an :class:`AmortizedPosterior`, for latency.

    Built by ``model.realtime(draws=0, key=None)``. At construction ``draws`` (a
    non-negative int) and ``key`` (a PRNG key, required when ``draws`` > 0) are checked
    and one program is compiled ahead of time for the event shapes, with the weights
    and standardisation captured in it (calls pass only the observations):

    - ``rt(y, mask)`` with ``y`` (T, *obs_shape) float64 and ``mask`` the same shape,
      boolean, returns the point estimate x̂ (*state_shape) float64, equal to
      ``model(y[None], mask[None])[0]``;
    - with ``draws`` = k > 0 it returns ``(x̂, samples)``, samples (k, *state_shape)
      float64. The i-th call (i = 0, 1, …, counted on the device) uses the key
      ``fold_in(key, i)``: its samples are ``model.sample(y[None], mask[None],
      jax.random.fold_in(key, i), k)[0]``. Two analyses built with the same key give
      the same sequence; the same event analysed twice gets fresh draws.

    ``__call__`` is the hot path: it checks nothing beyond what the compiled program
    checks for free (shapes and dtypes must match exactly: a float32 ``y`` or a batched
    ``(1, T, …)`` one is a ``TypeError``), never waits on the device, and does not
    verify that observed values are finite. ``check(y, mask)`` does the package's full
    validation (shapes, boolean mask, finite ``y`` wherever ``mask`` is True; NaN is
    allowed where ``mask`` is False) and returns the arrays ready for the call:
    ``rt(*rt.check(y, mask))``. Not thread-safe when ``draws`` > 0 (the call counter).

    On CPU, JAX hands each call to another thread by default; a latency-bound process
    can run calls on the calling thread with
    ``jax.config.update("jax_cpu_enable_async_dispatch", False)`` before its first
    computation (a process-wide setting; benchmarks/latency.py measures both).
    """

    __slots__ = ("model", "draws", "_fn", "_count")

    def __init__(self, model: AmortizedPosterior, *, draws: int = 0, key=None):
        if isinstance(draws, bool) or not isinstance(draws, int) or draws < 0:
            raise ValueError(f"`draws` must be a non-negative integer, got {draws!r}")
        if draws and key is None:
            raise ValueError(f"`key` is required when `draws` > 0 (got draws={draws}, key=None)")
        self.model, self.draws = model, draws
        shape = (model.n_times, *model.obs_shape)
        y_spec, m_spec = jax.ShapeDtypeStruct(shape, jnp.float64), jax.ShapeDtypeStruct(shape, jnp.bool_)

        def point(y, mask):
            return _point.__wrapped__(model, y[None], mask[None])[0]

        if not draws:
            self._fn = jax.jit(point).lower(y_spec, m_spec).compile()
            return
        key = _as_key(key)

        def point_and_draws(y, mask, i):
            k = jax.random.fold_in(key, i)
            return point(y, mask), _sample.__wrapped__(model, y[None], mask[None], k, n=draws)[0], i + 1

        self._count = jnp.zeros((), jnp.uint32)
        self._fn = jax.jit(point_and_draws).lower(y_spec, m_spec, self._count).compile()

    def __init_subclass__(cls, **kwargs):
        raise TypeError("RealtimeAnalysis is final")

    def __call__(self, y, mask):
        if not self.draws:
            return self._fn(y, mask)
        x, samples, self._count = self._fn(y, mask, self._count)
        return x, samples

    def check(self, y, mask):
        """Full validation of one event (``ValueError`` naming the variable): ``y`` and
        ``mask`` of shape (T, *obs_shape), ``mask`` boolean, ``y`` finite where ``mask``
        is True. Returns ``(y as float64, mask)``, ready for ``__call__``."""
        y, mask = check_observations(y, mask, self.model.obs_shape, self.model.n_times, batched=False)
        return jnp.asarray(y, jnp.float64), mask

    @property
    def calls(self) -> int:
        """Calls so far with draws (the index i of the next call's key); waits on the device."""
        return int(self._count) if self.draws else 0
