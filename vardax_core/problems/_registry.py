"""Built-in problems by name: ``get_problem(name, **overrides)``.

Every factory's keyword arguments are its documented defaults; the resolved arguments
(defaults plus overrides) become the problem's configuration and hash.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._advection_diffusion import AdvectionDiffusion1D, AdvectionDiffusion2D
from ._covariance import CirculantCovariance, DenseCovariance, DiagonalCovariance
from ._lorenz63 import Lorenz63
from ._lorenz96 import Lorenz96
from ._noise import GaussianNoise
from ._observation import LinearObservation, Subsample, TanhObservation
from ._prior import GaussianPrior
from ._problem import Problem

_REGISTRY: dict[str, Callable[..., Problem]] = {}


def register_problem(name: str):
    """Decorator registering a factory ``f(**kwargs) -> Problem`` under ``name``."""

    def deco(factory):
        if name in _REGISTRY:
            raise ValueError(f"problem {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return deco


def list_problems() -> list[str]:
    return sorted(_REGISTRY)


def problem_defaults(name: str) -> dict:
    """The default configuration of a registered problem."""
    factory = _factory(name)
    return {k: p.default for k, p in inspect.signature(factory).parameters.items()}


def _factory(name: str):
    if name not in _REGISTRY:
        raise ValueError(f"unknown problem {name!r}; registered problems: {', '.join(list_problems())}")
    return _REGISTRY[name]


def _canonical(v):
    if isinstance(v, (tuple, list)):
        return [_canonical(u) for u in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v


def get_problem(name: str, **overrides) -> Problem:
    """Build the registered problem ``name`` with keyword ``overrides`` of its defaults."""
    factory = _factory(name)
    params = inspect.signature(factory).parameters
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        raise ValueError(
            f"problem {name!r} has no parameter(s) {', '.join(unknown)}; valid: {', '.join(params)}"
        )
    kwargs = {k: p.default for k, p in params.items()}
    kwargs.update(overrides)
    kwargs = {k: _canonical(v) for k, v in kwargs.items()}
    return _build(name, json.dumps({"name": name, **kwargs}, sort_keys=True))


@functools.lru_cache(maxsize=64)
def _build(name: str, config_json: str) -> Problem:
    # Problems are immutable: building each configuration once (spin-ups included) is safe.
    kwargs = json.loads(config_json)
    del kwargs["name"]
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    return dataclasses.replace(_REGISTRY[name](**kwargs), name=name, config_json=config_json)


def problem_from_config(config: dict) -> Problem:
    """Rebuild a problem from its ``config`` (as stored in dataset attributes)."""
    config = dict(config)
    name = config.pop("name", None)
    if name is None:
        raise ValueError("problem config has no `name`")
    return get_problem(name, **config)


def regular_schedule(n_steps: int, every: int, include_initial: bool = False) -> tuple[int, ...]:
    """Observation after every ``every`` model steps (subsampling in time)."""
    if every < 1 or n_steps < 1:
        raise ValueError(f"need n_steps >= 1 and every >= 1, got {n_steps}, {every}")
    start = 0 if include_initial else every
    return tuple(range(start, n_steps + 1, every))


def _correlated_or_diagonal(kind: str, shape, std: float, length_scale: float):
    if kind == "correlated":
        return CirculantCovariance.from_length_scale(shape, std, length_scale)
    if kind == "diagonal":
        return DiagonalCovariance(jnp.full(shape, float(std)))
    raise ValueError(f"`prior_kind` must be 'correlated' or 'diagonal', got {kind!r}")


def _spinup(model, x0: np.ndarray, n_steps: int) -> np.ndarray:
    """Run ``model`` from ``x0`` for ``n_steps`` (to land on the attractor)."""
    x = jax.jit(lambda x: model.rollout(x, n_steps)[-1])(jnp.asarray(x0, dtype=jnp.float64))
    return np.asarray(x)


def free_run_climatology(model, x0, n_steps: int, spinup: int):
    """A free run of ``model`` from ``x0``: (the states after ``spinup`` steps, (n_steps −
    spinup, n); their mean (n,) and covariance (n, n)) — a model's climatology."""
    if not 0 <= spinup < n_steps - 1:
        raise ValueError(f"free_run_climatology: need 0 <= spinup < n_steps - 1, got {spinup}, {n_steps}")
    run = np.asarray(jax.jit(lambda x: model.rollout(x, n_steps))(jnp.asarray(x0, dtype=jnp.float64)))
    run = run[spinup + 1:].reshape(n_steps - spinup, -1)
    return run, run.mean(axis=0), np.cov(run.T)


