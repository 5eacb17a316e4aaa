"""Gate 2 — adjoint calibration: ∂x̂/∂y of the head against a reference ∂x/∂y.

The references (one event each): the MCMC posterior-mean Jacobian stored with the
oracle dataset (:class:`MCMCReference`, the default wherever it is stored), the
implicit-function Jacobian of the 4DVar minimiser (:class:`OracleReference`, exact
Hessian by default), the Kalman gain (:class:`KalmanReference`) or another model
(:class:`PosteriorReference`). Two comparisons, chosen by ``GateConfig.adjoint_statistic``:

- ``"frobenius"`` (default): both Jacobians formed densely, the pooled debiased
  Frobenius error with a per-event tail bound (:mod:`vardax_core.gates._jacobian`);
- ``"operator-norm"``: matrix-free, for states too large for dense Jacobians, described
  below.

In the operator-norm comparison both Jacobians are touched only through
Jacobian-vector products (jvp, J v) and vector-Jacobian products (vjp, Jᵀ w), never
formed densely. The generic core,
:func:`compare_linear_operators`, compares two linear operators A (the candidate) and
B (the reference) from R^in to R^out restricted to the unmasked input slots
(P = diag(mask): masked observations are excluded from every probe):

- per-probe relative errors e_k = ‖(A − B) P v_k‖ / ‖B P v_k‖ for ``n_probes`` Gaussian
  probes v_k (reported, and shown as a histogram);
- the relative operator-norm error r = ‖(A − B) P‖₂ / ‖B P‖₂, numerator and denominator
  each estimated by ``power_steps`` power iterations on (·)ᵀ(·) started from the same
  random vector (the normalised sum of the probes). Each estimate ‖M v_K‖ (‖v_K‖ = 1) is a lower bound of ‖M‖₂ that
  converges geometrically; ``details["power_change"]`` reports the relative change of r
  over the last iteration so a non-converged estimate is visible.

**The gating statistic** is r, the normwise relative error of the Jacobian — the
worst-case direction rather than the average over random directions, which is what a
scientist means by "the sensitivities are right to 5 %". Per event, r_e; the gate
statistic is the ``adjoint_quantile`` (0.95) order statistic of r_e over the held-out
events, passing when it is < ``adjoint_threshold`` (0.05), i.e. when at least 95 % of
events have r_e < 0.05 (the same 95 % convention as the agreement gate). Non-finite
products, estimates or ratios in any event fail the gate with a reason.

Power. The estimates are deterministic functions of the probes: for the exact
posterior of a linear problem (A = B = Kalman gain, up to rounding) r ≈ 1e-12; for a
head whose Jacobian is scaled by 1.2 (A = 1.2 B) the two power iterations follow the
same vectors and r = 0.2 exactly, every probe error is 0.2 — four times the threshold,
in every event and every seed. A Jacobian off by a factor (1 + ε) fails when |ε| > 0.05.

The same core gates the neural emulator (∂F_ψ/∂x against ∂M/∂x) through
:func:`emulator_jacobian_calibration`.
"""

from __future__ import annotations

import math
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._common import DualJit, check_output, chunked_map, nonfinite_reason, order_statistic, summary_quantiles
from ._config import GateConfig
from ._jacobian import compare_jacobians, head_jacobians, jacobian_gate, point_jacobian
from ._report import GateResult

NAME = "adjoint_calibration"
F64 = jnp.float64


def linear_operator(f: Callable, x) -> tuple[jax.Array, Callable, Callable]:
    """``f(x)`` with its Jacobian at ``x`` as float64 ``(jvp, vjp)`` closures (one
    linearisation; the vjp is its transpose). Inputs are cast to the dtypes ``f``
    expects, so float32 heads work with float64 probes."""
    out, f_jvp = jax.linearize(f, x)
    f_vjp = jax.linear_transpose(f_jvp, x)

    def jvp(v):
        return f_jvp(v.astype(x.dtype)).astype(F64)

    def vjp(w):
        return f_vjp(w.astype(out.dtype))[0].astype(F64)

    return out, jvp, vjp


def _norm(a):
    return jnp.sqrt(jnp.sum(jnp.square(a)))


def _normalise(g, fallback):
    n = _norm(g)
    return jnp.where(n > 0, g / jnp.where(n > 0, n, 1.0), fallback)


