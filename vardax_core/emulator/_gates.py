"""The emulator's two gates (step 3): forward agreement and Jacobian calibration.

Both are evaluated on *held-out states*: states along fresh physics trajectories from
the problem's prior (:func:`heldout_states`), drawn with the key ``fold_in(key,
HELDOUT_TAG)`` — a stream disjoint from the training draws (``fold_in(key(seed),
TRAIN_TAG)``) even when the caller passes the training seed's key.

1. **Forward agreement** (``emulator_forward``): e_s = ‖F_ψ(x_s) − M(x_s)‖ / ‖M(x_s)‖
   per state. The gating statistic is the ``forward_quantile`` (0.95) order statistic of
   e_s, passing when it is < ``forward_threshold`` (0.01), i.e. when at least 95 % of
   held-out states are emulated to better than 1 %. The 95th percentile rather than the
   mean: a mean hides a tail of badly emulated states (the ones that make a 4DVar
   window go wrong), and it is the same 95 % rule as the Jacobian and agreement gates.
   The mean, median, max and the fraction below threshold are reported.
2. **Jacobian calibration** (``emulator_jacobian``): ‖∂F_ψ/∂x − ∂M/∂x‖₂ / ‖∂M/∂x‖₂ by
   random-vector probing and power iteration, with the gates package's
   :func:`~vardax_core.gates.emulator_jacobian_calibration` (jvp/vjp only); statistic
   the 0.95 order statistic over held-out states, threshold 0.05.

For an emulator advancing s > 1 model steps per call, M is the physics over s steps.
"""

from __future__ import annotations

import dataclasses
import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..gates import GateConfig, GateResult, emulator_jacobian_calibration
from ..gates._common import nonfinite_reason, order_statistic, summary_quantiles
from ..problems import Problem
from ._model import ConvResidualEmulator
from ._train import HELDOUT_TAG, physics_map, simulate_transitions
from .._checks import dataclass_from_dict

FORWARD = "emulator_forward"
JACOBIAN = "emulator_jacobian"
#: Both must be present and passed for an emulator to be promoted.
EMULATOR_GATE_NAMES = (FORWARD, JACOBIAN)


