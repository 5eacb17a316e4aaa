"""Gate 2, adjoint calibration, and the shared operator-comparison core."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.gates._wrong import Broken, ScaledJacobian, WrongShape
from tests.gates.conftest import FAST
from vardax_core.gates import (
    GateConfig,
    KalmanReference,
    adjoint_calibration,
    compare_linear_operators,
    emulator_jacobian_calibration,
    gaussian_probes,
    linear_operator,
)
from vardax_core.problems import get_problem, kalman_gain

N_EVENTS = 50
N_SEEDS = 40
STATISTICS = ("frobenius", "operator-norm")


def _dense(A):
    A = jnp.asarray(A)
    return (lambda v: A @ v), (lambda w: A.T @ w)


def _compare(A, B, key, mask=None, n_probes=64, steps=30):
    ja, va = _dense(A)
    jb, vb = _dense(B)
    probes = gaussian_probes(key, 1, n_probes, (A.shape[1],))[0]
    return jax.jit(lambda z: compare_linear_operators(ja, va, jb, vb, z, steps, mask))(probes), np.asarray(probes)


def test_core_matches_dense_linear_algebra():
    rng = np.random.default_rng(0)
    B = rng.normal(size=(7, 12))
    A = B + 0.03 * rng.normal(size=(7, 12))
    out, V = _compare(A, B, jax.random.key(0))
    exact = np.linalg.norm(A - B, 2) / np.linalg.norm(B, 2)
    assert float(out["ratio"]) == pytest.approx(exact, rel=1e-3)
    # power iteration gives lower bounds of both norms
    assert float(out["norm_diff"]) <= np.linalg.norm(A - B, 2) * (1 + 1e-12)
    assert float(out["norm_ref"]) <= np.linalg.norm(B, 2) * (1 + 1e-12)
    assert float(out["power_change"]) < 1e-3
    # per-probe errors are exactly ‖(A−B)v‖/‖Bv‖ for the probes used
    direct = np.linalg.norm(V @ (A - B).T, axis=1) / np.linalg.norm(V @ B.T, axis=1)
    np.testing.assert_allclose(out["probe_errors"], direct, rtol=1e-12)
    # the Frobenius estimate is consistent with the dense value (64 probes: ±25 %)
    frob = np.linalg.norm(A - B) / np.linalg.norm(B)
    assert float(out["frobenius_ratio"]) == pytest.approx(frob, rel=0.25)


def test_core_excludes_masked_inputs():
    rng = np.random.default_rng(1)
    B = rng.normal(size=(5, 8))
    mask = np.array([True, False] * 4)
    A = B.copy()
    A[:, ~mask] += 10.0  # wrong only where nothing is observed
    out, _ = _compare(A, B, jax.random.key(1), mask=jnp.asarray(mask))
    assert float(out["ratio"]) < 1e-12 and float(jnp.max(out["probe_errors"])) < 1e-12
    exact = np.linalg.norm(B[:, mask] * 1.2 - B[:, mask], 2) / np.linalg.norm(B[:, mask], 2)
    out, _ = _compare(1.2 * B, B, jax.random.key(1), mask=jnp.asarray(mask))
    assert float(out["ratio"]) == pytest.approx(exact, rel=1e-9)


def test_core_handles_a_vanishing_reference():
    Z = np.zeros((3, 4))
    assert float(_compare(Z, Z, jax.random.key(2))[0]["ratio"]) == 0.0
    assert float(_compare(np.ones((3, 4)), Z, jax.random.key(2))[0]["ratio"]) == np.inf


@pytest.fixture(scope="module")
def events(lg):
    x, y, mask = lg.simulate(jax.random.key(5), N_SEEDS * N_EVENTS)
    return y, mask


def _gate_over_seeds(posterior, lg, events, seed_keys, config=FAST):
    y, mask = events
    ref = KalmanReference(lg)
    return [adjoint_calibration(posterior, y[i * N_EVENTS:(i + 1) * N_EVENTS], mask[i * N_EVENTS:(i + 1) * N_EVENTS],
                                ref, seed_keys[i], config)
            for i in range(N_SEEDS)]  # one compilation, N_SEEDS cheap calls


@pytest.mark.parametrize("statistic", STATISTICS)
def test_exact_posterior_passes_in_every_seed(exact, lg, events, seed_keys, statistic):
    results = _gate_over_seeds(exact, lg, events, seed_keys, FAST.replace(adjoint_statistic=statistic))
    assert all(r.passed for r in results)
    r = results[0]
    assert r.statistic < 1e-10 and r.threshold == 0.05
    assert len(r.details["ratio"]) == N_EVENTS
    assert r.details["statistic"] == statistic
    if statistic == "operator-norm":
        assert len(r.details["probe_errors"]) == N_EVENTS * GateConfig().n_probes
    else:
        assert r.details["reference"] == "KalmanReference" and r.details["max_ratio"] < 1e-10


@pytest.mark.parametrize("statistic", STATISTICS)
def test_jacobian_scaled_by_1p2_fails_in_every_seed(exact, lg, events, seed_keys, statistic):
    wrong = ScaledJacobian(exact, jnp.asarray(1.2))
    y, mask = events
    np.testing.assert_array_equal(wrong(y[:5], mask[:5]), exact(y[:5], mask[:5]))  # same point estimates
    results = _gate_over_seeds(wrong, lg, events, seed_keys, FAST.replace(adjoint_statistic=statistic))
    rate = np.mean([not r.passed for r in results])
    assert rate >= 0.95 and rate == 1.0
    for r in results:
        np.testing.assert_allclose(r.details["ratio"], 0.2, rtol=1e-9)
        if statistic == "operator-norm":
            np.testing.assert_allclose(r.details["probe_errors"], 0.2, rtol=1e-9)
    assert "0.2" in results[0].reason


@pytest.mark.parametrize("statistic", STATISTICS)
@pytest.mark.parametrize("s, passes", [(1.04, True), (1.06, False)])
def test_threshold_separates_small_jacobian_errors(exact, lg, events, s, passes, statistic):
    y, mask = events
    r = adjoint_calibration(ScaledJacobian(exact, jnp.asarray(s)), y[:N_EVENTS], mask[:N_EVENTS],
                            KalmanReference(lg), jax.random.key(0), FAST.replace(adjoint_statistic=statistic))
    assert r.passed is passes
    assert r.statistic == pytest.approx(abs(s - 1), rel=1e-6)


def test_tail_rule_bounds_every_event():
    """The pooled error may be small while one event is far off: the tail bound fails it."""
    from vardax_core.gates import compare_jacobians, jacobian_gate

    rng = np.random.default_rng(0)
    B = rng.normal(size=(200, 4, 6))
    A = B.copy()
    A[0] *= 1.6  # one event 60 % off: pooled √(0.36/200) ≈ 0.042 < 0.05
    c = compare_jacobians(A, B)
    assert c["pooled"] < 0.05 and c["ratio"][0] == pytest.approx(0.6)
    r = jacobian_gate("g", c, GateConfig(), "test")
    assert not r.passed and "tail bound" in r.reason and r.details["worst_event"] == 0
    A[0] = B[0] * 1.2
    assert jacobian_gate("g", compare_jacobians(A, B), GateConfig(), "test").passed


def test_debiasing_removes_the_reference_monte_carlo_error():
    """A reference with entry-wise MC noise of variance V: the exact Jacobian's raw error
    is the noise (~0.1 here, as for the lorenz96 MCMC reference), its debiased pooled error
    ~0; the Jacobian × 1.2 stays ≈ 0.2."""
    from vardax_core.gates import compare_jacobians

    rng = np.random.default_rng(1)
    K = rng.normal(size=(200, 8, 12))
    V = np.full_like(K, 0.01)
    B = K + rng.normal(size=K.shape) * np.sqrt(V)
    exact_c = compare_jacobians(K, B, None, V)
    assert np.median(exact_c["raw_ratio"]) > 0.08 and exact_c["pooled"] < 0.03
    assert compare_jacobians(1.2 * K, B, None, V)["pooled"] == pytest.approx(0.2, abs=0.02)
    # two noisy estimates of the same Jacobian (an independent MCMC run as the candidate)
    A = K + rng.normal(size=K.shape) * np.sqrt(V)
    assert compare_jacobians(A, B, V, V)["pooled"] < 0.03


def test_quantile_rule_over_events():
    from vardax_core.gates import operator_gate

    ratio = np.full(100, 0.01)
    ratio[:5] = 0.5  # 5 % of events badly off: the 0.95 order statistic is still 0.01
    comp = {"ratio": ratio, "probe_errors": np.tile(ratio[:, None], (1, 2)), "frobenius_ratio": ratio,
            "power_change": np.zeros(100)}
    assert operator_gate("g", comp, GateConfig(), "r").passed
    ratio[5] = 0.5
    r = operator_gate("g", comp, GateConfig(), "r")
    assert not r.passed and r.statistic == 0.5 and r.details["fraction_below_threshold"] == 0.94


@pytest.mark.parametrize("statistic", STATISTICS)
def test_masked_slots_and_missing_data(statistic):
    lg = get_problem("linear_gaussian", missing_fraction=0.3)
    x, y, mask = lg.simulate(jax.random.key(8), N_EVENTS)
    mask = mask.at[0].set(False)  # an event with nothing observed: skipped, counted
    from vardax_core.problems import ExactLinearGaussianPosterior

    r = adjoint_calibration(ExactLinearGaussianPosterior(lg), y, mask, KalmanReference(lg), jax.random.key(0),
                            FAST.replace(adjoint_statistic=statistic))
    assert r.passed and r.details["n_skipped_unobserved"] == 1 and r.details["n_events"] == N_EVENTS - 1


@pytest.mark.parametrize("statistic", STATISTICS)
@pytest.mark.parametrize("what, value", [("estimate", np.nan), ("jacobian", np.nan)])
def test_nonfinite_estimates_or_jacobians_fail_with_a_reason(exact, lg, events, what, value, statistic):
    y, mask = events
    r = adjoint_calibration(Broken(exact, what, jnp.asarray(value)), y[:N_EVENTS], mask[:N_EVENTS],
                            KalmanReference(lg), jax.random.key(0), FAST.replace(adjoint_statistic=statistic))
    assert r.passed is False
    assert "non-finite" in r.reason and f"{N_EVENTS} of {N_EVENTS} events" in r.reason


def test_shape_mismatches_raise(exact, lg, events):
    y, mask = events
    ref = KalmanReference(lg)
    with pytest.raises(ValueError, match=r"posterior\(y, mask\)"):
        adjoint_calibration(WrongShape(exact, "estimate"), y[:4], mask[:4], ref, jax.random.key(0))
    with pytest.raises(ValueError, match="`mask`"):
        adjoint_calibration(exact, y[:4], mask[:3], ref, jax.random.key(0))
    with pytest.raises(ValueError, match="`aux`"):
        adjoint_calibration(exact, y[:4], mask[:4], ref, jax.random.key(0), aux=jnp.zeros((4, 3)))


def test_linear_operator_casts_dtypes_for_float32_functions():
    f = lambda x: (2.0 * x.astype(jnp.float32)).astype(jnp.float32)  # noqa: E731
    out, jvp, vjp = linear_operator(f, jnp.ones(3))
    assert out.dtype == jnp.float32
    v = jnp.arange(3.0)
    assert jvp(v).dtype == jnp.float64 and np.allclose(jvp(v), 2 * v)
    assert np.allclose(vjp(v), 2 * v)


# ---- the emulator variant ---------------------------------------------------------------------

class _ScaledStep(eqx.Module):
    """A toy 'emulator': the physics step with its Jacobian scaled by s at every state."""

    model: eqx.Module
    s: jax.Array

    def __call__(self, x):
        f = self.model.step(x)
        return f + (self.s - 1.0) * (f - jax.lax.stop_gradient(f))


def test_emulator_variant_on_lorenz96():
    p = get_problem("lorenz96")
    states = p.prior.sample(jax.random.key(0), (N_EVENTS,))
    r = emulator_jacobian_calibration(_ScaledStep(p.forward, jnp.asarray(1.0)), p.forward, states, jax.random.key(1),
                                      FAST)
    assert r.passed and r.name == "emulator_jacobian" and r.statistic < 1e-12
    assert r.details["n_states"] == N_EVENTS
    r = emulator_jacobian_calibration(_ScaledStep(p.forward, jnp.asarray(1.2)), p.forward, states, jax.random.key(1),
                                      FAST)
    assert not r.passed and r.statistic == pytest.approx(0.2, rel=1e-9)
    with pytest.raises(ValueError, match="`states`"):
        emulator_jacobian_calibration(p.forward, p.forward, states[0], jax.random.key(1))


def test_kalman_reference_is_the_kalman_gain(lg):
    from vardax_core.gates._common import FAST_COMPILE_OPTIONS

    x, y, mask = lg.simulate(jax.random.key(9), 1)
    dy = jax.random.normal(jax.random.key(1), y[0].shape)
    dx = jnp.arange(10.0)

    def products(ref, y, mask, dy, dx):
        jvp, vjp = ref.operator(y, mask, None)
        return jvp(dy), vjp(dx), kalman_gain(ref.problem, mask)

    jv, vj, K = eqx.filter_jit(products, compiler_options=FAST_COMPILE_OPTIONS)(KalmanReference(lg), y[0], mask[0],
                                                                                 dy, dx)
    K = np.asarray(K)
    np.testing.assert_allclose(jv, K @ np.asarray(dy).ravel(), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(vj).ravel(), K.T @ np.asarray(dx), rtol=1e-12)


def test_posterior_reference_regates_one_model_against_another(exact, lg, events):
    from vardax_core.gates import PosteriorReference

    y, mask = events
    ref = PosteriorReference(exact, lg.state_shape)
    r = adjoint_calibration(ScaledJacobian(exact, jnp.asarray(1.2)), y[:N_EVENTS], mask[:N_EVENTS], ref,
                            jax.random.key(0), FAST)
    assert not r.passed and r.statistic == pytest.approx(0.2, rel=1e-9)


@pytest.mark.parametrize("hessian", ["gauss-newton", "exact"])
def test_oracle_reference_is_wired_to_the_oracle_sensitivity(lg, hessian):
    """``run_gates``' default reference (the oracle's implicit-function ∂x*/∂y at x*) agrees
    with the Kalman gain on linear_gaussian, in both directions, with either Hessian (a
    linear window has no residual curvature)."""
    from vardax_core.gates import OracleReference
    from vardax_core.gates._common import FAST_COMPILE_OPTIONS
    from vardax_core.problems import batched_linear_gaussian_posterior

    x, y, mask = lg.simulate(jax.random.key(4), 3)
    x_star, _ = batched_linear_gaussian_posterior(lg, y, mask)
    dy = jax.random.normal(jax.random.key(1), y.shape)
    dx = jax.random.normal(jax.random.key(2), x.shape)

    def products(ref, y, mask, aux, dy, dx):
        jvp, vjp = ref.operator(y, mask, aux)
        return jvp(dy), vjp(dx)

    both = eqx.filter_jit(jax.vmap(products, in_axes=(None, 0, 0, 0, 0, 0)),
                          compiler_options=FAST_COMPILE_OPTIONS)
    o_jvp, o_vjp = both(OracleReference(lg, hessian), y, mask, x_star, dy, dx)
    k_jvp, k_vjp = both(KalmanReference(lg), y, mask, x_star, dy, dx)
    np.testing.assert_allclose(o_jvp, k_jvp, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(o_vjp, k_vjp, rtol=1e-7, atol=1e-9)
    dense = eqx.filter_jit(jax.vmap(lambda ref, *a: ref.matrix(*a)[0], in_axes=(None, 0, 0, 0)),
                           compiler_options=FAST_COMPILE_OPTIONS)
    np.testing.assert_allclose(dense(OracleReference(lg, hessian), y, mask, x_star),
                               dense(KalmanReference(lg), y, mask, x_star), rtol=1e-7, atol=1e-9)


def test_mcmc_reference_checks_its_arrays(exact, lg, events):
    from vardax_core.gates import MCMCReference

    y, mask = events
    ref = MCMCReference(lg.state_shape)
    J = np.zeros((4, *lg.state_shape, *y.shape[1:]))
    with pytest.raises(ValueError, match="`aux` must be the pair"):
        adjoint_calibration(exact, y[:4], mask[:4], ref, jax.random.key(0))
    with pytest.raises(ValueError, match="`aux` jacobian"):
        adjoint_calibration(exact, y[:4], mask[:4], ref, jax.random.key(0), aux=(J[:, :1], J))
    with pytest.raises(ValueError, match="frobenius"):
        adjoint_calibration(exact, y[:4], mask[:4], ref, jax.random.key(0), FAST.replace(adjoint_statistic="operator-norm"),
                            aux=(J, J))
