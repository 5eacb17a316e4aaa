"""RealtimeAnalysis: the single-event, ahead-of-time compiled path of an amortized posterior
agrees with the public batched path — for every head, with NaN at missing positions —
and its draws, argument errors and explicit ``check`` behave as documented. Small
untrained models on linear_gaussian, with every weight perturbed so that no part of a
head (flow conditioners, score network, zero-initialised output layers) is inert."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vardax_core.amortized import RealtimeAnalysis, build_posterior
from vardax_core.problems import get_problem

ENC = {"type": "mlp", "features": 16, "width": 32}
MODELS = {  # name → (config, tolerance of the agreement with the public path)
    "gaussian-full-f64": ({"encoder": ENC, "head": {"type": "gaussian", "covariance": "full", "width": 16},
                           "dtype": "float64"}, 1e-12),
    "gaussian-diag-f32": ({"encoder": {"type": "identity"}, "head": {"type": "gaussian", "covariance": "diag",
                                                                      "width": 16}}, 1e-5),
    "flow-f32": ({"encoder": ENC, "head": {"type": "flow", "flow_layers": 1, "nn_width": 16, "nn_depth": 1,
                                           "precond_width": 16}}, 1e-5),
    "score-f64": ({"encoder": ENC, "head": {"type": "score", "width": 16, "depth": 1, "precond_width": 16,
                                            "sample_steps": 5, "point_draws": 4}, "dtype": "float64"}, 1e-12),
}


def _perturbed(post, seed: int):
    """The model with N(0, 0.05²) added to every floating weight of encoder and head
    (drawn with NumPy on the host: no per-shape compilation)."""
    rng = np.random.default_rng(seed)

    def jiggle(a):
        if not eqx.is_inexact_array(a):
            return a
        return jnp.asarray(np.asarray(a) + 0.05 * rng.standard_normal(a.shape), dtype=a.dtype)

    return eqx.tree_at(lambda m: (m.encoder, m.head), post, jax.tree.map(jiggle, (post.encoder, post.head)))


@pytest.fixture(scope="module")
def lg():
    return get_problem("linear_gaussian", missing_fraction=0.3)


@pytest.fixture(scope="module")
def event(lg):
    _, y, mask = lg.simulate(jax.random.key(7), 1)
    y, mask = y[0], mask[0]
    assert bool(jnp.any(~mask)) and bool(jnp.all(jnp.isnan(jnp.where(mask, 0.0, y)) == ~mask))
    return y, mask  # NaN at the missing positions, as simulated


@pytest.fixture(scope="module")
def models(lg):
    """``get(name)`` → (perturbed model, tolerance), built once per module."""
    cache = {}

    def get(name):
        if name not in cache:
            config, tol = MODELS[name]
            cache[name] = _perturbed(build_posterior(lg, config, jax.random.key(1)), 2), tol
        return cache[name]

    return get


@pytest.mark.parametrize("name", sorted(MODELS))
def test_point_agrees_with_the_public_path(models, name, event):
    post, tol = models(name)
    y, mask = event
    rt = post.realtime()
    assert isinstance(rt, RealtimeAnalysis) and rt.draws == 0
    x = rt(y, mask)
    ref = post(y[None], mask[None])[0]
    assert x.shape == (10,) and x.dtype == jnp.float64
    np.testing.assert_allclose(x, ref, rtol=tol, atol=tol)
    # NaN at the missing positions gives what any other filler gives
    np.testing.assert_array_equal(rt(jnp.where(mask, y, 123.0), mask), x)
    assert bool(jnp.all(jnp.isfinite(x)))


# the Gaussian head draws in closed form, the flow through its transform; the score
# head's draws go through the same code and would add a slow reverse-SDE compilation
@pytest.mark.parametrize("name", ["gaussian-full-f64", "flow-f32"])
def test_draws_are_the_public_samples_of_a_folded_key(models, name, event):
    post, tol = models(name)
    y, mask = event
    key = jax.random.key(11)
    rt = post.realtime(draws=3, key=key)
    (x0, s0), (x1, s1) = rt(y, mask), rt(y, mask)
    assert rt.calls == 2 and s0.shape == (3, 10) and s0.dtype == jnp.float64
    np.testing.assert_allclose(x0, post(y[None], mask[None])[0], rtol=tol, atol=tol)
    np.testing.assert_array_equal(x0, x1)
    for i, s in enumerate((s0, s1)):
        ref = post.sample(y[None], mask[None], jax.random.fold_in(key, i), 3)[0]
        np.testing.assert_allclose(s, ref, rtol=tol, atol=tol)
    assert not np.allclose(s0, s1)  # fresh draws at every call, a function of (key, call index) only


@pytest.fixture(scope="module")
def small(lg):
    return build_posterior(lg, MODELS["gaussian-diag-f32"][0], jax.random.key(1))


@pytest.mark.parametrize("draws", [-1, 1.5, True, "2"])
def test_bad_draws_are_refused(small, draws):
    with pytest.raises(ValueError, match="`draws` must be a non-negative integer"):
        small.realtime(draws=draws, key=jax.random.key(0))


def test_draws_need_a_valid_key(small):
    with pytest.raises(ValueError, match="`key` is required"):
        small.realtime(draws=2)
    with pytest.raises(ValueError, match="`key` must be a PRNG key"):
        small.realtime(draws=2, key=jnp.zeros(3))
    small.realtime(draws=2, key=jax.random.PRNGKey(0))  # a legacy uint32 key is accepted


def test_check_validates_and_the_call_does_not(small, event):
    rt = small.realtime()
    y, mask = event
    for yb, mb, match in [
        (y[:, :3], mask, "`y` must have shape"),
        (y[None], mask[None], "`y` must have shape"),
        (y, mask[:, :3], "`mask` must have shape"),
        (y, mask.astype(jnp.float64), "`mask` must be a boolean"),
        (jnp.where(mask, y, 0.0).at[0, 0].set(jnp.nan), mask.at[0, 0].set(True), "non-finite value"),
    ]:
        with pytest.raises(ValueError, match=match):
            rt.check(yb, mb)
    yc, mc = rt.check(np.asarray(y, np.float32), np.asarray(mask))  # host arrays, float32: converted
    assert yc.dtype == jnp.float64
    np.testing.assert_allclose(rt(yc, mc), small(y[None], mask[None])[0], rtol=1e-6)
    # the hot path only has the compiled program's own (free) signature check
    with pytest.raises(TypeError):
        rt(y[None], mask[None])
    with pytest.raises(TypeError):
        rt(y.astype(jnp.float32), mask)


def test_is_final():
    with pytest.raises(TypeError, match="final"):
        type("Sub", (RealtimeAnalysis,), {})
