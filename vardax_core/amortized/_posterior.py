"""The amortized posterior q_φ(x | y): standardisation, encoder and head behind the
batched analysis interface shared with the oracle and the exact posterior."""

from __future__ import annotations

import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import check_observations, check_shape, is_concrete
from .._version import __version__
from ..posterior import Posterior
from ..problems import Problem
from ._encoders import AbstractEncoder, build_encoder, resolve_encoder_config
from ._heads import AbstractHead, GaussianHead, build_head, resolve_head_config
from ._nets import DTYPES, cast_floats
from ._standardize import Standardizer

FORMAT_VERSION = 1
_MODEL_KEYS = ("encoder", "head", "dtype")


class _Config:
    """The config JSON as a static field. Two configs compare equal (and hash alike)
    when they describe the same computation — format, layout, encoder, head, dtype —
    whatever the provenance (problem name and hash, training record): models that
    differ only in provenance share compiled functions."""

    _STRUCTURAL = ("format_version", "layout", "encoder", "head", "dtype")

    def __init__(self, text: str):
        self.json = text
        cfg = json.loads(text)
        self._key = json.dumps({k: cfg.get(k) for k in self._STRUCTURAL}, sort_keys=True)

    def __eq__(self, other):
        return isinstance(other, _Config) and self._key == other._key

    def __hash__(self):
        return hash(self._key)

    def __repr__(self):
        return f"_Config({self.json[:60]}...)"


def _as_key(key):
    """A new-style PRNG key (flowjax needs them); legacy uint32[2] keys are wrapped."""
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if key.dtype == jnp.uint32 and key.shape == (2,):
        return jax.random.wrap_key_data(key)
    raise ValueError(f"`key` must be a PRNG key (jax.random.key(seed)), got dtype {key.dtype} shape {key.shape}")