def compare_linear_operators(jvp_a, vjp_a, jvp_b, vjp_b, probes, power_steps: int, in_mask=None) -> dict:
    """Compare a candidate operator A with a reference B given their jvp/vjp (one
    instance; ``jax.vmap`` it over events or states).

    ``jvp_*``: v (input shape) ↦ J v; ``vjp_*``: w (output shape) ↦ Jᵀ w; all float64.
    ``probes`` (n_probes, *input shape): standard Gaussian vectors (see
    :func:`gaussian_probes`); the power iterations start from their normalised sum.
    ``in_mask`` (boolean, input shape) restricts the input to its True slots.

    Returns float64 arrays: ``probe_errors`` (n_probes,) = ‖(A−B)Pv‖/‖BPv‖,
    ``norm_diff`` ≈ ‖(A−B)P‖₂, ``norm_ref`` ≈ ‖BP‖₂ (both lower bounds),
    ``ratio`` = norm_diff / norm_ref (0 when both vanish, inf when only the reference
    does), ``power_change`` (relative change of ``ratio`` over the last power step) and
    ``frobenius_ratio``, the probe estimate of ‖(A−B)P‖_F / ‖BP‖_F.
    """
    in_shape = probes.shape[1:]
    P = jnp.ones(in_shape, F64) if in_mask is None else jnp.asarray(in_mask, F64)
    V = probes.astype(F64) * P

    def ratio_of(nd, nr):
        return jnp.where(nr > 0, nd / jnp.where(nr > 0, nr, 1.0), jnp.where(nd > 0, jnp.inf, 0.0))

    def probe(v):
        b = jvp_b(v)
        return _norm(jvp_a(v) - b), _norm(b)

    num, den = jax.vmap(probe)(V)
    probe_errors = ratio_of(num, den)

    # Power iterations on (A−B)ᵀ(A−B) and BᵀB (restricted by P) side by side; each call
    # site of the four products appears once, which keeps compilation cheap.
    def power(carry, _):
        vd, vr = carry
        wd = jvp_a(vd) - jvp_b(vd)
        wr = jvp_b(vr)
        nd, nr = _norm(wd), _norm(wr)
        gd = (vjp_a(wd) - vjp_b(wd)) * P
        gr = vjp_b(wr) * P
        return (_normalise(gd, vd), _normalise(gr, vr)), (nd, nr)

    v0 = _normalise(jnp.sum(V, axis=0), P)
    _, (nds, nrs) = jax.lax.scan(power, (v0, v0), None, length=power_steps + 1)
    ratios = ratio_of(nds, nrs)
    ratio, prev = ratios[-1], ratios[-2]
    change = jnp.abs(ratio - prev) / jnp.where(ratio > 0, ratio, 1.0)
    return {"probe_errors": probe_errors, "norm_diff": nds[-1], "norm_ref": nrs[-1], "ratio": ratio,
            "power_change": change, "frobenius_ratio": ratio_of(_norm(num), _norm(den))}


def gaussian_probes(key, n_instances: int, n_probes: int, in_shape: tuple[int, ...]):
    """Standard Gaussian probes (n_instances, n_probes, *in_shape) in float64, drawn in
    one call (random-number generation compiles slowly inside vmapped code)."""
    return jax.random.normal(key, (n_instances, n_probes, *in_shape), F64)


def operator_gate(name: str, comparison: dict, config: GateConfig, what: str, label: str = "event",
                  extra: dict | None = None, valid=None) -> GateResult:
    """Turn per-instance comparisons (leading axis = events or states) into a GateResult:
    statistic = the ``adjoint_quantile`` order statistic of the ratio, passes when it is
    < ``adjoint_threshold``; any non-finite value fails with a reason."""
    thr, q = config.adjoint_threshold, config.adjoint_quantile
    c = {k: np.asarray(v, dtype=np.float64) for k, v in comparison.items()}
    ratio, probes = c["ratio"], c["probe_errors"]
    n = ratio.shape[0]
    ok_input = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    bad = ~(np.isfinite(ratio) & np.all(np.isfinite(probes), axis=1)) | ~ok_input
    rule = f"q{q:g}({what}) < threshold"
    details = {
        "rule": rule,
        "quantile": q,
        "n_" + label + "s": n,
        "n_probes": config.n_probes,
        "power_steps": config.power_steps,
        "ratio": ratio,
        "probe_errors": probes.ravel(),
        "frobenius_ratio": c["frobenius_ratio"],
        "ratio_quantiles": summary_quantiles(ratio),
        "probe_error_quantiles": summary_quantiles(probes),
        "power_change_max": float(np.max(np.where(np.isfinite(c["power_change"]), c["power_change"], 0.0)))
        if n else 0.0,
        "fraction_below_threshold": float(np.mean(ratio < thr)) if n else math.nan,
        **(extra or {}),
    }
    if n == 0:
        return GateResult(name, False, math.nan, thr, {**details, "reason": f"no {label}s to probe"})
    if bad.any():
        return GateResult(name, False, math.nan, thr,
                          {**details, "reason": nonfinite_reason("estimates, Jacobian products or ratios",
                                                                 bad, n, label)})
    stat = order_statistic(ratio, q)
    passed = stat < thr
    details["summary"] = (f"{what}: median {np.median(ratio):.3g}, q{q:g} {stat:.3g} over {n} {label}s; "
                          f"median probe error {np.median(probes):.3g}")
    if not passed:
        details["reason"] = (f"{what} is {stat:.3g} at the {q:g} quantile over {n} {label}s "
                             f"(threshold {thr:g}); {np.mean(ratio < thr):.1%} of {label}s below threshold")
    return GateResult(name, passed, stat, thr, details)


