"""Forward models against independent NumPy implementations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import numpy_rk4, rel_err
from vardax_core.problems import AdvectionDiffusion1D, AdvectionDiffusion2D, Lorenz63, Lorenz96


def np_l96(x, F=8.0):
    n = len(x)
    return np.array([(x[(i + 1) % n] - x[i - 2]) * x[i - 1] - x[i] + F for i in range(n)])


def np_l63(x, s=10.0, r=28.0, b=8.0 / 3.0):
    return np.array([s * (x[1] - x[0]), x[0] * (r - x[2]) - x[1], x[0] * x[1] - b * x[2]])


@pytest.mark.parametrize("steps", [1, 20])
def test_lorenz96_matches_numpy(steps):
    rng = np.random.default_rng(0)
    x = 8.0 + rng.normal(size=40)
    model = Lorenz96()
    ours = np.asarray(jax.jit(lambda x: model.rollout(x, steps)[-1])(jnp.asarray(x)))
    ref = numpy_rk4(np_l96, x, 0.05, steps)
    assert np.max(np.abs(ours - ref)) <= 1e-12 * max(1.0, np.max(np.abs(ref)))


@pytest.mark.parametrize("steps", [1, 50])
def test_lorenz63_matches_numpy(steps):
    x = np.array([1.5, -2.0, 20.0])
    model = Lorenz63()
    ours = np.asarray(model.rollout(jnp.asarray(x), steps)[-1])
    ref = numpy_rk4(np_l63, x, 0.01, steps)
    assert np.max(np.abs(ours - ref)) <= 1e-12 * max(1.0, np.max(np.abs(ref)))


def test_substeps_refine_the_same_step():
    x = jnp.asarray(np.array([1.5, -2.0, 20.0]))
    coarse = Lorenz63(dt=0.02).step(x)
    fine = Lorenz63(dt=0.02, substeps=2).step(x)
    ref = numpy_rk4(np_l63, np.asarray(x), 0.01, 2)
    assert np.max(np.abs(np.asarray(fine) - ref)) <= 1e-12 * 20
    assert not np.allclose(coarse, fine, rtol=0, atol=1e-12)


def test_rollout_includes_initial_state():
    x = jnp.ones(40)
    traj = Lorenz96().rollout(x, 5)
    assert traj.shape == (6, 40)
    assert np.array_equal(traj[0], x)


@pytest.mark.parametrize("model", [Lorenz96(), Lorenz63()], ids=["l96", "l63"])
def test_ode_step_jvp_and_vjp_agree(model):
    """The diffrax RK4 step supports forward and reverse mode, consistently."""
    x = jnp.linspace(-1.0, 2.0, model.state_shape[0]) + 5.0
    Jf = jax.jacfwd(model.step)(x)
    Jr = jax.jacrev(model.step)(x)
    assert rel_err(Jf, Jr) <= 1e-13


def test_linear_model_jacobian_is_its_matrix():
    model = AdvectionDiffusion1D(n=12, velocity=0.7, diffusivity=0.2, dt=0.3)
    x = jnp.asarray(np.random.default_rng(1).normal(size=12))
    A = model.as_matrix()
    assert rel_err(jax.jacfwd(model.step)(x), A) <= 1e-14
    assert rel_err(jax.jacrev(model.step)(x), A) <= 1e-14
    # exp(dt·A) of a generator with zero row sums conserves the mean
    assert abs(float(jnp.sum(model.step(x)) - jnp.sum(x))) <= 1e-12


def test_linear_model_pure_diffusion_is_symmetric_and_contracting():
    model = AdvectionDiffusion1D(n=10, velocity=0.0, diffusivity=0.1, dt=0.2)
    A = np.asarray(model.as_matrix())
    np.testing.assert_allclose(A, A.T, atol=1e-14)
    assert np.max(np.abs(np.linalg.eigvals(A))) <= 1.0 + 1e-12


def test_2d_model_matches_numpy_fft():
    shape, vel, kappa, dt = (8, 12), (0.5, -0.3), 0.15, 0.7
    model = AdvectionDiffusion2D(shape, vel, kappa, dt)
    x = np.random.default_rng(2).normal(size=shape)
    ky, kx = np.meshgrid(*[2 * np.pi * np.fft.fftfreq(n) for n in shape], indexing="ij")
    sym = np.exp(dt * (-1j * (vel[0] * np.sin(ky) + vel[1] * np.sin(kx)) - kappa * (4 * np.sin(ky / 2) ** 2 + 4 * np.sin(kx / 2) ** 2)))
    ref = np.fft.ifft2(sym * np.fft.fft2(x)).real
    assert np.max(np.abs(np.asarray(model.step(jnp.asarray(x))) - ref)) <= 1e-13
    A = np.asarray(model.as_matrix())
    assert np.max(np.abs(A @ x.ravel() - ref.ravel())) <= 1e-13


def test_2d_model_matches_1d_model_on_a_single_row():
    """A 2D field constant along y evolves like the 1D model with the x-velocity."""
    m2 = AdvectionDiffusion2D((4, 16), (0.0, 0.8), 0.1, 0.5)
    m1 = AdvectionDiffusion1D(n=16, velocity=0.8, diffusivity=0.1, dt=0.5)
    row = np.random.default_rng(3).normal(size=16)
    field = np.tile(row, (4, 1))
    np.testing.assert_allclose(np.asarray(m2.step(jnp.asarray(field)))[0], np.asarray(m1.step(jnp.asarray(row))), atol=1e-12)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="n"):
        Lorenz96(n=2)
    with pytest.raises(ValueError, match="dt"):
        Lorenz63(dt=-1.0)
    with pytest.raises(ValueError, match="shape"):
        AdvectionDiffusion2D((2, 32))