class AmortizedPosterior(eqx.Module):
    """q_φ(x | y) = head(· | encoder(standardise(y), mask)), mapped back to state units.

    Same batched interface as :class:`vardax_core.problems.ExactLinearGaussianPosterior`:
    observations ``y, mask`` of shape (B, T, *obs_shape) (mask boolean, non-finite
    values allowed only where mask is False), states (B, *state_shape). Every output is
    float64 whatever dtype the networks use (``config["dtype"]``). All methods are
    jittable; called eagerly, they validate inputs with clear errors and run jitted.

    - ``__call__(y, mask)`` → (B, *state) point estimates, differentiable in y (the
      mean of the head's own distribution: the Gaussian head's mean; for the flow and
      score heads a fixed-key Monte-Carlo average of their draws, see their docstrings);
    - ``sample(y, mask, key, n)`` → (B, n, *state);
    - ``log_prob(x, y, mask, key=None)`` → (B,) (``key``: Hutchinson probes of the score head);
    - ``posterior(y, mask, key=None, n_samples=0)`` → :class:`~vardax_core.Posterior`.

    ``config`` (static JSON) describes everything needed to rebuild the module's
    skeleton (:func:`posterior_from_config`): format version, problem config and hash,
    layout, encoder, head, dtype and the training provenance set by :func:`fit`.
    """

    encoder: AbstractEncoder
    head: AbstractHead
    standardizer: Standardizer
    meta: "_Config" = eqx.field(static=True)
    state_shape: tuple[int, ...] = eqx.field(static=True)
    obs_shape: tuple[int, ...] = eqx.field(static=True)
    n_times: int = eqx.field(static=True)
    dtype: str = eqx.field(static=True)

    def __init__(self, encoder: AbstractEncoder, head: AbstractHead, standardizer: Standardizer, config: dict):
        self.encoder, self.head, self.standardizer = encoder, head, standardizer
        self.meta = _Config(json.dumps(config, sort_keys=True))
        layout = config["layout"]
        self.state_shape = tuple(layout["state_shape"])
        self.obs_shape = tuple(layout["obs_shape"])
        self.n_times = int(layout["n_times"])
        self.dtype = config["dtype"]

    # ---- description --------------------------------------------------------------------
    @property
    def config(self) -> dict:
        return json.loads(self.meta.json)

    @property
    def config_json(self) -> str:
        return self.meta.json

    @property
    def problem_hash(self) -> str:
        return self.config["problem_hash"]

    @property
    def has_density(self) -> bool:
        return self.head.has_density

    @property
    def n_state(self) -> int:
        return math.prod(self.state_shape)

    def replace_config(self, **updates) -> "AmortizedPosterior":
        """The same weights with top-level config entries replaced (e.g. ``training``)."""
        return AmortizedPosterior(self.encoder, self.head, self.standardizer, {**self.config, **updates})

    def with_standardizer(self, standardizer: Standardizer) -> "AmortizedPosterior":
        return eqx.tree_at(lambda m: m.standardizer, self, standardizer)

    # ---- checks ---------------------------------------------------------------------------
    def check_observations(self, y, mask):
        return check_observations(y, mask, self.obs_shape, self.n_times, batched=True)

    def _check_x(self, x, n_events: int):
        check_shape("x", x, (n_events, *self.state_shape), "events, *state; events as in y")
        x = jnp.asarray(x)
        if is_concrete(x):
            if not bool(jnp.all(jnp.isfinite(x))):
                raise ValueError("`x` has non-finite values")
            return x
        return eqx.error_if(x, ~jnp.isfinite(x), "`x` has non-finite values")

    def _check_n(self, n) -> int:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"the number of draws `n` must be a positive integer, got {n!r}")
        return n

    # ---- the networks, batched ----------------------------------------------------------------
    def features(self, y, mask):
        """The heads' conditioning for already-checked observations, in the network
        dtype: encoder features (B, F), the flattened standardised observations (B,
        n_obs; 0 where missing) and the flattened mask as 0/1 (B, n_obs)."""
        B = y.shape[0]
        dtype = DTYPES[self.dtype]
        m = mask.reshape(B, -1)
        ys = self.standardizer.y_to_std(y.reshape(B, -1), m).astype(dtype)
        f = jax.vmap(self.encoder)(ys.reshape(B, self.n_times, *self.obs_shape), mask)
        return f, ys, m.astype(dtype)

    def _to_state(self, u):
        """Standardised flat (..., n) → float64 states (..., *state)."""
        return self.standardizer.x_from_std(u).reshape(*u.shape[:-1], *self.state_shape)

    def standardise_x(self, x):
        """States (B, *state) → standardised flat (B, n) in the network dtype."""
        return self.standardizer.x_to_std(x.reshape(x.shape[0], -1)).astype(DTYPES[self.dtype])

    def __call__(self, y, mask):
        y, mask = self.check_observations(y, mask)
        return _point(self, y, mask)

    def sample(self, y, mask, key, n: int):
        y, mask = self.check_observations(y, mask)
        return _sample(self, y, mask, _as_key(key), n=self._check_n(n))

    def log_prob(self, x, y, mask, key=None):
        y, mask = self.check_observations(y, mask)
        x = self._check_x(x, y.shape[0])
        return _log_prob(self, x, y, mask, _as_key(jax.random.key(0) if key is None else key))

    def posterior(self, y, mask, key=None, n_samples: int = 0) -> Posterior:
        """The :class:`~vardax_core.Posterior` of each event: mean = the point estimate;
        the Gaussian head adds its covariance (dense Cholesky, low-rank + diagonal, or
        diagonal); with ``n_samples`` > 0 (needs ``key``) draws are attached, and for the
        flow and score heads ``std`` is the draws' standard deviation."""
        y, mask = self.check_observations(y, mask)
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 0:
            raise ValueError(f"`n_samples` must be a non-negative integer, got {n_samples!r}")
        if n_samples and key is None:
            raise ValueError("`posterior(..., n_samples > 0)` needs a `key`")
        samples = _sample(self, y, mask, _as_key(key), n=n_samples) if n_samples else None
        cfg = self.config
        provenance = {
            "method": "amortized", "head": cfg["head"]["type"], "encoder": cfg["encoder"]["type"],
            "problem_hash": cfg["problem_hash"], "format_version": cfg["format_version"],
            "point_estimate": "gaussian mean" if isinstance(self.head, GaussianHead) else f"mean of {self.head.point_draws} fixed-key draws of the head's distribution",
        }
        if isinstance(self.head, GaussianHead):
            mean, factor, diag = _gaussian(self, y, mask)
            return Posterior.create(mean, cov_factor=factor, cov_diag=diag, samples=samples, provenance=provenance)
        mean = _point(self, y, mask)
        std = jnp.std(samples, axis=1, ddof=1) if samples is not None and n_samples >= 2 else None
        return Posterior.create(mean, std=std, samples=samples, provenance=provenance)

    def as_analysis_step(self, problem: Problem | None = None, *, n_draws: int = 0):
        """This head as the analysis step of a forecast–analysis cycle
        (:class:`vardax_core.cycle.BackgroundConditionedStep`): each cycle, the head's
        posterior of the window start given (x_b, y) — x_b the previous analysis, y the
        cycle's observations — carried to the analysis time. ``problem`` (default: rebuilt
        from the model's config) must be the background-conditioned problem the head was
        trained on (same hash), e.g. ``lorenz96_cycling``. ``n_draws``: 0 for a Gaussian
        head's own covariance, else the covariance of that many draws (flow, score)."""
        from ..cycle import AmortizedAnalyser, BackgroundConditionedStep
        from ..problems import problem_from_config

        problem = problem_from_config(self.config["problem"]) if problem is None else problem
        if problem.hash != self.problem_hash:
            raise ValueError(f"as_analysis_step: `problem` (hash {problem.hash}) is not the problem this head "
                             f"was trained on (hash {self.problem_hash})")
        return BackgroundConditionedStep(problem, AmortizedAnalyser(self, n_draws))

    def realtime(self, *, draws: int = 0, key=None):
        """A :class:`~vardax_core.amortized.RealtimeAnalysis` of single events (T,
        *obs_shape) → point estimate (*state) [and ``draws`` samples], compiled now,
        checked now, not per call."""
        from ._realtime import RealtimeAnalysis

        return RealtimeAnalysis(self, draws=draws, key=key)


