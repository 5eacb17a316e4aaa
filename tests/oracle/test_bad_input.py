"""Bad input is a clear error; a divergent window is a flagged event with a finite
answer, never NaN."""

import jax.numpy as jnp
import jax
import numpy as np
import pytest

from vardax_core.oracle import (
    NONFINITE,
    IncrementalFourDVar,
    MultiStart,
    StrongFourDVar,
    laplace_posterior,
)
from tests.oracle._shared import l63_events


@pytest.fixture(scope="module")
def l63():
    return l63_events()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda y, m: (y[:, :-1], m[:, :-1]), "`y` must have shape"),
        (lambda y, m: (y, m[:, :, :0]), "`mask` must have shape"),
        (lambda y, m: (y[0], m[0]), "`y` must have shape"),
        (lambda y, m: (y, m.astype(int)), "`mask` must be a boolean array"),
        (lambda y, m: (y.at[3, 2, 0].set(jnp.nan), m), "non-finite value"),
        (lambda y, m: (y.at[3, 2, 0].set(jnp.inf), m), "non-finite value"),
    ],
    ids=["time-axis", "mask-shape", "unbatched", "mask-dtype", "nan-observed", "inf-observed"],
)
def test_bad_observations_are_clear_errors(l63, change, message):
    p, _, y, mask = l63
    bad_y, bad_mask = change(y, mask)
    for call in (
        lambda: StrongFourDVar().solve(p, bad_y, bad_mask),
        lambda: IncrementalFourDVar().solve(p, bad_y, bad_mask),
        lambda: MultiStart(StrongFourDVar(), 2).solve(p, bad_y, bad_mask),
        lambda: laplace_posterior(p, jnp.zeros((16, 3)), bad_y, bad_mask),
    ):
        with pytest.raises(ValueError, match=message):
            call()


def test_nan_at_unobserved_positions_is_fine(l63):
    p, _, y, mask = l63
    assert np.isnan(np.asarray(y)).sum() == 0  # full observation of z …
    m2 = mask.at[:, 1].set(False)
    res = StrongFourDVar().solve(p, y.at[:, 1].set(jnp.nan), m2)  # … now missing at one time, NaN there
    assert np.all(np.isfinite(np.asarray(res.x))) and np.all(np.asarray(res.converged))


def test_bad_start_points_are_clear_errors(l63):
    p, _, y, mask = l63
    with pytest.raises(ValueError, match="`x_init` must have shape"):
        StrongFourDVar().solve(p, y, mask, x_init=jnp.zeros((16, 4)))
    with pytest.raises(ValueError, match="`x_init` has non-finite values"):
        StrongFourDVar().solve(p, y, mask, x_init=jnp.full((16, 3), jnp.nan))
    with pytest.raises(ValueError, match="`x_star` must have shape"):
        laplace_posterior(p, jnp.zeros((15, 3)), y, mask)
    with pytest.raises(ValueError, match="precondition"):
        StrongFourDVar(precondition="diagonal")
    with pytest.raises(ValueError, match="gtol"):
        IncrementalFourDVar(gtol=0.0)
    with pytest.raises(ValueError, match="method"):
        laplace_posterior(p, jnp.zeros((16, 3)), y, mask, method="exact")


@pytest.mark.parametrize("solver", [StrongFourDVar(), IncrementalFourDVar()], ids=["strong", "incremental"])
def test_a_divergent_window_is_flagged_and_finite(l63, solver):
    """Events started 1e100 away overflow in the first model step (J = inf, ∇J = NaN):
    flagged NONFINITE with the start point returned; the other events are untouched."""
    p, _, y, mask = l63
    x_init = jnp.broadcast_to(p.prior.mean, (16, 3)).at[::4].set(1e100)
    res = solver.solve(p, y, mask, x_init=x_init)
    div = np.zeros(16, bool)
    div[::4] = True
    reason = np.asarray(res.reason)
    assert np.all(reason[div] == NONFINITE) and not np.any(np.asarray(res.converged)[div])
    np.testing.assert_array_equal(np.asarray(res.x)[div], np.asarray(x_init)[div])
    assert np.all(np.isinf(np.asarray(res.cost)[div])) and np.all(np.isinf(np.asarray(res.grad_norm)[div]))
    assert not np.any(np.isnan(np.asarray(res.x))) and not np.any(np.isnan(np.asarray(res.cost)))
    # the rest of the batch is unaffected: same as solving it alone from the background
    ok = solver.solve(p, y, mask)
    np.testing.assert_allclose(np.asarray(res.x)[~div], np.asarray(ok.x)[~div], rtol=1e-12)
