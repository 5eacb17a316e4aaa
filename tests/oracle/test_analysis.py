"""One compiled program per shape, a swappable forward model, and the oracle behind the
shared analysis interface."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import rel_err
from tests.oracle._shared import INCREMENTAL_EXACT, LG_EVENTS, STRONG_EXACT, l63_events, lg_problem
from vardax_core import Posterior
from vardax_core.oracle import OracleAnalysis, StrongFourDVar, laplace_posterior, sensitivity_jvp
from vardax_core.problems import AbstractForwardModel, batched_linear_gaussian_posterior

TRACES = {"step": 0}


class MatrixEmulator(AbstractForwardModel):
    """A stand-in neural emulator: x ↦ W x with learnable (array) weights. Counts how
    often its step is traced (a Python side effect runs only while JAX traces)."""

    weights: jax.Array
    dt: float = eqx.field(static=True)

    def __init__(self, weights, dt: float = 0.2):
        self.weights = jnp.asarray(weights)
        self.dt = dt

    @property
    def state_shape(self):
        return (self.weights.shape[0],)

    def step(self, x):
        TRACES["step"] += 1
        return self.weights @ x


@pytest.fixture(scope="module")
def lg():
    p = lg_problem()
    _, y, mask = p.simulate(jax.random.key(11), LG_EVENTS)
    _, y2, mask2 = p.simulate(jax.random.key(12), LG_EVENTS)
    return p, (y, mask), (y2, mask2)


@pytest.mark.parametrize("solver", [STRONG_EXACT, INCREMENTAL_EXACT], ids=["strong", "incremental"])
def test_no_recompilation_for_a_second_batch_or_new_emulator_weights(lg, solver):
    p, (y, mask), (y2, mask2) = lg
    M = p.forward.as_matrix()
    emulated = p.with_forward(MatrixEmulator(M))
    first = solver.solve(emulated, y, mask)
    post = laplace_posterior(emulated, first.x, y, mask)
    traced = TRACES["step"]
    assert traced > 0
    solver.solve(emulated, y2, mask2).x.block_until_ready()  # a second batch, same shapes
    laplace_posterior(emulated, first.x, y2, mask2).mean.block_until_ready()
    retrained = p.with_forward(MatrixEmulator(M + 1e-3))  # new weights, same structure
    other = solver.solve(retrained, y, mask)
    assert TRACES["step"] == traced, "a second batch or new emulator weights recompiled the solver"
    # the emulator that equals the physics gives the physics' answer; other weights another one
    exact, _ = batched_linear_gaussian_posterior(p, y, mask)
    assert rel_err(first.x, exact) <= 1e-8 and rel_err(other.x, exact) > 1e-4
    assert bool(jnp.all(post.std > 0))


def test_lanes_give_each_event_the_result_it_gets_alone(lg):
    """A batch larger than ``lanes`` runs as a conveyor; every event gets the result of
    the plain vmapped solve (up to the round-off of batched matrix products of another
    batch size; bitwise on lorenz96). The driver is shared by both solvers; the lorenz96
    tests run both through it."""
    p, (y, mask), _ = lg
    solver = STRONG_EXACT
    plain = solver.solve(p, y, mask)
    conveyor = dataclasses.replace(solver, lanes=3).solve(p, y, mask)
    for name in ("iterations", "inner_iterations", "converged", "reason"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(conveyor, name))
    for name in ("x", "cost", "grad_norm"):
        np.testing.assert_allclose(getattr(conveyor, name), getattr(plain, name), rtol=1e-10, atol=1e-12)


def test_oracle_analysis_is_an_analysis(lg):
    p, (y, mask), _ = lg
    analysis = OracleAnalysis(STRONG_EXACT)
    post, res = analysis.analyse(p, y, mask)
    assert isinstance(post, Posterior) and post.cov_kind == "dense" and post.n_events == LG_EVENTS
    exact_mean, exact_cov = batched_linear_gaussian_posterior(p, y, mask)
    assert rel_err(post.mean, exact_mean) <= 1e-8 and rel_err(post.covariance(), exact_cov) <= 1e-8
    prov = post.provenance
    assert prov["method"] == "oracle-4dvar+laplace-dense" and prov["solver"]["solver"] == "StrongFourDVar"
    assert prov["solver"]["gtol"] == 1e-11 and prov["problem_hash"] == p.hash and prov["forward"] == "AdvectionDiffusion1D"
    assert bool(jnp.all(res.converged))
    # the same analysis on an emulator-swapped problem: no change in the solver code
    emulated = analysis(p.with_forward(MatrixEmulator(p.forward.as_matrix())), y, mask)
    assert emulated.provenance["forward"] == "MatrixEmulator"
    assert rel_err(emulated.mean, post.mean) <= 1e-8
    # lowrank form through the same interface: mean and std, no dense factor
    lowrank = OracleAnalysis(INCREMENTAL_EXACT, method="lowrank")(p, y, mask)
    assert lowrank.cov_kind == "none" and rel_err(lowrank.std, post.std) <= 1e-8
    assert lowrank.provenance["laplace"] == "lowrank"


def test_sensitivity_on_a_nonlinear_problem_against_finite_differences():
    """∂x*/∂y against re-solving with perturbed observations (central differences) on
    a nonlinear window: the exact-Hessian form is the derivative of the minimiser; the
    Gauss–Newton form (the default, the design's definition) drops the residual
    curvature and is off by a few percent to over 100% here."""
    p, _, y, mask = l63_events()
    solver = StrongFourDVar()  # gtol 1e-6: errors ~1e-6 / h in the differences
    x0 = solver.solve(p, y, mask).x
    dy = jax.random.normal(jax.random.key(6), y.shape)
    h = 1e-2
    fd = (solver.solve(p, y + h * dy, mask).x - solver.solve(p, y - h * dy, mask).x) / (2 * h)
    err = {}
    for hessian in ("exact", "gauss-newton"):
        jv = jax.jit(jax.vmap(lambda *a: sensitivity_jvp(p, *a, hessian=hessian)))(x0, y, mask, dy)
        err[hessian] = np.array([rel_err(jv[e], fd[e]) for e in range(len(y))])
    print({k: np.round(v, 4) for k, v in err.items()})
    assert np.all(err["exact"] <= 1e-3)
    assert np.median(err["gauss-newton"]) > 0.02
    with pytest.raises(ValueError, match="hessian"):
        sensitivity_jvp(p, x0[0], y[0], mask[0], dy[0], hessian="full")
    # the dense form (jnp.linalg.solve with jax.hessian) is the same operator
    from vardax_core.oracle import sensitivity_matrix

    for hessian in ("exact", "gauss-newton"):
        J = jax.jit(jax.vmap(lambda *a: sensitivity_matrix(p, *a, hessian=hessian)))(x0, y, mask)
        jv = jax.jit(jax.vmap(lambda *a: sensitivity_jvp(p, *a, hessian=hessian)))(x0, y, mask, dy)
        E = len(y)
        dense = J.reshape(E, p.n_state, -1) @ jnp.where(mask, dy, 0.0).reshape(E, -1, 1)
        assert rel_err(dense.reshape(jv.shape), jv) <= 1e-8
    with pytest.raises(ValueError, match="hessian"):
        sensitivity_matrix(p, x0[0], y[0], mask[0], hessian="full")
