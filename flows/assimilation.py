"""Cycled data assimilation (``vardax assimilate``): a twin of a published Lorenz-96
set-up run through several analysis methods, results in Zarr, figures and a summary.

The config (``configs/twins/<name>.yaml``) is one typed tree: the twin by name, the run's
length and seed, and the methods by name, each a variant discriminated on ``type``
(``climatology``, ``optimal_interpolation``, ``enkf``, ``fourdvar``, ``ienks``). Settings are taken
as given; ``benchmarks/cycling.py`` is where they are tuned (on another truth).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, Union

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from pydantic import Field, PositiveInt, ValidationError, model_validator

from .config import CONFIG_DIR, ConfigError, _format, _Model, read_yaml_config, vardax_home

TWIN_CONFIG_DIR = CONFIG_DIR / "twins"


class ClimatologyMethod(_Model):
    """The climatological mean and variance, whatever the observations."""

    type: Literal["climatology"] = "climatology"

    def build(self, mean, cov):
        from vardax_core.cycle import Climatology

        return Climatology(mean, cov.diagonal())


class OptimalInterpolationMethod(_Model):
    """Static B = ``b_scale`` × the climatological covariance (1: optimal interpolation;
    a small scale: 3D-Var)."""

    type: Literal["optimal_interpolation"] = "optimal_interpolation"
    b_scale: float = Field(1.0, gt=0)

    def build(self, mean, cov):
        from vardax_core.cycle import OptimalInterpolation

        return OptimalInterpolation(self.b_scale * cov)


class EnKFMethod(_Model):
    """The square-root ensemble Kalman filter (ETKF) with multiplicative inflation."""

    type: Literal["enkf"] = "enkf"
    n_members: int = Field(40, ge=2)
    inflation: float = Field(1.02, ge=1.0)
    initial_std: float = Field(1.0, gt=0)

    def build(self, mean, cov):
        from vardax_core.cycle import EnsembleKalmanFilter

        return EnsembleKalmanFilter(self.n_members, inflation=self.inflation, initial_std=self.initial_std)


class FourDVarMethod(_Model):
    """The 4DVar oracle over a window of ``lag`` cycles (0: the analysis time only), static
    B = ``b_scale`` × the climatological covariance, L-BFGS to ‖∇J‖ ≤ ``gtol``."""

    type: Literal["fourdvar"] = "fourdvar"
    lag: int = Field(1, ge=0)
    b_scale: float = Field(0.02, gt=0)
    gtol: float = Field(1e-8, gt=0)
    max_iterations: PositiveInt = 200

    def build(self, mean, cov):
        from vardax_core.cycle import FourDVar
        from vardax_core.oracle import StrongFourDVar

        solver = StrongFourDVar(gtol=self.gtol, max_iterations=self.max_iterations, lanes=None)
        return FourDVar(self.b_scale * cov, lag=self.lag, solver=solver)


class IEnKSMethod(_Model):
    """The iterative ensemble Kalman smoother (square-root form) over a window of ``lag``
    cycles slid by one, Gauss–Newton for at most ``n_iter`` iterations, multiplicative
    inflation of the smoothed ensemble."""

    type: Literal["ienks"] = "ienks"
    n_members: int = Field(20, ge=2)
    lag: int = Field(1, ge=1)
    inflation: float = Field(1.02, ge=1.0)
    n_iter: PositiveInt = 10
    initial_std: float = Field(1.0, gt=0)

    def build(self, mean, cov):
        from vardax_core.cycle import IterativeEnsembleKalmanSmoother

        return IterativeEnsembleKalmanSmoother(self.n_members, lag=self.lag, n_iter=self.n_iter,
                                               inflation=self.inflation, initial_std=self.initial_std)


MethodSpec = Annotated[
    Union[ClimatologyMethod, OptimalInterpolationMethod, EnKFMethod, FourDVarMethod, IEnKSMethod],  # noqa: UP007
    Field(discriminator="type"),
]


def _twin_names() -> tuple[str, ...]:
    from vardax_core.cycle import PUBLISHED_TWINS

    return tuple(PUBLISHED_TWINS)


class AssimilationConfig(_Model):
    """A twin experiment: ``twin`` (a name of ``vardax_core.cycle.PUBLISHED_TWINS``), its
    length (``n_cycles``, ``burn_in``; the twin's own by default), the truth's start (step
    ``truth_start`` of the free climatological run), the noise ``seed``, the methods by
    name, and where stores go (``store_root``, default ``$VARDAX_HOME/stores``)."""

    name: str = "twin"
    twin: str
    n_cycles: PositiveInt | None = None
    burn_in: int | None = Field(None, ge=0)
    truth_start: int = Field(15000, ge=0, lt=18000)
    seed: int = 0
    methods: dict[str, MethodSpec] = Field(min_length=1)
    store_root: str | None = None

    @model_validator(mode="after")
    def _known_twin(self):
        if self.twin not in _twin_names():
            raise ValueError(f"twin: unknown twin {self.twin!r}; known: {', '.join(_twin_names())}")
        self.setup()  # raises naming a bad n_cycles / burn_in
        return self

    def setup(self):
        from vardax_core.cycle import get_twin

        return get_twin(self.twin).setup(self.n_cycles, self.burn_in)

    def out_dir(self) -> Path:
        root = Path(self.store_root) if self.store_root else vardax_home() / "stores"
        s = self.setup()
        return root / f"assimilate-{self.twin}-K{s.n_cycles}-start{self.truth_start}-seed{self.seed}"


def load_assimilation_config(name_or_path: str | os.PathLike) -> AssimilationConfig:
    """Load by path, or by name from ``configs/twins/``; errors name the field."""
    data = read_yaml_config(name_or_path, TWIN_CONFIG_DIR, "twin config")
    try:
        return AssimilationConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format(err).replace("pipeline config", "twin config")) from None


def _climatology():
    from vardax_core.cycle import lorenz96_climatology

    return lorenz96_climatology()


@task(name="simulate-twin", retries=1, retry_delay_seconds=2)
def simulate_twin_task(config: AssimilationConfig) -> str:
    """The truth run and its observations (``twin.zarr``), unless already there."""
    import jax
    import jax.numpy as jnp

    from vardax_core.cycle._store import TWIN_SCHEMA, read_store, twin_dataset, write_whole

    path = str(config.out_dir() / "twin.zarr")
    identity = {"twin": config.twin, "truth_start": config.truth_start, "seed": config.seed,
                "n_cycles": config.setup().n_cycles}
    if read_store(path, TWIN_SCHEMA, identity) is not None:
        print(f"twin store {path} is there: reused")
        return path
    free, _, _ = _climatology()
    truth, y, mask = config.setup().simulate(jnp.asarray(free[config.truth_start]), jax.random.key(config.seed))
    write_whole(twin_dataset(truth, y, mask, identity), path)
    print(f"wrote the truth and observations of {config.twin} to {path}")
    return path


@task(name="run-method", retries=1, retry_delay_seconds=2)
def run_method_task(config: AssimilationConfig, name: str, twin_path: str) -> dict:
    """One method through the whole twin (``<name>.zarr``), unless already there with the
    same settings. Returns its summary (time averages after spin-up, seconds)."""
    import time

    import jax
    import jax.numpy as jnp

    from vardax_core.cycle import run_cycle
    from vardax_core.cycle._store import METHOD_SCHEMA, TWIN_SCHEMA, method_dataset, read_store, write_whole

    spec = config.methods[name]
    path = str(config.out_dir() / f"{name}.zarr")
    identity = {"method": name, "settings": spec.model_dump(mode="json"), "twin_store": twin_path}
    done = read_store(path, METHOD_SCHEMA, identity)
    if done is not None:
        print(f"{name}: store {path} is there: reused")
        return done.attrs["summary"]
    twin = read_store(twin_path, TWIN_SCHEMA)
    if twin is None:
        raise FileNotFoundError(f"run_method: no twin store at {twin_path}")
    _, mean, cov = _climatology()
    setup = config.setup()
    step = spec.build(jnp.asarray(mean), jnp.asarray(cov))
    truth = jnp.asarray(twin["truth"].values)
    background = truth[0] + jax.random.normal(jax.random.key(config.seed + 1), truth[0].shape)
    t = time.perf_counter()
    result = jax.block_until_ready(run_cycle(setup, step, truth, jnp.asarray(twin["y"].values),
                                             jnp.asarray(twin["mask"].values), background,
                                             jax.random.key(config.seed + 2)))
    summary = {**result.summary(setup.burn_in), "seconds": time.perf_counter() - t}
    write_whole(method_dataset(result, identity, summary), path)
    print(f"{name}: analysis RMSE {summary['rmse_a']:.3f}, spread/RMSE {summary['spread_ratio']:.2f} -> {path}")
    return summary


def summary_markdown(config: AssimilationConfig, summaries: dict[str, dict], figures: list[str]) -> str:
    from vardax_core.cycle import get_twin

    twin = get_twin(config.twin)
    lines = [f"# {config.twin}: {twin.description}", "",
             f"{config.setup().n_cycles} cycles, time averages after {config.setup().burn_in}; published "
             f"figures: {twin.source}.", "",
             "| method | analysis RMSE | spread / RMSE | 90 % coverage | forecast RMSE | run (s) |",
             "|---|---|---|---|---|---|"]
    for name, s in summaries.items():
        lines.append(f"| {name} | {s['rmse_a']:.3f} | {s['spread_ratio']:.2f} | {s['coverage_90']:.2f} | "
                     f"{s['rmse_f']:.3f} | {s['seconds']:.1f} |")
    lines += ["", "published: " + ", ".join(f"{k} {v}" for k, v in twin.published.items()), ""]
    lines += [f"![{Path(p).stem}]({Path(p).as_uri()})" for p in figures]
    return "\n".join(lines)


@flow(name="assimilate", log_prints=True)
def assimilate(config: AssimilationConfig) -> dict[str, dict]:
    """Simulate the twin, run every method through it (stores reused when present), then
    the figures (RMSE and spread over time, PIT histograms) and the summary artifact."""
    from vardax_core.cycle._figures import cycle_figures
    from vardax_core.cycle._store import METHOD_SCHEMA, read_store

    twin_path = simulate_twin_task(config)
    summaries = {name: run_method_task(config, name, twin_path) for name in config.methods}
    series = {}
    for name in config.methods:
        ds = read_store(str(config.out_dir() / f"{name}.zarr"), METHOD_SCHEMA)
        series[name] = {k: ds[k].values for k in ("rmse_a", "spread_a", "pit")}
    setup = config.setup()
    figures = cycle_figures(str(config.out_dir() / "figures"), setup.cycle_length, series, setup.burn_in)
    md = summary_markdown(config, summaries, figures)
    create_markdown_artifact(key=f"assimilate-{config.twin}".replace("_", "-"), markdown=md,
                             description=f"cycled DA on {config.twin}")
    print(md)
    return summaries