@register_problem("linear_gaussian")
def linear_gaussian(
    n: int = 10,
    velocity: float = 1.0,
    diffusivity: float = 0.1,
    dt: float = 0.2,
    n_steps: int = 5,
    obs_every: int = 1,
    obs_stride: int = 2,
    prior_std: float = 1.0,
    length_scale: float = 1.5,
    prior_kind: str = "correlated",
    noise_std: float = 0.3,
    missing_fraction: float = 0.0,
) -> Problem:
    """Advection–diffusion on a ring of ``n``=10 points, every ``obs_stride``-th point
    observed after each of ``n_steps``=5 steps, correlated Gaussian prior with zero mean.
    Everything is linear and Gaussian, so the posterior is known exactly
    (:func:`linear_gaussian_posterior`)."""
    fwd = AdvectionDiffusion1D(n, velocity, diffusivity, dt)
    prior = GaussianPrior(jnp.zeros(n), _correlated_or_diagonal(prior_kind, (n,), prior_std, length_scale))
    return Problem(
        fwd, Subsample((n,), obs_stride), prior, GaussianNoise(noise_std),
        n_steps, regular_schedule(n_steps, obs_every), missing_fraction,
    )


def _background_conditioned(fwd, prior, background_std: float, noise_std: float, steps_per_cycle: int) -> Problem:
    """A background-conditioned window problem over the whole state of ``fwd``: row 0 the
    background at the window start (noise σ_b), row 1 every variable ``steps_per_cycle``
    steps later (noise σ_o)."""
    n = prior.mean.shape
    noise = GaussianNoise(jnp.asarray([[float(background_std)], [float(noise_std)]]))
    return Problem(fwd, Subsample(n, 1), prior, noise, steps_per_cycle, (0, steps_per_cycle))


@register_problem("linear_gaussian_cycling")
def linear_gaussian_cycling(
    n: int = 10,
    velocity: float = 1.0,
    diffusivity: float = 0.1,
    dt: float = 0.2,
    steps_per_cycle: int = 2,
    prior_std: float = 2.0,
    length_scale: float = 1.5,
    background_std: float = 0.5,
    noise_std: float = 0.3,
) -> Problem:
    """The background-conditioned analysis of a linear-Gaussian cycle (advection–diffusion
    on a ring of ``n``): observation row 0 is the background x_b = x₀ + η at the window
    start (η ~ N(0, σ_b² I)), row 1 the whole state ``steps_per_cycle`` steps later with
    noise σ_o; a broad correlated prior (std ``prior_std``). Linear and Gaussian: the
    posterior given (x_b, y) is known exactly — the test problem of background-conditioned
    heads (the linear twin of ``lorenz96_cycling``)."""
    fwd = AdvectionDiffusion1D(n, velocity, diffusivity, dt)
    prior = GaussianPrior(jnp.zeros(n), CirculantCovariance.from_length_scale((n,), prior_std, length_scale))
    return _background_conditioned(fwd, prior, background_std, noise_std, steps_per_cycle)


@register_problem("linear_gaussian_2d")
def linear_gaussian_2d(
    height: int = 32,
    width: int = 32,
    velocity: tuple = (0.5, 0.25),
    diffusivity: float = 0.1,
    dt: float = 1.0,
    n_steps: int = 4,
    obs_every: int = 2,
    obs_stride: int = 2,
    prior_std: float = 1.0,
    length_scale: float = 3.0,
    noise_std: float = 0.3,
    missing_fraction: float = 0.0,
) -> Problem:
    """2D advection–diffusion on a 32×32 torus (image-shaped states), a 16×16 image of
    every second pixel observed at steps 2 and 4, stationary correlated prior. Linear
    and Gaussian: the exact posterior is known."""
    shape = (height, width)
    fwd = AdvectionDiffusion2D(shape, tuple(velocity), diffusivity, dt)
    prior = GaussianPrior(jnp.zeros(shape), CirculantCovariance.from_length_scale(shape, prior_std, length_scale))
    return Problem(
        fwd, Subsample(shape, obs_stride), prior, GaussianNoise(noise_std),
        n_steps, regular_schedule(n_steps, obs_every), missing_fraction,
    )


