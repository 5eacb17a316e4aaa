"""Problem bundle, registry, simulation, 4DVar cost and the closed-form posterior."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import rel_err, tree_allclose
from vardax_core.problems import (
    batched_linear_gaussian_posterior,
    get_problem,
    kalman_gain,
    linear_gaussian_posterior,
    list_problems,
    problem_defaults,
    problem_from_config,
    window_matrix,
)

EXPECTED_LAYOUT = {
    "linear_gaussian": ((10,), (5, 5)),
    "linear_gaussian_2d": ((32, 32), (2, 16, 16)),
    "lorenz63": ((3,), (5, 3)),
    "lorenz96": ((40,), (5, 20)),
}


def test_registry_has_the_builtin_problems():
    assert set(EXPECTED_LAYOUT) <= set(list_problems())


@pytest.mark.parametrize("name", sorted(EXPECTED_LAYOUT))
def test_simulate_shapes_dtypes_and_determinism(problems, name):
    p = problems[name]
    state, yshape = EXPECTED_LAYOUT[name]
    x, y, mask = p.simulate(jax.random.key(0), 6)
    assert x.shape == (6, *state) and x.dtype == jnp.float64
    assert y.shape == (6, *yshape) and y.dtype == jnp.float64
    assert mask.shape == y.shape and mask.dtype == jnp.bool_
    assert p.state_shape == state and p.y_shape == yshape
    x2, y2, mask2 = p.simulate(jax.random.key(0), 6)
    assert np.array_equal(x, x2) and np.array_equal(np.asarray(y), np.asarray(y2), equal_nan=True)
    assert np.array_equal(mask, mask2)
    x3, _, _ = p.simulate(jax.random.key(1), 6)
    assert not np.allclose(x, x3)
    assert bool(jnp.all(jnp.isfinite(jnp.where(mask, y, 0.0))))
    assert bool(jnp.all(jnp.isfinite(x)))


def test_simulate_event_numbering_is_chunk_independent(problems):
    p = problems["lorenz96"]
    x_all, y_all, _ = p.simulate(jax.random.key(5), 8)
    x_tail, y_tail, _ = p.simulate(jax.random.key(5), 3, start=5)
    np.testing.assert_allclose(x_tail, x_all[5:], rtol=0, atol=1e-13)
    np.testing.assert_allclose(y_tail, y_all[5:], rtol=0, atol=1e-12)


def test_observations_equal_window_plus_noise(problems):
    p = problems["lorenz96"]
    x, y, mask = p.simulate(jax.random.key(2), 500)
    g = jax.vmap(p.window)(x)
    r = np.asarray(y - g)
    # residuals are the N(0, 1) noise: sample std within 5 standard errors of 1
    n = r.size
    assert abs(r.std() - 1.0) < 5 / np.sqrt(2 * n)
    assert abs(r.mean()) < 5 / np.sqrt(n)


def test_missing_fraction_masks_with_nan():
    p = get_problem("lorenz96", missing_fraction=0.3)
    x, y, mask = p.simulate(jax.random.key(0), 200)
    frac = 1 - float(mask.mean())
    assert abs(frac - 0.3) < 5 * np.sqrt(0.3 * 0.7 / mask.size)
    assert bool(jnp.all(jnp.isnan(y[~mask])))
    assert bool(jnp.all(jnp.isfinite(y[mask])))


def test_window_schedule_matches_trajectory(problems):
    p = problems["lorenz96"]
    x0 = p.prior.mean
    traj = p.trajectory(x0)
    assert traj.shape == (p.n_steps + 1, 40)
    g = p.window(x0)
    for t, s in enumerate(p.obs_steps):
        np.testing.assert_array_equal(g[t], traj[s][::2])


def test_cost_matches_hand_computation(problems):
    p = problems["lorenz96"]
    x, y, mask = p.simulate(jax.random.key(3), 1)
    x0 = x[0] + 0.1
    d = np.asarray(x0 - p.prior.mean)
    B = np.asarray(p.prior.cov.as_matrix())
    r = np.where(mask[0], np.asarray(y[0]) - np.asarray(p.window(x0)), 0.0)
    ref = 0.5 * d @ np.linalg.solve(B, d) + 0.5 * np.sum(r**2)  # noise std 1
    np.testing.assert_allclose(float(p.cost(x0, y[0], mask[0])), ref, rtol=1e-11)


def test_registry_overrides_config_and_hash():
    a = get_problem("lorenz96")
    b = get_problem("lorenz96", noise_std=0.5)
    c = get_problem("lorenz96")
    assert a.hash == c.hash and a.hash != b.hash
    assert b.config["noise_std"] == 0.5 and b.config["name"] == "lorenz96"
    assert problem_from_config(b.config).hash == b.hash
    assert problem_defaults("lorenz96")["n"] == 40
    with pytest.raises(ValueError, match="unknown problem 'nope'"):
        get_problem("nope")
    with pytest.raises(ValueError, match="no parameter.*bogus"):
        get_problem("lorenz96", bogus=1)
    with pytest.raises(ValueError, match="observation"):
        get_problem("lorenz96", observation="radar")


def test_with_forward_swaps_only_the_model(problems):
    from vardax_core.problems import Lorenz96

    p = problems["lorenz96"]
    q = p.with_forward(Lorenz96(forcing=9.0))
    assert q.forward.forcing == 9.0 and q.obs_steps == p.obs_steps
    assert tree_allclose(q.prior, p.prior, rtol=0, atol=0) and tree_allclose(q.obs_op, p.obs_op)
    with pytest.raises(ValueError, match="forward"):
        p.with_forward(Lorenz96(n=10))


# ---- the closed-form posterior -------------------------------------------------------------

@pytest.mark.parametrize("name", ["linear_gaussian", "linear_gaussian_2d"])
def test_closed_form_matches_kalman_form(problems, name):
    """P = (B⁻¹ + GᵀR⁻¹G)⁻¹ against the observation-space (Kalman) form
    B − BGᵀ(GBGᵀ + R)⁻¹GB over the observed rows only, with a random mask."""
    p = problems[name]
    x, y, mask = p.simulate(jax.random.key(4), 2)
    mask = mask.at[:, 0].set(False)  # drop a whole time of observations
    mean, P = linear_gaussian_posterior(p, y[1], mask[1])
    G = np.asarray(window_matrix(p))
    keep = np.asarray(mask[1]).reshape(-1)
    Go = G[keep]
    B = np.asarray(p.prior.cov.as_matrix())
    R = np.diag(np.broadcast_to(np.asarray(p.noise.std) ** 2, p.y_shape).reshape(-1)[keep])
    K = B @ Go.T @ np.linalg.inv(Go @ B @ Go.T + R)
    xb = np.asarray(p.prior.mean).reshape(-1)
    ref_mean = xb + K @ (np.asarray(y[1]).reshape(-1)[keep] - Go @ xb)
    ref_P = B - K @ Go @ B
    assert rel_err(np.asarray(mean).reshape(-1), ref_mean) <= 1e-10
    assert rel_err(P, ref_P) <= 1e-10
    gain = np.asarray(kalman_gain(p, mask[1]))
    assert np.all(gain[:, ~keep] == 0)
    assert rel_err(gain[:, keep], K) <= 1e-10
    means, Ps = batched_linear_gaussian_posterior(p, y, mask)
    assert rel_err(means[1], mean) <= 1e-13 and rel_err(Ps[1], P) <= 1e-13


def test_closed_form_refuses_nonlinear_problems(problems):
    p = problems["lorenz96"]
    _, y, mask = p.simulate(jax.random.key(0), 1)
    with pytest.raises(ValueError, match="linear"):
        linear_gaussian_posterior(p, y[0], mask[0])


# ---- bad input -------------------------------------------------------------------------------

def test_check_observations_errors(problems):
    p = problems["lorenz96"]
    _, y, mask = p.simulate(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=r"`y` must have shape \(\*, 5, 20\)"):
        p.check_observations(y[:, :, :10], mask)
    with pytest.raises(ValueError, match="`mask` must have shape"):
        p.check_observations(y, mask[:, :4])
    with pytest.raises(ValueError, match="`mask` must be a boolean"):
        p.check_observations(y, mask.astype(jnp.float32))
    bad = y.at[1, 2, 3].set(jnp.nan)
    with pytest.raises(ValueError, match="non-finite value.*observed positions"):
        p.check_observations(bad, mask)
    # NaN at an unobserved position is fine
    ok_mask = mask.at[1, 2, 3].set(False)
    p.check_observations(bad, ok_mask)


def test_check_observations_under_jit(problems):
    p = problems["lorenz96"]
    _, y, mask = p.simulate(jax.random.key(0), 2)
    f = jax.jit(lambda y, m: p.check_observations(y, m)[0].sum())
    f(y.at[0, 0, 0].set(0.0), mask)
    with pytest.raises(Exception, match="non-finite"):
        f(y.at[0, 0, 0].set(jnp.inf), mask).block_until_ready()


def test_problem_validation():
    with pytest.raises(ValueError, match="obs_steps"):
        get_problem("lorenz96", n_steps=4, obs_every=5)
    with pytest.raises(ValueError, match="missing_fraction"):
        get_problem("lorenz96", missing_fraction=1.0)
    with pytest.raises(ValueError, match="n"):
        get_problem("lorenz96").simulate(jax.random.key(0), 0)


@pytest.mark.parametrize("name", ["linear_gaussian"])
def test_exact_posterior_object(problems, name):
    from vardax_core.problems import ExactLinearGaussianPosterior

    p = problems[name]
    exact = ExactLinearGaussianPosterior(p)
    x, y, mask = p.simulate(jax.random.key(6), 4)
    mask = mask.at[2, 1].set(False)
    means, Ps = batched_linear_gaussian_posterior(p, y, mask)
    assert rel_err(exact(y, mask), means) <= 1e-12
    post = exact.posterior(y, mask)
    assert rel_err(post.covariance(), Ps) <= 1e-11
    # Jacobian of the mean map is the Kalman gain
    J = jax.jacfwd(lambda yy: exact(yy[None], mask[2:3])[0])(y[2])
    K = kalman_gain(p, mask[2])
    assert rel_err(J.reshape(K.shape), K) <= 1e-11
    # log_prob is the Gaussian density
    import scipy.stats

    lp = exact.log_prob(x, y, mask)
    ref = [scipy.stats.multivariate_normal(np.asarray(means[i]), np.asarray(Ps[i])).logpdf(np.asarray(x[i])) for i in range(4)]
    np.testing.assert_allclose(lp, ref, rtol=1e-10)
    draws = exact.sample(y, mask, jax.random.key(0), 20_000)
    assert draws.shape == (4, 20_000, 10)
    emp = np.cov(np.asarray(draws[0]), rowvar=False)
    C = np.asarray(Ps[0])
    se = np.sqrt((np.outer(np.diag(C), np.diag(C)) + C**2) / 20_000)
    assert np.max(np.abs(emp - C) / se) < 5
