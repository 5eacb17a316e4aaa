"""The per-event result of a 4DVar solve and its reason codes."""

from __future__ import annotations

import equinox as eqx
import numpy as np
from jaxtyping import Array, Bool, Float, Int

# Reason codes (``FourDVarResult.reason`` and the oracle store's ``reason``).
RUNNING = -1  # internal: the loop has not stopped yet (never returned)
CONVERGED = 0  # ‖∇_v J‖ ≤ gtol
MAX_ITERATIONS = 1  # the iteration budget ran out before the tolerance was met
STALLED = 2  # no step decreased the cost (line search failed) before the tolerance was met
NONFINITE = 3  # cost or gradient not finite at the start point (divergent window, overflow)
INVALID_INPUT = 4  # oracle store only: non-finite observations at observed positions

REASONS: dict[int, str] = {
    CONVERGED: "converged: gradient norm in the control variable <= gtol",
    MAX_ITERATIONS: "max_iterations: the iteration budget ran out",
    STALLED: "stalled: the line search found no decrease of the cost",
    NONFINITE: "nonfinite: cost or gradient not finite at the start (divergent window)",
    INVALID_INPUT: "invalid_input: non-finite observation at an observed position",
}


class FourDVarResult(eqx.Module):
    """Results of a batch of B 4DVar solves.

    - ``x``: (B, *state) the minimiser x* (the start point when ``reason`` is
      ``NONFINITE``; always finite).
    - ``cost``: (B,) J(x*) = ½‖x* − x_b‖²_{B⁻¹} + ½ Σ_t ‖m_t ⊙ (y_t − H(M_t(x*)))‖²_{R⁻¹}
      (``inf`` when not finite).
    - ``grad_norm``: (B,) ‖∇_v J‖₂ in the control variable v (x = x_b + B^½ v), the
      quantity the tolerance applies to. Its units are prior standard deviations:
      where the Hessian in v is ⪰ I (every Gauss–Newton Hessian), ‖v − v*‖ ≤ ‖∇_v J‖.
    - ``iterations``: (B,) quasi-Newton iterations (strong) or Gauss–Newton outer
      iterations (incremental).
    - ``inner_iterations``: (B,) total inner CG iterations (0 for the strong solver).
    - ``converged``: (B,) ``reason == CONVERGED``.
    - ``reason``: (B,) one of the codes in :data:`REASONS`.
    """

    x: Float[Array, "B *state"]
    cost: Float[Array, " B"]
    grad_norm: Float[Array, " B"]
    iterations: Int[Array, " B"]
    converged: Bool[Array, " B"]
    reason: Int[Array, " B"]
    inner_iterations: Int[Array, " B"]

    @property
    def n_events(self) -> int:
        return int(self.x.shape[0])

    def summary(self) -> dict:
        """Counts per reason and iteration statistics (host-side, for logs and reports)."""
        reason = np.asarray(self.reason)
        its = np.asarray(self.iterations)
        return {
            "n_events": int(reason.size),
            "converged_fraction": float(np.mean(np.asarray(self.converged))),
            "reasons": {REASONS[int(k)].split(":")[0]: int(np.sum(reason == k)) for k in np.unique(reason)},
            "iterations_mean": float(its.mean()),
            "iterations_max": int(its.max()),
        }