@register_problem("lorenz96")
def lorenz96(
    n: int = 40,
    forcing: float = 8.0,
    dt: float = 0.05,
    n_steps: int = 10,
    obs_every: int = 2,
    obs_stride: int = 2,
    observation: str = "subsample",
    prior_std: float = 1.0,
    length_scale: float = 2.0,
    prior_kind: str = "correlated",
    noise_std: float = 1.0,
    missing_fraction: float = 0.0,
    spinup_steps: int = 2000,
) -> Problem:
    """Lorenz-96 (N=40, F=8, dt=0.05) over a short 0.5-time-unit window (10 steps),
    every second variable observed every 2 steps (5 times) with unit error. The prior
    is centred on a state on the attractor (a spin-up of ``spinup_steps`` from a
    perturbed rest state) with a correlated B of unit standard deviation. Windows this
    short keep 4DVar well conditioned and the Laplace posterior accurate; long chaotic
    windows do not. ``observation="tanh"`` swaps in the saturating nonlinear sensor."""
    fwd = Lorenz96(n=n, forcing=forcing, dt=dt)
    x_init = np.full(n, forcing)
    x_init[0] += 0.01
    xb = _spinup(fwd, x_init, spinup_steps)
    prior = GaussianPrior(jnp.asarray(xb), _correlated_or_diagonal(prior_kind, (n,), prior_std, length_scale))
    sub = Subsample((n,), obs_stride)
    if observation == "subsample":
        obs = sub
    elif observation == "tanh":
        obs = TanhObservation(sub, scale=10.0)
    else:
        raise ValueError(f"`observation` must be 'subsample' or 'tanh', got {observation!r}")
    return Problem(
        fwd, obs, prior, GaussianNoise(noise_std), n_steps, regular_schedule(n_steps, obs_every), missing_fraction
    )


@register_problem("lorenz96_cycling")
def lorenz96_cycling(
    n: int = 40,
    forcing: float = 8.0,
    dt: float = 0.05,
    steps_per_cycle: int = 1,
    background_std: float = 0.5,
    noise_std: float = 1.0,
    climatology_steps: int = 20000,
    climatology_spinup: int = 2000,
) -> Problem:
    """The analysis of a Lorenz-96 forecast–analysis cycle, where the background varies
    per event. The unknown x₀ is the state at the window start; the observations have
    T = 2 rows over the 40 variables:

        row 0 (window start):            x_b = x₀ + η,        η ~ N(0, σ_b² I)  (the forecast)
        row 1 (``steps_per_cycle`` later): y = M^s(x₀) + ε,   ε ~ N(0, σ_o² I)  (every variable)

    so a head conditioned on (y, mask) is conditioned on (x_b, y), and the oracle's cost
    is the cycle's 4D-Var cost J = ½‖x₀ − x_b‖²/σ_b² + ½‖y − M^s(x₀)‖²/σ_o² plus the
    prior's term. The prior is the model's climatology N(μ_c, C_c) (mean and covariance
    of a free run of ``climatology_steps`` after ``climatology_spinup``): states are drawn
    from it, backgrounds around them. Defaults: the all-observed, every-0.05 twin
    (``vardax_core.cycle.PUBLISHED_TWINS["l96_full_dt005"]``)."""
    fwd = Lorenz96(n=n, forcing=forcing, dt=dt)
    x_init = np.full(n, forcing)
    x_init[0] += 0.01
    _, mean, cov = free_run_climatology(fwd, x_init, climatology_steps, climatology_spinup)
    prior = GaussianPrior(jnp.asarray(mean), DenseCovariance.from_matrix(0.5 * (cov + cov.T)))
    return _background_conditioned(fwd, prior, background_std, noise_std, steps_per_cycle)


@register_problem("lorenz63")
def lorenz63(
    sigma: float = 10.0,
    rho: float = 28.0,
    beta: float = 8.0 / 3.0,
    dt: float = 0.01,
    n_steps: int = 25,
    obs_every: int = 5,
    observed: tuple = (0, 1, 2),
    prior_std: float = 1.0,
    noise_std: float = 1.0,
    missing_fraction: float = 0.0,
    prior_mean: tuple | None = None,
    spinup_steps: int = 2000,
) -> Problem:
    """Lorenz-63 (σ=10, ρ=28, β=8/3, dt=0.01) over 0.25 time units, the components in
    ``observed`` seen every 5 steps with unit error, diagonal prior of std 1 centred on
    an attractor state (or ``prior_mean``). Observing only z (``observed=(2,)``) makes
    the posterior bimodal under the (x, y) ↦ (−x, −y) symmetry — a non-convex 4DVar."""
    fwd = Lorenz63(sigma=sigma, rho=rho, beta=beta, dt=dt)
    if prior_mean is None:
        xb = _spinup(fwd, np.array([1.0, 1.0, 1.0]), spinup_steps)
    else:
        xb = np.asarray(prior_mean, dtype=float)
    prior = GaussianPrior(jnp.asarray(xb), DiagonalCovariance(jnp.full((3,), float(prior_std))))
    observed = tuple(int(i) for i in observed)
    obs = LinearObservation(matrix=jnp.eye(3)[jnp.asarray(observed)], state_shape=(3,))
    return Problem(
        fwd, obs, prior, GaussianNoise(noise_std), n_steps, regular_schedule(n_steps, obs_every), missing_fraction
    )