_COMPILED: dict = {}


def compiled(fn):
    """``fn(model, *arrays, **static)`` jitted once per *model structure*: the cache key
    is the structural config (``_Config`` equality: layout, encoder, head, dtype), the
    tree structure of the model's arrays and the static keyword arguments. Two models
    that differ only in weights, standardisation or provenance (e.g. the same
    architecture trained on complete and on gappy observations) share one compiled
    program. The non-array part of the model is a pure function of its structural
    config, so the one captured at the first call serves them all."""

    def wrapper(model: "AmortizedPosterior", *args, **static):
        arrays, rest = eqx.partition(model, eqx.is_array)
        key = (fn.__qualname__, model.meta, jax.tree_util.tree_structure(arrays), tuple(sorted(static.items())))
        f = _COMPILED.get(key)
        if f is None:
            f = _COMPILED[key] = jax.jit(lambda a, *xs: fn(eqx.combine(a, rest), *xs, **static))
        return f(arrays, *args)

    wrapper.__wrapped__ = fn
    return wrapper


@compiled
def _point(model: AmortizedPosterior, y, mask):
    return model._to_state(jax.vmap(model.head.point)(model.features(y, mask)))


@compiled
def _sample(model: AmortizedPosterior, y, mask, key, *, n: int):
    c = model.features(y, mask)
    u = jax.vmap(lambda cc, k: model.head.sample(cc, k, n))(c, jax.random.split(key, y.shape[0]))
    return model._to_state(u)


@compiled
def _log_prob(model: AmortizedPosterior, x, y, mask, key):
    c = model.features(y, mask)
    u = model.standardise_x(x)
    lp = jax.vmap(model.head.log_prob)(u, c, jax.random.split(key, y.shape[0]))
    return lp.astype(jnp.float64) - model.standardizer.log_det()


@compiled
def _gaussian(model: AmortizedPosterior, y, mask):
    mean, factor, diag = jax.vmap(model.head.gaussian)(model.features(y, mask))
    mean = model._to_state(mean)
    st = model.standardizer
    factor = None if factor is None else jax.vmap(st.scale_factor)(factor)
    if diag is not None:
        if st.whiten:  # pragma: no cover - excluded by construction (whitening needs a full head)
            raise ValueError("a diagonal covariance part cannot be mapped through whitening")
        diag = st.x_std**2 * diag.astype(jnp.float64)
    return mean, factor, diag


# ---- construction ------------------------------------------------------------------------------


def layout_of(problem: Problem) -> dict:
    return {"state_shape": list(problem.state_shape), "obs_shape": list(problem.obs_shape), "n_times": problem.n_times}