@dataclasses.dataclass(frozen=True)
class EmulatorGateConfig:
    """Thresholds and sample sizes of the emulator gates (JSON round trip).

    - ``forward_threshold`` (0.01), ``forward_quantile`` (0.95), ``forward_states``
      (2000 held-out states);
    - ``jacobian_threshold`` (0.05), ``jacobian_quantile`` (0.95), ``jacobian_states``
      (200 held-out states), ``n_probes`` and ``power_steps`` of the probing,
      ``chunk`` states probed at a time under ``vmap`` (the emulator has no LAPACK
      calls, so batching is safe and fast on a CPU; None: the gates' default);
      ``fast_compile`` as in
      :class:`~vardax_core.gates.GateConfig` (off by default here: the emulator's
      convolutions run many times slower when compiled at optimisation level 0);
    - ``spread``: held-out initial states x_b + spread · B^½ z (as in training).
    """

    forward_threshold: float = 0.01
    forward_quantile: float = 0.95
    forward_states: int = 2000
    jacobian_threshold: float = 0.05
    jacobian_quantile: float = 0.95
    jacobian_states: int = 200
    n_probes: int = 8
    power_steps: int = 20
    chunk: int | None = 50
    fast_compile: bool = False
    spread: float = 1.0

    def __post_init__(self):
        def need(cond, msg):
            if not cond:
                raise ValueError(f"EmulatorGateConfig: {msg}")

        need(self.forward_threshold > 0, f"`forward_threshold` must be > 0, got {self.forward_threshold}")
        need(0 < self.forward_quantile <= 1, f"`forward_quantile` must be in (0, 1], got {self.forward_quantile}")
        need(self.spread > 0, f"`spread` must be > 0, got {self.spread}")
        for name in ("forward_states", "jacobian_states"):
            v = getattr(self, name)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 1, f"`{name}` must be an integer >= 1, got {v!r}")
        self.gate_config()  # validates the Jacobian settings

    def gate_config(self) -> GateConfig:
        """The Jacobian gate's settings as the gates package's :class:`GateConfig`."""
        return GateConfig(adjoint_threshold=self.jacobian_threshold, adjoint_quantile=self.jacobian_quantile,
                          adjoint_events=self.jacobian_states, n_probes=self.n_probes, power_steps=self.power_steps,
                          adjoint_chunk=self.chunk, fast_compile=self.fast_compile)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "EmulatorGateConfig":
        return dataclass_from_dict(cls, d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def heldout_states(problem: Problem, key, n: int, *, steps_per_call: int = 1, spread: float = 1.0) -> np.ndarray:
    """``n`` held-out states (n, *state): state number i lies at step i mod L of trajectory i
    (L = the window's n_steps − s + 1 start points), so the states cover every time of the
    window and come from independent prior draws; the draws use ``fold_in(key, HELDOUT_TAG)``."""
    if int(n) < 1:
        raise ValueError(f"`n` must be >= 1, got {n}")
    data = simulate_transitions(problem, jax.random.fold_in(key, HELDOUT_TAG), int(n), steps_per_call=steps_per_call,
                                spread=spread)
    x = data["x"]
    return x[np.arange(len(x)), np.arange(len(x)) % x.shape[1]]


def forward_agreement(emulator, physics, states, config: EmulatorGateConfig | None = None) -> GateResult:
    """The forward gate on ``states`` (S, *state): ``emulator`` and ``physics`` are forward
    models (their ``step``) or callables x ↦ x_next on one state."""
    config = config or EmulatorGateConfig()
    states = np.asarray(states, dtype=np.float64)
    if states.ndim < 2:
        raise ValueError(f"`states` must be batched, shape (states, *state), got {states.shape}")
    f_step = getattr(emulator, "step", emulator)
    m_step = getattr(physics, "step", physics)
    err = np.asarray(_relative_errors(f_step, m_step, states), dtype=np.float64)
    thr, q = config.forward_threshold, config.forward_quantile
    n = err.shape[0]
    finite = np.isfinite(err)
    details = {
        "rule": f"q{q:g}(‖F(x) − M(x)‖/‖M(x)‖) < threshold",
        "quantile": q,
        "n_states": n,
        "errors": err,
        "mean": float(np.mean(err)) if finite.all() else math.nan,
        "q95": float(np.quantile(err, 0.95)) if finite.all() else math.nan,
        "error_quantiles": summary_quantiles(err),
        "fraction_below_threshold": float(np.mean(err < thr)),
    }
    if not finite.all():
        return GateResult(FORWARD, False, math.nan, thr,
                          {**details, "reason": nonfinite_reason("emulator or physics outputs", ~finite, n, "state")})
    stat = order_statistic(err, q)
    passed = stat < thr
    details["summary"] = (f"relative forward error: mean {details['mean']:.3g}, q95 {details['q95']:.3g}, "
                          f"max {err.max():.3g} over {n} states")
    if not passed:
        details["reason"] = (f"relative forward error is {stat:.3g} at the {q:g} quantile over {n} states "
                             f"(threshold {thr:g}); {np.mean(err < thr):.1%} of states below threshold")
    return GateResult(FORWARD, passed, stat, thr, details)


@eqx.filter_jit
def _relative_errors(f_step, m_step, states):
    f, m = jax.vmap(f_step)(states), jax.vmap(m_step)(states)
    axes = tuple(range(1, f.ndim))
    return jnp.sqrt(jnp.sum((f - m) ** 2, axis=axes)) / jnp.sqrt(jnp.sum(m**2, axis=axes))


def jacobian_calibration(emulator, problem: Problem, states, key, config: EmulatorGateConfig | None = None) -> GateResult:
    """The Jacobian gate on ``states`` (S, *state): ∂F_ψ/∂x against the physics' ∂M^s/∂x,
    through :func:`vardax_core.gates.emulator_jacobian_calibration`."""
    config = config or EmulatorGateConfig()
    s = getattr(emulator, "steps_per_call", 1)
    return emulator_jacobian_calibration(emulator, physics_map(problem, s), states, key, config.gate_config(),
                                         name=JACOBIAN)


def emulator_gates(emulator: ConvResidualEmulator, problem: Problem, key,
                   config: EmulatorGateConfig | dict | None = None) -> dict[str, GateResult]:
    """Both emulator gates on fresh held-out states of ``problem`` (drawn from ``key``):
    ``{"emulator_forward": …, "emulator_jacobian": …}``. Promote only when
    :func:`emulator_gates_passed` is True."""
    config = config if isinstance(config, EmulatorGateConfig) else EmulatorGateConfig.from_dict(config)
    if emulator.problem_hash != problem.hash:
        raise ValueError(f"the emulator emulates problem hash {emulator.problem_hash}, not {problem.hash}")
    s = emulator.steps_per_call
    k_states, k_probes = jax.random.split(key)
    n = max(config.forward_states, config.jacobian_states)
    states = heldout_states(problem, k_states, n, steps_per_call=s, spread=config.spread)
    forward = forward_agreement(emulator, physics_map(problem, s), states[: config.forward_states], config)
    jac = jacobian_calibration(emulator, problem, states[: config.jacobian_states], k_probes, config)
    return {FORWARD: forward, JACOBIAN: jac}


def emulator_gates_passed(results: dict[str, GateResult]) -> bool:
    """True only when both emulator gates are present and passed."""
    return all(name in results and results[name].passed for name in EMULATOR_GATE_NAMES)