# ---- references: the oracle's ∂x*/∂y ------------------------------------------------------------

class KalmanReference(eqx.Module):
    """∂x_a/∂y = K (the Kalman gain) of a linear-Gaussian problem: the exact reference
    for tests (no oracle solve). ``aux`` is ignored."""

    problem: object

    @property
    def state_shape(self):
        return self.problem.state_shape

    def operator(self, y, mask, aux):
        from ..problems import kalman_gain

        K = kalman_gain(self.problem, mask).astype(F64)
        state_shape, y_shape = self.problem.state_shape, y.shape
        return (lambda dy: (K @ dy.reshape(-1)).reshape(state_shape),
                lambda dx: (K.T @ dx.reshape(-1)).reshape(y_shape))

    def matrix(self, y, mask, aux):
        from ..problems import kalman_gain

        K = kalman_gain(self.problem, mask).astype(F64).reshape(*self.problem.state_shape, *y.shape)
        return jnp.where(mask, K, 0.0), None


class OracleReference(eqx.Module):
    """∂x*/∂y by the implicit function theorem at the 4DVar minimum x* (``aux``), from
    :mod:`vardax_core.oracle` (``sensitivity_jvp`` / ``sensitivity_vjp``) with the
    Gauss–Newton or the exact Hessian (``hessian``, see ``GateConfig.adjoint_hessian``)."""

    problem: object
    hessian: str = eqx.field(static=True, default="exact")

    @property
    def state_shape(self):
        return self.problem.state_shape

    def operator(self, y, mask, aux):
        from ..oracle import sensitivity_jvp, sensitivity_vjp

        h = self.hessian
        return (lambda dy: sensitivity_jvp(self.problem, aux, y, mask, dy.astype(F64), hessian=h).astype(F64),
                lambda dx: sensitivity_vjp(self.problem, aux, y, mask, dx.astype(F64), hessian=h).astype(F64))

    def matrix(self, y, mask, aux):
        from ..oracle import sensitivity_matrix

        return sensitivity_matrix(self.problem, aux, y, mask, hessian=self.hessian).astype(F64), None


class PosteriorReference(eqx.Module):
    """∂x̂/∂y of another posterior's point estimate (the champion, an emulator-based
    analysis, …): re-gating a new version against the one before it. ``aux`` is ignored."""

    posterior: object
    state_shape: tuple[int, ...] = eqx.field(static=True)

    def operator(self, y, mask, aux):
        _, jvp, vjp = linear_operator(_mean_map(self.posterior, mask, self.state_shape), y)
        return jvp, vjp

    def matrix(self, y, mask, aux):
        return point_jacobian(self.posterior, y, mask, self.state_shape)[0], None


class MCMCReference(eqx.Module):
    """∂E[x|y]/∂y of the exact posterior, estimated by MCMC and stored with the oracle
    dataset (``ref_jacobian``, ``ref_jacobian_var``: the Gaussian-noise identity
    Cov(x, G(x) | y) W and its Monte-Carlo variance, see
    :func:`vardax_core.oracle.mcmc_reference`). The Jacobian a perfect head has on a
    nonlinear window. ``aux`` = (J, var) of the event; dense comparison only."""

    state_shape: tuple[int, ...] = eqx.field(static=True)

    def operator(self, y, mask, aux):
        J = aux[0].reshape(math.prod(self.state_shape), -1)
        return (lambda dy: (J @ dy.reshape(-1)).reshape(self.state_shape),
                lambda dx: (J.T @ dx.reshape(-1)).reshape(y.shape))

    def matrix(self, y, mask, aux):
        J, var = aux
        return jnp.where(mask, J.astype(F64), 0.0), jnp.where(mask, var.astype(F64), 0.0)


