"""Shared check of the sampling heads on linear_gaussian (dimension 10) against the exact
posterior, 10⁴ pairs: flow head C2ST accuracy ≤ 0.55, score head ≤ 0.60 (see
tests/amortized/c2st.py), on complete observations and with 20% missing at random.
One test file per trained model (test_lg_*.py), so that pytest-xdist runs them in parallel.
"""

import jax
import jax.numpy as jnp
import numpy as np

from vardax_core.problems import ExactLinearGaussianPosterior, get_problem

from .c2st import c2st
from .test_linear_gaussian import N_DRAWS, held_out


def check_sampling_head(trained, head: str, threshold: float, train_missing: float, held_out_missing,
                        density_sd: float | None = 0.5) -> list[float]:
    """Train ``head`` on pairs with ``train_missing`` of the observations missing (the masks
    are inputs of the model) and test it on held-out events with each of ``held_out_missing``.
    Returns the sd of log q − log p on the truths per held-out setting; with ``density_sd``
    it must be below that (None: the caller decides)."""
    sds = []
    _, post, history = trained("linear_gaussian", head, train_missing)
    for missing in held_out_missing:
        problem = get_problem("linear_gaussian", missing_fraction=missing)
        x, y, mask = held_out(problem)
        exact = ExactLinearGaussianPosterior(problem)
        draws = post.sample(y, mask, jax.random.key(7), N_DRAWS)
        acc = c2st(exact, draws, y, mask, jax.random.key(8), scale=1.0)
        sd = exact.posterior(y, mask).std
        rms = float(jnp.sqrt(jnp.mean(((post(y, mask) - exact(y, mask)) / sd) ** 2)))
        print(f"{head} (trained with {train_missing} missing), held-out missing={missing}: C2ST accuracy "
              f"{acc:.4f} (threshold {threshold}); point-estimate RMS error {rms:.4f} σ_post")
        assert acc <= threshold
        assert rms <= 0.1
        # the density agrees with the exact one on held-out truths (flow: exact; score:
        # the probability-flow ODE at t_eps): mean ≈ −KL(p ‖ q) for small discrepancies
        diff = np.asarray(post.log_prob(x, y, mask) - exact.log_prob(x, y, mask))
        print(f"{head}: log q − log p on the truths: mean {diff.mean():+.4f}, sd {diff.std():.4f}")
        assert abs(diff.mean()) < 0.15
        assert density_sd is None or diff.std() < density_sd
        sds.append(float(diff.std()))
    return sds
