"""On linear-Gaussian problems the oracle is exact: mean, covariance and ∂x*/∂y equal
the closed form (float64, ≤ 1e-8 relative), with masks respected."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import rel_err
from tests.oracle._shared import INCREMENTAL_EXACT, LG_EVENTS, STRONG_EXACT, lg_problem
from vardax_core.oracle import (
    laplace_covariance,
    laplace_posterior,
    sensitivity_jvp,
    sensitivity_vjp,
)
from vardax_core.problems import batched_linear_gaussian_posterior, get_problem, kalman_gain, window_matrix

TOL = 1e-8
SOLVERS = {"strong": STRONG_EXACT, "incremental": INCREMENTAL_EXACT}


@pytest.fixture(scope="module")
def lg1():
    """1D ring, 20% of the observations missing (masks differ from event to event)."""
    p = lg_problem()
    x, y, mask = p.simulate(jax.random.key(0), LG_EVENTS)
    mean, cov = batched_linear_gaussian_posterior(p, y, mask)
    return p, x, y, mask, mean, cov


@pytest.mark.parametrize("name", list(SOLVERS))
def test_1d_mean_and_covariance_are_the_closed_form(lg1, name):
    p, _, y, mask, mean, cov = lg1
    res = SOLVERS[name].solve(p, y, mask)
    assert bool(jnp.all(res.converged)), res.summary()
    assert rel_err(res.x, mean) <= TOL
    dense = laplace_posterior(p, res.x, y, mask, method="dense")
    assert dense.cov_kind == "dense" and rel_err(dense.covariance(), cov) <= TOL
    lowrank = laplace_posterior(p, res.x, y, mask, method="lowrank")
    assert rel_err(lowrank.std, jnp.sqrt(jax.vmap(jnp.diag)(cov))) <= TOL
    assert rel_err(laplace_covariance(p, res.x, y, mask).as_matrix(), cov) <= TOL


def test_lowrank_covariance_draws_and_truncation(lg1):
    p, _, y, mask, mean, cov = lg1
    op = laplace_covariance(p, mean, y, mask)
    draws = op.sample(jax.random.key(7), 20_000)  # zero-mean draws from N(0, P)
    emp = jnp.einsum("bsi,bsj->bij", draws, draws) / draws.shape[1]
    assert rel_err(emp, cov) <= 0.03  # Monte Carlo error ~ 1/sqrt(20000) per entry
    # a truncated rank keeps the leading data directions: std between exact and prior
    exact = laplace_posterior(p, mean, y, mask, method="lowrank").std
    trunc = laplace_posterior(p, mean, y, mask, method="lowrank", rank=3)
    assert trunc.provenance["rank"] == 3 and not trunc.provenance["full_rank"]
    prior_std = jnp.sqrt(p.prior.cov.variance())
    assert bool(jnp.all(trunc.std >= exact - 1e-12)) and bool(jnp.all(trunc.std <= prior_std + 1e-12))
    assert rel_err(trunc.std, exact) > 1e-6
    with pytest.raises(ValueError, match="rank"):
        laplace_posterior(p, mean, y, mask, method="dense", rank=3)


def test_incremental_solves_a_linear_problem_in_one_outer_iteration(lg1):
    p, _, y, mask, mean, _ = lg1
    res = SOLVERS["incremental"].solve(p, y, mask)
    assert np.all(np.asarray(res.iterations) == 1)


def _dense_sensitivity(p, x_star, y, mask):
    """∂x*/∂y from the sensitivity jvp (columns) and vjp (rows), (n_state, n_obs) each."""
    eye_obs = jnp.eye(p.n_obs).reshape(p.n_obs, *p.y_shape)
    eye_state = jnp.eye(p.n_state).reshape(p.n_state, *p.state_shape)
    kj = jax.jit(jax.vmap(lambda dy: sensitivity_jvp(p, x_star, y, mask, dy, rtol=1e-13)))(eye_obs)
    kv = jax.jit(jax.vmap(lambda dx: sensitivity_vjp(p, x_star, y, mask, dx, rtol=1e-13)))(eye_state)
    return kj.reshape(p.n_obs, -1).T, kv.reshape(p.n_state, -1)


def test_1d_sensitivity_is_the_kalman_gain_and_respects_the_mask(lg1):
    p, _, y, mask, mean, _ = lg1
    K = kalman_gain(p, mask[0])
    kj, kv = _dense_sensitivity(p, mean[0], y[0], mask[0])
    assert rel_err(kj, K) <= TOL and rel_err(kv, K) <= TOL
    unobserved = ~np.asarray(mask[0]).reshape(-1)
    assert unobserved.any()
    assert np.all(np.asarray(kv)[:, unobserved] == 0.0)  # vjp: exactly zero at masked slots
    # jvp ignores whatever sits at unobserved slots (NaN included)
    dy = jax.random.normal(jax.random.key(1), p.y_shape)
    junk = jnp.where(mask[0], dy, jnp.nan)
    jvp = jax.jit(lambda d: sensitivity_jvp(p, mean[0], y[0], mask[0], d))
    np.testing.assert_array_equal(jvp(junk), jvp(jnp.where(mask[0], dy, 0)))


def test_1d_values_at_masked_slots_change_nothing(lg1):
    p, _, y, mask, mean, _ = lg1
    y_other = jnp.where(mask, y, 1e6)  # finite garbage at unobserved slots
    for solver in (SOLVERS["strong"], SOLVERS["incremental"]):
        a, b = solver.solve(p, y, mask), solver.solve(p, y_other, mask)
        np.testing.assert_array_equal(a.x, b.x)
    # and the mask does matter: observing everything gives another answer
    full = jnp.ones_like(mask)
    assert rel_err(SOLVERS["strong"].solve(p, jnp.where(mask, y, 0.0), full).x, mean) > 1e-3


def test_1d_sensitivity_is_jittable_and_vmappable(lg1):
    p, _, y, mask, mean, _ = lg1
    dy = jax.random.normal(jax.random.key(2), y.shape)
    f = jax.jit(jax.vmap(lambda *a: sensitivity_jvp(p, *a)))
    got = f(mean, y, mask, dy)
    for e in range(y.shape[0]):
        K = kalman_gain(p, mask[e])
        np.testing.assert_allclose(got[e], K @ jnp.where(mask[e], dy[e], 0).reshape(-1), rtol=1e-8, atol=1e-12)


@pytest.fixture(scope="module")
def lg2():
    """The 2D problem on a 16 × 16 grid (256 states, 2 × 8 × 8 observations, 10% missing):
    the same code paths as the default 32 × 32 (low-rank Laplace, no background
    preconditioner, matrix-free sensitivity) at a quarter of the size."""
    p = get_problem("linear_gaussian_2d", height=16, width=16, length_scale=2.0, missing_fraction=0.1)
    x, y, mask = p.simulate(jax.random.key(3), 1)
    mean, cov = batched_linear_gaussian_posterior(p, y, mask)
    w = jnp.where(mask[0], 1.0 / p.noise.std**2, 0.0).reshape(-1)
    gain = cov[0] @ (window_matrix(p).T * w)  # the Kalman gain P Gᵀ W
    return p, y, mask, mean, cov, gain


@pytest.mark.slow
def test_2d_both_solvers_mean_covariance_and_sensitivity_are_the_closed_form(lg2):
    p, y, mask, mean, cov, K = lg2
    assert np.any(~np.asarray(mask))
    for name in ("strong", "incremental"):
        res = SOLVERS[name].solve(p, y, mask)
        assert bool(jnp.all(res.converged)), (name, res.summary())
        assert rel_err(res.x, mean) <= TOL, name
    # covariance: low-rank Laplace (the 2D default), exact std and the matrix-free operator
    post = laplace_posterior(p, res.x, y, mask)
    assert post.provenance["method"] == "laplace-lowrank" and post.provenance["full_rank"]
    sd = jnp.sqrt(jax.vmap(jnp.diag)(cov)).reshape(post.std.shape)
    assert rel_err(post.std, sd) <= TOL
    op = laplace_covariance(p, res.x, y, mask)
    probes = jax.random.normal(jax.random.key(4), (8, 1, *p.state_shape))
    for v in probes:
        assert rel_err(op.mv(v), jnp.einsum("bij,bj->bi", cov, v.reshape(1, -1)).reshape(v.shape)) <= TOL
    # sensitivity against the Kalman gain, by probing (no dense Jacobian on this size)
    dy = jax.random.normal(jax.random.key(5), p.y_shape)
    dx = jax.random.normal(jax.random.key(6), p.state_shape)
    jv = jax.jit(lambda d: sensitivity_jvp(p, mean[0], y[0], mask[0], d, rtol=1e-13))(dy)
    vj = jax.jit(lambda d: sensitivity_vjp(p, mean[0], y[0], mask[0], d, rtol=1e-13))(dx)
    assert rel_err(jv.reshape(-1), K @ jnp.where(mask[0], dy, 0).reshape(-1)) <= TOL
    assert rel_err(vj.reshape(-1), K.T @ dx.reshape(-1)) <= TOL
    assert np.all(np.asarray(vj)[~np.asarray(mask[0])] == 0.0)