def reference_name(reference) -> str:
    """How a report names the reference: the class, with the Hessian of an IFT one."""
    if isinstance(reference, OracleReference):
        return f"OracleReference({reference.hessian})"
    return type(reference).__name__


def _mean_map(posterior, mask, state_shape):
    def f(yy):
        out = posterior(yy[None], mask[None])
        check_output("posterior(y, mask)", out, (1, *state_shape))
        return out[0]

    return f


def _probe_events(posterior, reference, y, mask, aux, key, state_shape, n_probes, power_steps, chunk):
    def one(args):
        yy, mm, aa, zz = args
        est, jvp_f, vjp_f = linear_operator(_mean_map(posterior, mm, state_shape), yy)
        jvp_o, vjp_o = reference.operator(yy, mm, aa)
        out = compare_linear_operators(jvp_f, vjp_f, jvp_o, vjp_o, zz, power_steps, mm)
        out["estimate_finite"] = jnp.all(jnp.isfinite(est))
        return out

    probes = gaussian_probes(key, y.shape[0], n_probes, y.shape[1:])
    return chunked_map(one, (y, mask, aux, probes), chunk)


_probe_events_jit = DualJit(_probe_events)


def _reference_matrices(reference, y, mask, aux, chunk):
    def one(args):
        yy, mm, aa = args
        J, var = reference.matrix(yy, mm, aa)
        return {"J": J, "var": jnp.zeros_like(J) if var is None else var}

    return chunked_map(one, (y, mask, aux), chunk)


_reference_matrices_jit = DualJit(_reference_matrices)


def reference_jacobians(reference, y, mask, aux, *, chunk: int = 64, fast_compile: bool = False):
    """The dense reference Jacobians of E events and their Monte-Carlo variances (zero for
    exact references), each (E, *state, T, *obs) in float64 (NumPy): ``reference.matrix``
    of every event, ``chunk`` events vmapped at a time under jit. ``aux`` as for
    :func:`adjoint_calibration` (x* (E, *state) for :class:`OracleReference`)."""
    out = _reference_matrices_jit(fast_compile, reference, jnp.asarray(y), jnp.asarray(mask),
                                  jax.tree_util.tree_map(jnp.asarray, aux), int(chunk))
    return np.asarray(out["J"]), np.asarray(out["var"])


