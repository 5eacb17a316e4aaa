"""The cycle driver on a linear-Gaussian twin: every exact method reproduces a textbook
Kalman filter written independently here, to round-off."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vardax_core.cycle import (
    Climatology, EnsembleKalmanFilter, FourDVar, IterativeEnsembleKalmanSmoother, KalmanFilter, OptimalInterpolation,
    TwinSetup, run_cycle,
)
from vardax_core.problems import get_problem

K = 40


@pytest.fixture(scope="module")
def twin():
    p = get_problem("linear_gaussian")
    setup = TwinSetup(p.forward, p.obs_op, p.noise, steps_per_cycle=2, n_cycles=K, burn_in=5, missing_fraction=0.2)
    x0 = p.prior.sample(jax.random.key(1))
    truth, y, mask = setup.simulate(x0, jax.random.key(2))
    P0 = np.asarray(p.prior.cov.as_matrix())
    return p, setup, truth, y, mask, P0


def textbook_kalman(M, H, r_var, P0, xb, y, mask):
    """x_f = M x_a, P_f = M P_a Mᵀ; gain form with the observed rows only and the
    Joseph update of P."""
    x, P = np.array(xb), np.array(P0)
    means, variances = [], []
    for yk, mk in zip(y, mask):
        x, P = M @ x, M @ P @ M.T
        idx = np.flatnonzero(mk.reshape(-1))
        Hk = H[idx]
        Rk = np.eye(idx.size) * r_var
        gain = P @ Hk.T @ np.linalg.inv(Hk @ P @ Hk.T + Rk)
        x = x + gain @ (yk.reshape(-1)[idx] - Hk @ x)
        IKH = np.eye(len(x)) - gain @ Hk
        P = IKH @ P @ IKH.T + gain @ Rk @ gain.T
        means.append(x)
        variances.append(np.diag(P))
    return np.array(means), np.array(variances)


def _reference(twin):
    p, setup, truth, y, mask, P0 = twin
    M = np.linalg.matrix_power(np.asarray(p.forward.as_matrix()), setup.steps_per_cycle)
    H = np.asarray(p.obs_op.as_matrix())
    return textbook_kalman(M, H, float(p.noise.std) ** 2, P0, np.asarray(p.prior.mean), np.asarray(y), np.asarray(mask))


def test_kalman_filter_reproduces_the_textbook_filter(twin):
    p, setup, truth, y, mask, P0 = twin
    assert 0 < np.mean(np.asarray(mask)) < 1  # gaps exercised
    res = run_cycle(setup, KalmanFilter(jnp.asarray(P0)), truth, y, mask, p.prior.mean, jax.random.key(3))
    means, variances = _reference(twin)
    np.testing.assert_allclose(res.analysis, means, rtol=0, atol=1e-8)
    np.testing.assert_allclose(res.spread_a, np.sqrt(variances.mean(axis=1)), rtol=0, atol=1e-8)
    s = res.summary(setup.burn_in)
    # the exact filter is calibrated: spread matches error, the truth is inside its 90 % intervals ~90 %
    assert 0.75 < s["spread_ratio"] < 1.35
    assert 0.8 < s["coverage_90"] < 0.97


def _exact_members(twin, N):
    """N members whose sample mean and covariance are exactly the prior's (x_b, P0)."""
    p, setup, truth, y, mask, P0 = twin
    Z = np.random.default_rng(0).standard_normal((N, setup.n_state))
    Z -= Z.mean(axis=0)
    Z = Z @ np.linalg.inv(np.linalg.cholesky(Z.T @ Z / (N - 1))).T  # sample covariance I
    return jnp.asarray(np.asarray(p.prior.mean) + Z @ np.linalg.cholesky(P0).T)


def test_square_root_enkf_is_the_kalman_filter_for_a_linear_model(twin):
    """N > n members whose sample moments are exactly (x_b, P0): the ETKF's sample mean
    and covariance follow the Kalman filter to round-off."""
    p, setup, truth, y, mask, P0 = twin
    N = setup.n_state + 6
    step = EnsembleKalmanFilter(N, initial_members=_exact_members(twin, N))
    res = run_cycle(setup, step, truth, y, mask, p.prior.mean, jax.random.key(3))
    means, variances = _reference(twin)
    np.testing.assert_allclose(res.analysis, means, rtol=0, atol=1e-8)
    np.testing.assert_allclose(res.spread_a, np.sqrt(variances.mean(axis=1)), rtol=0, atol=1e-8)


@pytest.mark.parametrize("lag", [1, 3])
def test_ienks_is_the_kalman_filter_for_a_linear_model(twin, lag):
    """The iEnKS's Gauss–Newton is exact in one iteration on a linear model, and its
    smoothed window start carried to now is the filter: with exact-moment members its
    analysis follows the Kalman filter to round-off for any window length."""
    p, setup, truth, y, mask, P0 = twin
    N = setup.n_state + 6
    step = IterativeEnsembleKalmanSmoother(N, lag=lag, initial_members=_exact_members(twin, N))
    res = run_cycle(setup, step, truth, y, mask, p.prior.mean, jax.random.key(3))
    means, variances = _reference(twin)
    np.testing.assert_allclose(res.analysis, means, rtol=0, atol=1e-8)
    np.testing.assert_allclose(res.spread_a, np.sqrt(variances.mean(axis=1)), rtol=0, atol=1e-8)


