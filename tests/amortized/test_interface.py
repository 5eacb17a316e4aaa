"""The AmortizedPosterior interface: shapes, dtypes, jit, derivatives, input checks,
config validation — on small untrained models of every head (fast)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vardax_core import Posterior
from vardax_core.amortized import AmortizedPosterior, build_posterior
from vardax_core.problems import ExactLinearGaussianPosterior, get_problem

SMALL = {
    "gaussian-full": {"encoder": {"type": "mlp", "features": 16, "width": 32}, "head": {"type": "gaussian", "covariance": "full", "width": 16}},
    "gaussian-lowrank": {"encoder": {"type": "mlp", "features": 16, "width": 32}, "head": {"type": "gaussian", "covariance": "lowrank", "rank": 3, "width": 16}},
    "gaussian-diag": {"encoder": {"type": "identity"}, "head": {"type": "gaussian", "covariance": "diag", "width": 16}},
    "flow-coupling": {"encoder": {"type": "mlp", "features": 16, "width": 32}, "head": {"type": "flow", "flow_layers": 2, "nn_width": 16, "precond_width": 16}},
    "flow-maf": {"encoder": {"type": "mlp", "features": 16, "width": 32}, "head": {"type": "flow", "flow": "maf", "transformer": "affine", "flow_layers": 2, "nn_width": 16, "precond_width": 16, "precond_covariance": "diag"}},
    "score": {"encoder": {"type": "mlp", "features": 16, "width": 32}, "head": {"type": "score", "width": 16, "depth": 1, "precond_width": 16, "sample_steps": 10}},
}


@pytest.fixture(scope="module")
def lg():
    return get_problem("linear_gaussian", missing_fraction=0.2)


@pytest.fixture(scope="module")
def events(lg):
    return lg.simulate(jax.random.key(3), 4)


@pytest.fixture(scope="module", params=sorted(SMALL))
def model(request, lg):
    return request.param, build_posterior(lg, SMALL[request.param], jax.random.key(1))


def test_shapes_dtypes_and_container(model, events, lg):
    name, post = model
    x, y, mask = events
    assert isinstance(post, AmortizedPosterior) and post.has_density
    point = post(y, mask)
    assert point.shape == (4, 10) and point.dtype == jnp.float64
    draws = post.sample(y, mask, jax.random.key(0), 5)
    assert draws.shape == (4, 5, 10) and draws.dtype == jnp.float64
    lp = post.log_prob(x, y, mask)
    assert lp.shape == (4,) and lp.dtype == jnp.float64 and bool(jnp.all(jnp.isfinite(lp)))
    pst = post.posterior(y, mask, jax.random.key(0), n_samples=3)
    assert isinstance(pst, Posterior) and pst.samples.shape == (4, 3, 10)
    np.testing.assert_array_equal(pst.mean, point)
    assert pst.provenance["method"] == "amortized"
    kind = {"gaussian-full": "dense", "gaussian-lowrank": "lowrank", "gaussian-diag": "diag"}.get(name, "none")
    assert pst.cov_kind == kind
    if kind == "none":
        assert pst.std.shape == (4, 10)
    assert post.posterior(y, mask).samples is None
    # legacy uint32 keys are accepted and give the same draws as the wrapped key
    np.testing.assert_array_equal(
        post.sample(y, mask, jax.random.PRNGKey(0), 2), post.sample(y, mask, jax.random.wrap_key_data(jax.random.PRNGKey(0)), 2)
    )


def test_jit_and_batch_consistency(model, events):
    name, post = model
    x, y, mask = events
    # the model as a jit argument (eqx.filter_jit) or closed over (jax.jit)
    np.testing.assert_allclose(eqx.filter_jit(lambda p, a, b: p(a, b))(post, y, mask), post(y, mask), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jax.jit(lambda a, b, c: post.log_prob(a, b, c))(x, y, mask), post.log_prob(x, y, mask), rtol=1e-5, atol=1e-5)
    # each event is processed independently of the others in the batch
    np.testing.assert_allclose(post(y[1:3], mask[1:3]), post(y, mask)[1:3], rtol=1e-6, atol=1e-6)
    s = jax.jit(lambda k: post.sample(y, mask, k, 3))(jax.random.key(4))
    assert s.shape == (4, 3, 10)


def test_point_estimate_is_differentiable_in_y(model, events):
    """jvp and vjp of the point estimate w.r.t. y exist, are finite, vanish at missing
    positions and are adjoint to each other (what the adjoint-calibration gate probes)."""
    name, post = model
    x, y, mask = events
    f = lambda yy: post(yy, mask)  # noqa: E731
    v = jnp.where(mask, jax.random.normal(jax.random.key(5), y.shape), 0.0)
    w = jax.random.normal(jax.random.key(6), (4, 10))
    y0 = jnp.where(mask, y, 0.0)
    _, jv = jax.jvp(f, (y0,), (v,))
    _, vjp = jax.vjp(f, y0)
    (jtw,) = vjp(w)
    assert bool(jnp.all(jnp.isfinite(jv))) and bool(jnp.all(jnp.isfinite(jtw)))
    np.testing.assert_allclose(jnp.vdot(jv, w), jnp.vdot(v, jtw), rtol=1e-4)
    assert float(jnp.max(jnp.abs(jnp.where(mask, 0.0, jtw)))) == 0.0
    # NaN at missing positions (the simulated convention) does not leak into derivatives
    _, vjp_nan = jax.vjp(f, y)
    assert bool(jnp.all(jnp.isfinite(vjp_nan(w)[0])))
    # finite differences agree with the jvp
    eps = 1e-3
    fd = (f(y0 + eps * v) - f(y0 - eps * v)) / (2 * eps)
    np.testing.assert_allclose(fd, jv, rtol=2e-2, atol=2e-3)


def test_gaussian_head_density_is_its_covariance(events, lg):
    post = build_posterior(lg, SMALL["gaussian-full"], jax.random.key(2))
    x, y, mask = events
    pst = post.posterior(y, mask)
    from jax.scipy.stats import multivariate_normal

    lp = jax.vmap(multivariate_normal.logpdf)(x, pst.mean, pst.covariance())
    np.testing.assert_allclose(post.log_prob(x, y, mask), lp, rtol=1e-4)
    draws = post.sample(y, mask, jax.random.key(1), 4000)
    np.testing.assert_allclose(jnp.cov(draws[0].T), pst.covariance()[0], atol=0.15 * float(jnp.max(pst.covariance()[0])))


def test_same_interface_as_the_exact_posterior(events, lg):
    """The exact posterior and an amortized one answer the same calls with the same shapes."""
    x, y, mask = events
    exact = ExactLinearGaussianPosterior(lg)
    post = build_posterior(lg, SMALL["gaussian-full"], jax.random.key(2))
    for ref, q in ((exact(y, mask), post(y, mask)), (exact.log_prob(x, y, mask), post.log_prob(x, y, mask)),
                   (exact.sample(y, mask, jax.random.key(0), 3), post.sample(y, mask, jax.random.key(0), 3))):
        assert ref.shape == q.shape and ref.dtype == q.dtype


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda y, m, x: (y[:, :, :3], m[:, :, :3], x), "`y` must have shape"),
        (lambda y, m, x: (y[0], m[0], x), "`y` must have shape"),
        (lambda y, m, x: (y, m[:, :4], x), "`mask` must have shape"),
        (lambda y, m, x: (y, m.astype(jnp.float32), x), "`mask` must be a boolean"),
        (lambda y, m, x: (y.at[0, 0, 0].set(jnp.nan), m.at[0, 0, 0].set(True), x), "non-finite value"),
        (lambda y, m, x: (y.at[1, 2, 3].set(jnp.inf), m.at[1, 2, 3].set(True), x), "non-finite value"),
    ],
)
def test_bad_observations_are_refused(events, lg, mutate, match):
    post = build_posterior(lg, SMALL["gaussian-diag"], jax.random.key(2))
    x, y, mask = events
    yb, mb, xb = mutate(y, mask, x)
    with pytest.raises(ValueError, match=match):
        post(yb, mb)
    with pytest.raises(ValueError, match=match):
        post.sample(yb, mb, jax.random.key(0), 2)
    with pytest.raises(ValueError, match=match):
        post.log_prob(xb[: yb.shape[0]] if yb.ndim == 3 else xb, yb, mb)
    with pytest.raises(ValueError, match=match):
        post.posterior(yb, mb)


def test_bad_states_keys_and_counts_are_refused(events, lg):
    post = build_posterior(lg, SMALL["gaussian-diag"], jax.random.key(2))
    x, y, mask = events
    with pytest.raises(ValueError, match="`x` must have shape"):
        post.log_prob(x[:2], y, mask)
    with pytest.raises(ValueError, match="`x` must have shape"):
        post.log_prob(x[:, :5], y, mask)
    with pytest.raises(ValueError, match="`x` has non-finite"):
        post.log_prob(x.at[0, 0].set(jnp.nan), y, mask)
    with pytest.raises(ValueError, match="number of draws"):
        post.sample(y, mask, jax.random.key(0), 0)
    with pytest.raises(ValueError, match="PRNG key"):
        post.sample(y, mask, jnp.zeros(3), 2)
    with pytest.raises(ValueError, match="needs a `key`"):
        post.posterior(y, mask, n_samples=2)


def test_nonfinite_observation_is_caught_under_jit(events, lg):
    post = build_posterior(lg, SMALL["gaussian-diag"], jax.random.key(2))
    x, y, mask = events
    bad = y.at[0, 0, 0].set(jnp.nan)
    with pytest.raises(Exception, match="non-finite"):
        jax.block_until_ready(jax.jit(lambda a, b: post(a, b))(bad, mask.at[0, 0, 0].set(True)))


@pytest.mark.parametrize(
    "config,match",
    [
        ({"head": {"type": "regression"}}, "unknown head type"),
        ({"encoder": {"type": "transformer"}}, "unknown encoder type"),
        ({"head": {"type": "gaussian", "covariance": "block"}}, "`covariance` must be"),
        ({"head": {"type": "gaussian", "widht": 3}}, "unknown key"),
        ({"head": {"type": "gaussian", "width": 0}}, "`width` must be an integer"),
        ({"head": {"type": "flow", "flow": "nsf"}}, "`flow` must be"),
        ({"head": {"type": "flow", "interval": -1}}, "`interval` must be > 0"),
        ({"head": {"type": "score", "beta_max": 0.01}}, "beta_max > beta_min"),
        ({"encoder": {"type": "conv2d"}}, "needs image observations"),
        ({"encoder": {"type": "conv1d", "kernel": 4}}, "must be odd"),
        ({"dtype": "float16"}, "`dtype` must be"),
        ({"optimizer": "sgd"}, "unknown key"),
    ],
)
def test_bad_configs_are_refused(lg, config, match):
    with pytest.raises(ValueError, match=match):
        build_posterior(lg, config, jax.random.key(0))


def test_config_is_json_and_complete(lg):
    import json

    post = build_posterior(lg, {"head": {"type": "flow"}}, jax.random.key(0))
    cfg = json.loads(json.dumps(post.config))
    assert cfg["problem_hash"] == lg.hash and cfg["problem"]["name"] == "linear_gaussian"
    assert cfg["head"]["type"] == "flow" and cfg["head"]["flow_layers"] == 6  # defaults filled in
    assert cfg["encoder"]["type"] == "mlp" and cfg["dtype"] == "float32" and cfg["format_version"] == 1
    assert cfg["layout"] == {"state_shape": [10], "obs_shape": [5], "n_times": 5}


def test_full_covariance_is_refused_for_large_states():
    p2 = get_problem("linear_gaussian_2d")
    with pytest.raises(ValueError, match="use 'lowrank' or 'diag'"):
        build_posterior(p2, {"encoder": {"type": "conv2d"}, "head": {"type": "gaussian", "covariance": "full"}}, jax.random.key(0))