def adjoint_calibration(posterior, y, mask, reference, key, config: GateConfig | None = None, *, aux=None,
                        state_shape: tuple[int, ...] | None = None) -> GateResult:
    """Gate 2 on E held-out events ``y``, ``mask`` (E, T, *obs).

    ``reference`` gives one event's reference Jacobian: :class:`MCMCReference` (``aux``
    = (J, var), the stored MCMC ∂E[x|y]/∂y and its variance, (E, *state, T, *obs)
    each), :class:`OracleReference` (``aux`` = the oracle's x*, (E, *state); the
    implicit-function Jacobian of the 4DVar minimiser), for linear problems
    :class:`KalmanReference`, or :class:`PosteriorReference` (another model).

    ``config.adjoint_statistic`` picks the comparison: ``"frobenius"`` (default) forms
    both Jacobians densely and applies the pooled/tail rule of
    :mod:`vardax_core.gates._jacobian`; ``"operator-norm"`` is the matrix-free
    probe/power-iteration comparison of :func:`compare_linear_operators` with the
    ``adjoint_quantile`` rule (for states too large for dense Jacobians; ``key`` draws
    its probes). Events without any observed slot are skipped and counted in ``details``.
    """
    config = config or GateConfig()
    # Host-side preparation (NumPy): eager JAX ops would each compile a small kernel.
    y, mask = np.asarray(y), np.asarray(mask)
    if y.shape != mask.shape:
        raise ValueError(f"`mask` must have the same shape as `y` {y.shape}, got {mask.shape}")
    if mask.dtype != np.bool_:
        raise ValueError(f"`mask` must be boolean, got {mask.dtype}")
    state_shape = tuple(state_shape or reference.state_shape)
    n_events = y.shape[0]
    if isinstance(reference, MCMCReference):
        if aux is None or len(aux) != 2:
            raise ValueError("`aux` must be the pair (jacobian, jacobian_var) for an MCMCReference")
        aux = tuple(np.asarray(a, np.float64) for a in aux)
        want = (n_events, *state_shape, *y.shape[1:])
        for nm, a in zip(("jacobian", "jacobian_var"), aux):
            if a.shape != want:
                raise ValueError(f"`aux` {nm} (the MCMC reference) must have shape {want}, got {a.shape}")
        if config.adjoint_statistic != "frobenius":
            raise ValueError("an MCMCReference carries Monte-Carlo error: use adjoint_statistic='frobenius'")
    else:
        aux = np.zeros((n_events, *state_shape)) if aux is None else np.asarray(aux)
        if aux.shape != (n_events, *state_shape):
            raise ValueError(f"`aux` (the oracle x*) must have shape {(n_events, *state_shape)}, got {aux.shape}")
    observed = mask.reshape(n_events, -1).any(axis=1)
    y, mask = y[observed], mask[observed]
    aux = jax.tree_util.tree_map(lambda a: a[observed], aux)
    extra = {"n_skipped_unobserved": int((~observed).sum()), "statistic": config.adjoint_statistic}
    name = reference_name(reference)
    if config.adjoint_statistic == "frobenius":
        if y.shape[0] == 0:
            return jacobian_gate(NAME, compare_jacobians(np.zeros((0, 1)), np.zeros((0, 1))), config, name,
                                 extra=extra)
        chunk = config.chunk("eval_chunk")
        head = head_jacobians(config.fast_compile, posterior, y, mask, state_shape, chunk)
        ref = _reference_matrices_jit(config.fast_compile, reference, y, mask, aux, chunk)
        comparison = compare_jacobians(np.asarray(head["J"]), np.asarray(ref["J"]), None, np.asarray(ref["var"]))
        return jacobian_gate(NAME, comparison, config, name, extra=extra, valid=np.asarray(head["finite"]))
    extra["reference"] = name
    if y.shape[0] == 0:
        return operator_gate(NAME, {"ratio": np.zeros(0), "probe_errors": np.zeros((0, config.n_probes)),
                                    "frobenius_ratio": np.zeros(0), "power_change": np.zeros(0)},
                             config, "‖J_f − J_o‖/‖J_o‖", extra=extra)
    out = _probe_events_jit(config.fast_compile, posterior, reference, y, mask, aux, key, state_shape,
                            int(config.n_probes), int(config.power_steps), config.chunk("adjoint_chunk"))
    valid = np.asarray(out.pop("estimate_finite"))
    return operator_gate(NAME, out, config, "‖J_f − J_o‖/‖J_o‖", extra=extra, valid=valid)


# ---- the emulator variant: ∂F_ψ/∂x against ∂M/∂x ------------------------------------------------

def _step_fn(model):
    return model.step if hasattr(model, "step") else model


def _probe_states(emulator_model, physics_model, states, key, n_probes, power_steps, chunk):
    def one(args):
        x, z = args
        out_f, jvp_f, vjp_f = linear_operator(_step_fn(emulator_model), x)
        out_m, jvp_m, vjp_m = linear_operator(_step_fn(physics_model), x)
        res = compare_linear_operators(jvp_f, vjp_f, jvp_m, vjp_m, z, power_steps)
        res["estimate_finite"] = jnp.all(jnp.isfinite(out_f)) & jnp.all(jnp.isfinite(out_m))
        return res

    probes = gaussian_probes(key, states.shape[0], n_probes, states.shape[1:])
    return chunked_map(one, (states, probes), chunk)


_probe_states_jit = DualJit(_probe_states)


def emulator_jacobian_calibration(emulator_model, physics_model, states, key, config: GateConfig | None = None,
                                  *, name: str = "emulator_jacobian") -> GateResult:
    """The Jacobian gate for a neural emulator: ∂F_ψ/∂x against ∂M/∂x at each of the
    ``states`` (S, *state), with the same probes, power iteration, threshold
    (``adjoint_threshold``) and quantile rule as :func:`adjoint_calibration`.

    ``emulator_model`` and ``physics_model`` are forward models (their ``step``) or
    plain callables x ↦ x_next on one state.
    """
    config = config or GateConfig()
    states = jnp.asarray(states)
    if states.ndim < 2:
        raise ValueError(f"`states` must be batched, shape (states, *state), got {states.shape}")
    out = _probe_states_jit(config.fast_compile, emulator_model, physics_model, states, key, int(config.n_probes), int(config.power_steps),
                        config.chunk("adjoint_chunk"))
    valid = np.asarray(out.pop("estimate_finite"))
    return operator_gate(name, out, config, "‖∂F/∂x − ∂M/∂x‖/‖∂M/∂x‖", label="state", valid=valid)