def resolve_model_config(config: dict | None, layout: dict) -> dict:
    """Defaults filled in and checked: ``{"encoder": …, "head": …, "dtype": …}``."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(_MODEL_KEYS))
    if unknown:
        raise ValueError(
            f"posterior config has unknown key(s) {', '.join(map(repr, unknown))}; valid: {', '.join(_MODEL_KEYS)}"
        )
    dtype = config.get("dtype", "float32")
    if dtype not in DTYPES:
        raise ValueError(f"posterior config: `dtype` must be one of {', '.join(DTYPES)}, got {dtype!r}")
    y_shape = (layout["n_times"], *layout["obs_shape"])
    n = math.prod(layout["state_shape"])
    return {
        "encoder": resolve_encoder_config(config.get("encoder"), y_shape),
        "head": resolve_head_config(config.get("head"), n),
        "dtype": dtype,
    }


def build_posterior(problem: Problem, config: dict | None = None, key=None) -> AmortizedPosterior:
    """An untrained :class:`AmortizedPosterior` for ``problem`` from a JSON-able config,
    e.g. ``{"encoder": {"type": "mlp", "features": 128}, "head": {"type": "gaussian",
    "covariance": "full"}, "dtype": "float32"}``. Unknown keys and invalid values raise
    ``ValueError``; the resolved config (defaults filled in) is stored in the model. The
    state statistics start at the prior's mean and marginal std (``fit`` replaces them
    with the training pairs' statistics)."""
    layout = layout_of(problem)
    full = {
        "format_version": FORMAT_VERSION,
        "code_version": __version__,
        "problem": problem.config,
        "problem_hash": problem.hash,
        "layout": layout,
        **resolve_model_config(config, layout),
        "training": None,
    }
    model = posterior_from_config(full, key if key is not None else jax.random.key(0))
    return model.with_standardizer(_prior_standardizer(problem.prior, model.standardizer))


@eqx.filter_jit
def _prior_standardizer(prior, current: Standardizer) -> Standardizer:
    """State statistics of the prior (mean, marginal std, Cholesky factor if whitening)."""
    std = jnp.sqrt(prior.cov.variance()).reshape(-1).astype(jnp.float64)
    chol = jnp.linalg.cholesky(prior.cov.as_matrix().astype(jnp.float64)) if current.whiten else None
    return Standardizer(prior.mean.reshape(-1).astype(jnp.float64), std, chol, current.y_mean, current.y_std)


def whitens(head_config: dict) -> bool:
    """States are whitened (full Cholesky) for heads whose Gaussian part is full;
    otherwise standardised per component."""
    if head_config["type"] == "gaussian":
        return head_config["covariance"] == "full"
    return head_config["precond_covariance"] == "full"


def posterior_from_config(config: dict, key=None) -> AmortizedPosterior:
    """The (freshly initialised) module described by a full stored config, as in
    ``model.config`` or a saved file. Checks the format version and re-resolves the
    encoder/head configs, so a config this code cannot build fails with a clear message."""
    _validate_stored(config)
    key = _as_key(key if key is not None else jax.random.key(0))
    return _construct(json.dumps(config, sort_keys=True), key)


def _validate_stored(config: dict) -> None:
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"amortized posterior format_version {version!r} is not supported by this code "
            f"(expects {FORMAT_VERSION}); retrain or convert the model"
        )
    for k in ("layout", "problem_hash", *_MODEL_KEYS):
        if k not in config:
            raise ValueError(f"amortized posterior config lacks `{k}`")
    layout = config["layout"]
    resolved = resolve_model_config({k: config[k] for k in _MODEL_KEYS}, layout)
    if resolved != {k: config[k] for k in _MODEL_KEYS}:
        raise ValueError("amortized posterior config is incomplete or has values this code resolves differently")


def _construct(config_json: str, key) -> AmortizedPosterior:
    config = json.loads(config_json)
    layout = config["layout"]
    y_shape = (layout["n_times"], *layout["obs_shape"])
    n = math.prod(layout["state_shape"])
    ke, kh = jax.random.split(key)
    encoder = build_encoder(config["encoder"], y_shape, ke)
    dtype = DTYPES[config["dtype"]]
    head = build_head(config["head"], n, encoder.out_dim, math.prod(y_shape), kh)
    encoder, head = cast_floats(encoder, dtype), cast_floats(head, dtype)
    return AmortizedPosterior(encoder, head, Standardizer.identity(n, math.prod(y_shape), whitens(config["head"])), config)


def posterior_skeleton(config: dict) -> AmortizedPosterior:
    """The module described by ``config``, freshly initialised: what saved weights are
    deserialised into. Validates the config like :func:`posterior_from_config`.

    Built concretely, not with ``eqx.filter_eval_shape``: flowjax's coupling layers keep
    a closure over their initial parameters (``get_ravelled_pytree_constructor``), which
    under ``eval_shape`` would hold tracers — a loaded flow head then failed in the first
    jitted call with an ``UnexpectedTracerError`` (the lorenz96 cycle's gates)."""
    _validate_stored(config)
    return _construct(json.dumps(config, sort_keys=True), jax.random.key(0))