def test_oracle_3dvar_and_optimal_interpolation_agree(twin):
    """lag 0: the 4DVar oracle solving each analysis equals the closed-form static-B analysis."""
    p, setup, truth, y, mask, P0 = twin
    B = jnp.asarray(P0)
    oi = run_cycle(setup, OptimalInterpolation(B), truth, y, mask, p.prior.mean, jax.random.key(3))
    var = run_cycle(setup, FourDVar(B, lag=0), truth, y, mask, p.prior.mean, jax.random.key(3))
    np.testing.assert_allclose(var.analysis, oi.analysis, rtol=0, atol=1e-7)
    np.testing.assert_allclose(var.spread_a, oi.spread_a, rtol=0, atol=1e-8)


@pytest.mark.parametrize("lag", [1, 3])
def test_oracle_4dvar_window_is_the_windowed_closed_form(twin, lag):
    """lag L: each analysis is the exact posterior of the window start given the window's
    observations and N(M^s(previous start), B), carried to the current time."""
    p, setup, truth, y, mask, P0 = twin
    res = run_cycle(setup, FourDVar(jnp.asarray(P0), lag=lag), truth, y, mask, p.prior.mean, jax.random.key(3))
    s = setup.steps_per_cycle
    Ms = np.linalg.matrix_power(np.asarray(p.forward.as_matrix()), s)
    H = np.asarray(p.obs_op.as_matrix())
    B_inv = np.linalg.inv(P0)
    r_var = float(p.noise.std) ** 2
    Y, Mk = np.asarray(y), np.asarray(mask)
    start, start_time = np.asarray(p.prior.mean), 0
    for k in range(1, K + 1):
        if k - start_time > lag:  # slide the window by one cycle
            start, start_time = Ms @ start, start_time + 1
        cycles = range(start_time + 1, k + 1)
        G = np.concatenate([H @ np.linalg.matrix_power(Ms, c - start_time) for c in cycles])
        w = np.concatenate([Mk[c - 1].reshape(-1) / r_var for c in cycles])
        yy = np.concatenate([np.where(Mk[c - 1], Y[c - 1], 0.0).reshape(-1) for c in cycles])
        A = B_inv + G.T @ (w[:, None] * G)
        start = start + np.linalg.solve(A, G.T @ (w * (yy - G @ start)))
        now = np.linalg.matrix_power(Ms, k - start_time) @ start
        np.testing.assert_allclose(res.analysis[k - 1], now, rtol=0, atol=1e-7)


def test_climatology_ignores_the_observations(twin):
    p, setup, truth, y, mask, P0 = twin
    var = jnp.diagonal(jnp.asarray(P0))
    res = run_cycle(setup, Climatology(p.prior.mean, var), truth, y, mask, p.prior.mean, jax.random.key(0))
    np.testing.assert_allclose(res.analysis, np.broadcast_to(p.prior.mean, res.analysis.shape))


def test_bad_settings_and_inputs_are_refused_by_name(twin):
    from vardax_core.cycle import get_twin

    p, setup, truth, y, mask, P0 = twin
    l96 = get_twin("l96_full_dt005").setup(n_cycles=5, burn_in=0)
    with pytest.raises(ValueError, match="KalmanFilter needs a linear"):
        run_cycle(l96, KalmanFilter(jnp.eye(40)), jnp.zeros((6, 40)), jnp.zeros((5, 40)), jnp.ones((5, 40), bool),
                  jnp.zeros(40), jax.random.key(0))
    with pytest.raises(ValueError, match="`inflation` must be >= 1"):
        EnsembleKalmanFilter(10, inflation=0.9)
    with pytest.raises(ValueError, match="IterativeEnsembleKalmanSmoother: `lag` must be >= 1"):
        IterativeEnsembleKalmanSmoother(10, lag=0)
    with pytest.raises(ValueError, match="`initial_cov` must have shape"):
        run_cycle(setup, KalmanFilter(jnp.eye(3)), truth, y, mask, p.prior.mean, jax.random.key(0))
    with pytest.raises(ValueError, match="`y` must have shape"):
        run_cycle(setup, KalmanFilter(jnp.asarray(P0)), truth, y[1:], mask, p.prior.mean, jax.random.key(0))
    with pytest.raises(ValueError, match="non-finite values at observed positions"):
        run_cycle(setup, KalmanFilter(jnp.asarray(P0)), truth, jnp.where(mask, jnp.nan, y), mask, p.prior.mean,
                  jax.random.key(0))
    with pytest.raises(ValueError, match="`burn_in` must be in"):
        TwinSetup(p.forward, p.obs_op, p.noise, steps_per_cycle=1, n_cycles=5, burn_in=5)
