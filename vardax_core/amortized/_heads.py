"""Heads: conditional densities q(u | c) over the standardised, flattened state u.

A head sees one event: ``u`` of shape (n,) (the state standardised with the training
statistics) and the conditioning ``c = (f, ỹ, m)``: the encoder's features f, the
flattened standardised observations ỹ (0 where missing) and the flattened mask m
(1.0 observed, 0.0 missing). Every head provides

- ``loss(u, c, key)``: its training objective for one event (scalar);
- ``point(c)``: a deterministic point estimate, differentiable in ``c``;
- ``sample(c, key, k)``: (k, n) draws;
- ``log_prob(u, c, key)``: log q(u | c) (exact for the Gaussian and flow heads; through
  the probability-flow ODE for the score head, where ``key`` drives Hutchinson probes);
- ``gaussian(c)``: ``(mean, cov_factor, cov_diag)`` when q is Gaussian, else None.

:class:`AmortizedPosterior` maps these back to state units.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import paramax

from ._nets import cast_floats, mlp, positive_int, resolve, zero_linear

_LOG_2PI = math.log(2 * math.pi)
#: The fixed key of the flow and score heads' point estimate (common random numbers).
_POINT_SEED = 20261206


def _point_base(n_draws: int, n: int, dtype, antithetic: bool):
    """(n_draws, n) standard-normal base draws from a fixed key; with ``antithetic`` half
    of them are the negatives of the other half (exact for the Gaussian part)."""
    key = jax.random.key(_POINT_SEED)
    if not antithetic:
        return jax.random.normal(key, (n_draws, n), dtype)
    half = jax.random.normal(key, (n_draws // 2, n), dtype)
    return jnp.concatenate([half, -half])


def _covariance_cholesky(C):
    """Lower Cholesky factor of the covariance (C Cᵀ)⁻¹ from the precision's lower
    Cholesky factor C (both (n, n))."""
    cov = jsl.cho_solve((C, True), jnp.eye(C.shape[-1], dtype=C.dtype))
    return jnp.linalg.cholesky(0.5 * (cov + cov.T))


def _zero_output_layer(node):
    if not isinstance(node, eqx.nn.MLP):
        return node
    last = jax.tree.map(lambda a: jnp.zeros_like(a) if eqx.is_inexact_array(a) else a, node.layers[-1])
    return eqx.tree_at(lambda m: m.layers[-1], node, last)


class AbstractHead(eqx.Module):
    n: eqx.AbstractVar[int]
    has_density: ClassVar[bool] = True

    def loss(self, u, c, key):  # pragma: no cover - abstract
        raise NotImplementedError

    def point(self, c):  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, c, key, k: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def log_prob(self, u, c, key=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def gaussian(self, c):
        return None


class _Trunk(eqx.Module):
    """f → hidden features (``depth`` hidden layers of ``width``); the mean is read out
    of them plus, with ``skip``, a linear path from f. ``depth=0`` has no hidden layers:
    the read-outs see a constant, so the head is a generalised linear model of f (its
    scale parameters are learned constants) — the right capacity when the posterior is
    linear-Gaussian in the features, and the least variance for a given number of pairs."""

    net: eqx.nn.MLP | None
    mean_out: eqx.nn.Linear
    skip: eqx.nn.Linear | None
    width: int = eqx.field(static=True)

    def __init__(self, in_dim: int, n: int, width: int, depth: int, act: str, skip: bool, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.net = mlp(in_dim, width, width, depth - 1, act, k1, final_act=True) if depth > 0 else None
        self.width = width if depth > 0 else 1
        self.mean_out = zero_linear(eqx.nn.Linear(self.width, n, key=k2), 0.1 if depth > 0 else 0.0)
        self.skip = zero_linear(eqx.nn.Linear(in_dim, n, key=k3), 0.1) if skip else None

    def __call__(self, f):
        h = self.net(f) if self.net is not None else jnp.zeros(1, f.dtype)
        mean = self.mean_out(h)
        if self.skip is not None:
            mean = mean + self.skip(f)
        return h, mean


class GaussianHead(AbstractHead):
    """q(u | c) = N(μ(c), Σ(c)) in standardised units, with ``covariance``:

    - ``"full"``: a base Gaussian N(ν(f), L(f) L(f)ᵀ) (L lower-triangular with a positive
      diagonal, read out of the trunk; ν also through the linear ``skip`` path) and,
      with ``obs_precision``, one learned *pseudo-observation* per observation slot j,
      counted only where the slot is observed (m_j = 1): a linear-Gaussian measurement
      a_j ≈ v_jᵀ u of unit variance with a_j = α_j ỹ_j + β_j (+ a trunk correction),
      ỹ_j the standardised observed value. The posterior is the Kalman/information
      combination

          Λ = (L Lᵀ)⁻¹ + Σ_j m_j v_j v_jᵀ,   μ = Λ⁻¹ ((L Lᵀ)⁻¹ ν + Σ_j m_j a_j v_j).

      This is the structure of a Gaussian posterior given observations with Gaussian
      noise, so the exact posterior of a linear-Gaussian problem is representable for
      every missing-data mask with few parameters (prior → base, v_j ∝ S g_j/σ_j,
      a_j affine in ỹ_j); for nonlinear problems it is a Gauss–Newton-like form with a
      feature-dependent base. Without ``obs_precision`` it is the plain Cholesky
      (moment) form N(ν, L Lᵀ). Everything goes through n × n Cholesky factors.
    - ``"lowrank"``: Σ = diag(d(c)) + F(c) F(c)ᵀ with F (n × ``rank``), mean read out directly;
    - ``"diag"``: Σ = diag(d(c)), mean read out directly.

    The point estimate is the mean μ(c). The output layers start at (near) zero.
    """

    trunk: _Trunk
    scale_out: eqx.nn.Linear
    obs_vectors: jax.Array | None
    obs_affine: jax.Array | None
    obs_out: eqx.nn.Linear | None
    n: int = eqx.field(static=True)
    covariance: str = eqx.field(static=True)
    rank: int = eqx.field(static=True)

    def __init__(self, n: int, cond_dim: int, n_obs: int, cfg: dict, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.n, self.covariance, self.rank = n, cfg["covariance"], cfg["rank"]
        self.trunk = _Trunk(cond_dim, n, cfg["width"], cfg["depth"], cfg["activation"], cfg["skip"], k1)
        n_scale = {"diag": n, "lowrank": n + n * self.rank, "full": n + n * (n - 1) // 2}[self.covariance]
        self.scale_out = zero_linear(eqx.nn.Linear(self.trunk.width, n_scale, key=k2), 0.0)
        self.obs_vectors = self.obs_affine = self.obs_out = None
        if self.covariance == "full" and cfg["obs_precision"]:
            self.obs_vectors = jax.random.normal(k3, (n_obs, n)) / math.sqrt(n)
            self.obs_affine = jnp.zeros((2, n_obs))  # a_j = α_j ỹ_j + β_j
            if self.trunk.net is not None:
                self.obs_out = zero_linear(eqx.nn.Linear(self.trunk.width, n_obs, key=k4), 0.0)

    def _params(self, c):
        h, mean = self.trunk(c[0])
        s = self.scale_out(h)
        return mean, s[: self.n], s[self.n :]  # mean (or η), log diagonal scale, the rest

    def _tril(self, log_diag, rest):
        n = self.n
        rows, cols = jnp.tril_indices(n, -1)
        return jnp.zeros((n, n), rest.dtype).at[rows, cols].set(rest) + jnp.diag(jnp.exp(log_diag))

    def _full(self, c):
        """(μ, C, precision): C is the lower Cholesky factor of the covariance
        (``precision`` False: plain Cholesky form) or of the precision (True)."""
        f, ys, m = c
        h, nu = self.trunk(f)
        s = self.scale_out(h)
        L = self._tril(s[: self.n], s[self.n :])
        if self.obs_vectors is None:
            return nu, L, False
        V = self.obs_vectors
        a = self.obs_affine[0] * ys + self.obs_affine[1]
        if self.obs_out is not None:
            a = a + self.obs_out(h)
        base_prec = jsl.cho_solve((L, True), jnp.eye(self.n, dtype=L.dtype))
        prec = base_prec + (V.T * m) @ V
        C = jnp.linalg.cholesky(0.5 * (prec + prec.T))
        eta = base_prec @ nu + V.T @ (m * a)
        return jsl.cho_solve((C, True), eta), C, True

    # whitening: r = A (u − μ) ~ N(0, I) under q, with log|det A|
    def whiten(self, u, c):
        if self.covariance == "full":
            mean, C, precision = self._full(c)
            if precision:
                return C.T @ (u - mean), jnp.sum(jnp.log(jnp.diag(C)))
            return jsl.solve_triangular(C, u - mean, lower=True), -jnp.sum(jnp.log(jnp.diag(C)))
        if self.covariance == "diag":
            mean, log_std, _ = self._params(c)
            return (u - mean) * jnp.exp(-log_std), -jnp.sum(log_std)
        raise ValueError("whitening needs covariance 'full' or 'diag'")

    def color(self, r, c):
        """The inverse of ``whiten`` for a batch of (k, n) standard-normal draws."""
        if self.covariance == "full":
            mean, C, precision = self._full(c)
            if precision:
                return mean + jsl.solve_triangular(C, r.T, lower=True, trans="T").T
            return mean + r @ C.T
        mean, log_diag, rest = self._params(c)
        return mean + jnp.exp(log_diag) * r

    def log_prob(self, u, c, key=None):
        if self.covariance in ("full", "diag"):
            r, logdet = self.whiten(u, c)
            return -0.5 * jnp.sum(r * r) + logdet - 0.5 * self.n * _LOG_2PI
        # lowrank: Σ = D + F Fᵀ, Woodbury identity and the matrix determinant lemma
        mean, log_diag, rest = self._params(c)
        r = u - mean
        F = rest.reshape(self.n, self.rank)
        d_inv = jnp.exp(-2 * log_diag)
        Ft_dinv = F.T * d_inv
        cap = jnp.eye(self.rank, dtype=u.dtype) + Ft_dinv @ F
        cap_chol = jnp.linalg.cholesky(cap)
        w = jsl.solve_triangular(cap_chol, Ft_dinv @ r, lower=True)
        quad = jnp.sum(r * r * d_inv) - jnp.sum(w * w)
        logdet = 2 * jnp.sum(log_diag) + 2 * jnp.sum(jnp.log(jnp.diag(cap_chol)))
        return -0.5 * (quad + logdet + self.n * _LOG_2PI)

    def loss(self, u, c, key=None):
        return -self.log_prob(u, c)

    def point(self, c):
        if self.covariance == "full":
            return self._full(c)[0]
        return self.trunk(c[0])[1]

    def sample(self, c, key, k: int):
        if self.covariance in ("full", "diag"):
            return self.color(jax.random.normal(key, (k, self.n), c[0].dtype), c)
        mean, log_diag, rest = self._params(c)
        k1, k2 = jax.random.split(key)
        draws = mean + jnp.exp(log_diag) * jax.random.normal(k1, (k, self.n), mean.dtype)
        return draws + jax.random.normal(k2, (k, self.rank), mean.dtype) @ rest.reshape(self.n, self.rank).T

    def gaussian(self, c):
        """(mean, covariance factor, diagonal): full → the covariance's Cholesky factor."""
        if self.covariance == "full":
            mean, C, precision = self._full(c)
            if not precision:
                return mean, C, None
            return mean, _covariance_cholesky(C), None
        mean, log_diag, rest = self._params(c)
        if self.covariance == "lowrank":
            return mean, rest.reshape(self.n, self.rank), jnp.exp(2 * log_diag)
        return mean, None, jnp.exp(2 * log_diag)


class GaussianPreconditioner(eqx.Module):
    """The Gaussian approximation under the flow and score heads: a :class:`GaussianHead`
    (``precond_covariance`` "full" or "diag") trained by its own likelihood. The flow or
    score model describes the whitened residual r = A(u − μ) (≈ N(0, I) when the
    Gaussian is right), with gradients stopped at μ and A, and the exact density is
    log q(u) = log q_r(r) + log|det A|. Its mean μ(c) is a regression of the posterior
    mean and serves as the head's point estimate."""

    gauss: GaussianHead

    def __init__(self, n: int, cond_dim: int, n_obs: int, cfg: dict, key):
        gcfg = {
            "covariance": cfg["precond_covariance"], "rank": 1, "obs_precision": cfg["obs_precision"],
            "width": cfg["precond_width"], "depth": cfg["precond_depth"], "activation": cfg["activation"],
            "skip": cfg["precond_skip"],
        }
        self.gauss = GaussianHead(n, cond_dim, n_obs, gcfg, key)

    def loss(self, u, c):
        return self.gauss.loss(u, c)

    def mean(self, c):
        return self.gauss.point(c)

    def whiten_fixed(self, u, c):
        """r with the Gaussian's parameters held fixed (stop-gradient): the flow/score
        training target."""
        frozen = jax.tree.map(lambda a: jax.lax.stop_gradient(a) if eqx.is_array(a) else a, self.gauss)
        return frozen.whiten(u, c)

    def whiten(self, u, c):
        return self.gauss.whiten(u, c)

    def color(self, r, c):
        return self.gauss.color(r, c)


GAUSSIAN_DEFAULTS = {
    "covariance": "full", "rank": 8, "obs_precision": True, "width": 256, "depth": 2, "activation": "gelu", "skip": True,
}
PRECOND_DEFAULTS = {
    "precond_covariance": "full", "obs_precision": True, "precond_width": 256, "precond_depth": 2, "precond_skip": True,
}


def _check_bool(section: str, cfg: dict, name: str) -> None:
    if not isinstance(cfg[name], bool):
        raise ValueError(f"{section}: `{name}` must be true or false, got {cfg[name]!r}")


def _check_full(section: str, n: int) -> None:
    if n > 512:
        raise ValueError(
            f"{section}: a full covariance over {n} state components needs {n * (n + 1) // 2} outputs "
            "per event and an n × n Cholesky factor; use 'lowrank' or 'diag' for states this large"
        )


def resolve_gaussian_config(cfg: dict, n: int) -> dict:
    cfg = resolve("head (gaussian)", cfg, GAUSSIAN_DEFAULTS)
    if cfg["covariance"] not in ("diag", "lowrank", "full"):
        raise ValueError(f"head (gaussian): `covariance` must be 'diag', 'lowrank' or 'full', got {cfg['covariance']!r}")
    positive_int("head (gaussian)", cfg, "rank", "width")
    positive_int("head (gaussian)", cfg, "depth", minimum=0)
    _check_bool("head (gaussian)", cfg, "obs_precision")
    _check_bool("head (gaussian)", cfg, "skip")
    if cfg["covariance"] == "full":
        _check_full("head (gaussian)", n)
    return cfg


def _resolve_precond(section: str, cfg: dict, n: int) -> None:
    if cfg["precond_covariance"] not in ("full", "diag"):
        raise ValueError(f"{section}: `precond_covariance` must be 'full' or 'diag', got {cfg['precond_covariance']!r}")
    if cfg["precond_covariance"] == "full":
        _check_full(section, n)
    positive_int(section, cfg, "precond_width")
    positive_int(section, cfg, "precond_depth", minimum=0)
    _check_bool(section, cfg, "obs_precision")
    _check_bool(section, cfg, "precond_skip")


# ---- flow head ----------------------------------------------------------------------------


class ConditionalFlowHead(AbstractHead):
    """A flowjax conditional normalizing flow (``cond_dim`` = the encoder's features) on
    the whitened residual of a :class:`GaussianPreconditioner`:

        r = A(c)(u − μ(c)),   r ~ flow(· | f),   log q(u|c) = log q_flow(r|f) + log|det A(c)|

    (exact). The flow only has to describe what the Gaussian misses, and starts close
    to the identity. ``flow="coupling"`` (RealNVP-style coupling layers) or ``"maf"`` (masked
    autoregressive), with ``transformer="rqs"`` (rational-quadratic splines on
    [−interval, interval], identity outside) or ``"affine"``.

    Point estimate: the mean of this head's own distribution, E_q[u | c] = μ(c) +
    A(c)⁻¹ E[T(z; f)], estimated with ``point_draws`` (16) antithetic base draws ±z_k
    from a fixed key — deterministic and differentiable in y (common random numbers), so
    the estimate the gates check, its Jacobian, the samples and the density all belong to
    one distribution. Antithetic pairs make it exact when the flow is the identity (the
    Gaussian part) and cancel every odd-order term of the flow's departure from it. It
    costs ``point_draws`` flow passes per event instead of one: the price of reporting
    this distribution's mean (benchmarks/amortized.py measures it).
    """

    pre: GaussianPreconditioner
    flow: eqx.Module
    n: int = eqx.field(static=True)
    point_draws: int = eqx.field(static=True)

    def __init__(self, n: int, cond_dim: int, n_obs: int, cfg: dict, key):
        from flowjax.bijections import RationalQuadraticSpline
        from flowjax.distributions import Normal
        from flowjax.flows import coupling_flow, masked_autoregressive_flow

        from ._nets import activation

        k1, k2 = jax.random.split(key)
        self.n = n
        self.point_draws = cfg["point_draws"]
        self.pre = GaussianPreconditioner(n, cond_dim, n_obs, cfg, k1)
        transformer = RationalQuadraticSpline(knots=cfg["knots"], interval=cfg["interval"]) if cfg["transformer"] == "rqs" else None
        make = coupling_flow if cfg["flow"] == "coupling" else masked_autoregressive_flow
        flow = make(
            k2, base_dist=Normal(jnp.zeros(n)), transformer=transformer, cond_dim=cond_dim,
            flow_layers=cfg["flow_layers"], nn_width=cfg["nn_width"], nn_depth=cfg["nn_depth"],
            nn_activation=activation(cfg["activation"]), invert=True,
        )
        # zero output layers of the conditioners: flowjax's transformers are then at their
        # initial (identity) parameters, so the untrained head equals its Gaussian part
        self.flow = jax.tree.map(_zero_output_layer, flow, is_leaf=lambda node: isinstance(node, eqx.nn.MLP))

    # flowjax's public log_prob/sample convert inputs to the default float, and its
    # parametrisations build constants from Python floats at every call: under x64 both
    # are float64 and would promote a float32 network. The bijection is therefore used
    # directly, cast to the input dtype, and traced with x64 off when that is float32.
    # The base distribution is a fixed standard normal.
    def _apply(self, method: str, v, c):
        ctx = jax.enable_x64(False) if v.dtype == jnp.float32 else contextlib.nullcontext()
        with ctx, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Explicitly requested dtype", category=UserWarning)
            bij = cast_floats(paramax.unwrap(self.flow.bijection), v.dtype)
            return getattr(bij, method)(v, c)

    def _flow_log_prob(self, r, c):
        z, log_det = self._apply("inverse_and_log_det", r, c)
        return -0.5 * jnp.sum(z * z) - 0.5 * self.n * _LOG_2PI + log_det

    def loss(self, u, c, key):
        """The Gaussian part's NLL plus the whole head's NLL −log q(u | c) with the
        Gaussian part held fixed: both proper NLLs of u, so the sum (the early-stopping
        criterion) falls as either part improves."""
        r, logdet = self.pre.whiten_fixed(u, c)
        return self.pre.loss(u, c) - self._flow_log_prob(r, c[0]) - logdet

    def point(self, c):
        z = _point_base(self.point_draws, self.n, c[0].dtype, antithetic=True)
        r = jax.vmap(lambda zz: self._apply("transform", zz, c[0]))(z)
        return self.pre.color(jnp.mean(r, axis=0, keepdims=True), c)[0]

    def log_prob(self, u, c, key=None):
        r, logdet = self.pre.whiten(u, c)
        return self._flow_log_prob(r, c[0]) + logdet

    def sample(self, c, key, k: int):
        z = jax.random.normal(key, (k, self.n), c[0].dtype)
        r = jax.vmap(lambda zz: self._apply("transform", zz, c[0]))(z)
        return self.pre.color(r, c)


FLOW_DEFAULTS = {
    "flow": "coupling", "transformer": "rqs", "flow_layers": 6, "nn_width": 64, "nn_depth": 2,
    "knots": 8, "interval": 5.0, "activation": "gelu", "point_draws": 16, **PRECOND_DEFAULTS,
}


def _check_point_draws(where: str, cfg: dict) -> None:
    positive_int(where, cfg, "point_draws")
    if cfg["point_draws"] % 2:
        raise ValueError(f"{where}: `point_draws` must be even (antithetic pairs), got {cfg['point_draws']}")


def resolve_flow_config(cfg: dict, n: int) -> dict:
    cfg = resolve("head (flow)", cfg, FLOW_DEFAULTS)
    _resolve_precond("head (flow)", cfg, n)
    if cfg["flow"] not in ("coupling", "maf"):
        raise ValueError(f"head (flow): `flow` must be 'coupling' or 'maf', got {cfg['flow']!r}")
    if cfg["transformer"] not in ("rqs", "affine"):
        raise ValueError(f"head (flow): `transformer` must be 'rqs' or 'affine', got {cfg['transformer']!r}")
    positive_int("head (flow)", cfg, "flow_layers", "nn_width", "nn_depth", "knots")
    _check_point_draws("head (flow)", cfg)
    if not float(cfg["interval"]) > 0:
        raise ValueError(f"head (flow): `interval` must be > 0, got {cfg['interval']!r}")
    cfg["interval"] = float(cfg["interval"])
    if n < 2:
        raise ValueError("head (flow): a flow needs a state of at least 2 components")
    return cfg


# ---- score head ---------------------------------------------------------------------------


class ScoreDiffusionHead(AbstractHead):
    """A conditional score model under the variance-preserving SDE

        dr = −½ β(t) r dt + √β(t) dW,   β(t) = β_min + t (β_max − β_min),   t ∈ [0, 1],

    on the whitened residual r = A(c)(u − μ(c)) of a :class:`GaussianPreconditioner`
    (≈ N(0, I) when the Gaussian is right).
    The network predicts the noise, ε_θ(r_t, t, c) = σ_t r_t + MLP(r_t, t, c) (the first
    term is the exact answer for a standard-normal residual; the MLP's output layer
    starts at zero), and is trained by denoising score matching, ‖ε_θ − ε‖² with
    stratified t ~ U(t_eps, 1) (``dsm_draws`` per event); the score is −ε_θ / σ_t.

    - ``sample``: the reverse SDE from N(0, I) at t = 1 down to t_eps, Euler–Maruyama
      with ``sample_steps`` constant steps in diffrax (diagonal diffusion as a
      ``lineax.DiagonalLinearOperator``), then one Tweedie denoising step.
    - ``point``: the mean of this head's own distribution, the average of
      ``point_draws`` (8) reverse-SDE draws from a fixed key (common random numbers:
      deterministic and differentiable in y, both modes), in antithetic pairs — start
      ±r₁ with Brownian increments ±ΔW — so that the average is exact when the
      residual is Gaussian (a linear reverse SDE) and the estimate the gates check and
      the samples come from one distribution. It costs ``point_draws`` × ``sample_steps``
      network passes per event.
    - ``log_prob``: the probability-flow ODE from t_eps to 1 (Tsit5, adaptive), carrying
      the divergence of its vector field: exact (``jacfwd``) when n ≤
      ``exact_trace_max_dim``, else Hutchinson's estimator with ``hutchinson_probes``
      Rademacher probes drawn from ``key``. It is the density of the model at t_eps.
    """

    pre: GaussianPreconditioner
    net: eqx.nn.MLP
    n: int = eqx.field(static=True)

    n_freq: int = eqx.field(static=True)
    beta_min: float = eqx.field(static=True)
    beta_max: float = eqx.field(static=True)
    t_eps: float = eqx.field(static=True)
    sample_steps: int = eqx.field(static=True)
    dsm_draws: int = eqx.field(static=True)
    exact_trace_max_dim: int = eqx.field(static=True)
    hutchinson_probes: int = eqx.field(static=True)
    ode_rtol: float = eqx.field(static=True)
    ode_atol: float = eqx.field(static=True)
    point_draws: int = eqx.field(static=True)

    def __init__(self, n: int, cond_dim: int, n_obs: int, cfg: dict, key):
        k1, k2 = jax.random.split(key)
        self.n = n
        self.pre = GaussianPreconditioner(n, cond_dim, n_obs, cfg, k1)
        self.n_freq = cfg["time_features"]
        net = mlp(n + 2 * self.n_freq + cond_dim, n, cfg["width"], cfg["depth"], cfg["activation"], k2)
        self.net = eqx.tree_at(lambda m: m.layers[-1], net, zero_linear(net.layers[-1], 0.0))
        self.beta_min, self.beta_max, self.t_eps = float(cfg["beta_min"]), float(cfg["beta_max"]), float(cfg["t_eps"])
        self.sample_steps, self.dsm_draws = cfg["sample_steps"], cfg["dsm_draws"]
        self.exact_trace_max_dim, self.hutchinson_probes = cfg["exact_trace_max_dim"], cfg["hutchinson_probes"]
        self.ode_rtol, self.ode_atol = float(cfg["ode_rtol"]), float(cfg["ode_atol"])
        self.point_draws = cfg["point_draws"]

    # ---- the SDE --------------------------------------------------------------------
    def _beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def _alpha_sigma(self, t):
        log_alpha = -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min
        return jnp.exp(log_alpha), jnp.sqrt(-jnp.expm1(2 * log_alpha))

    def _eps(self, r_t, t, f):
        t = jnp.asarray(t, r_t.dtype)
        freqs = jnp.pi * 2.0 ** jnp.arange(self.n_freq, dtype=r_t.dtype)
        temb = jnp.concatenate([jnp.sin(freqs * t), jnp.cos(freqs * t)])
        _, sigma = self._alpha_sigma(t)
        return sigma * r_t + self.net(jnp.concatenate([r_t, temb, f]))

    # ---- training ---------------------------------------------------------------------
    def loss(self, u, c, key):
        r, _ = self.pre.whiten_fixed(u, c)
        kt, ke = jax.random.split(key)
        k = self.dsm_draws
        strata = (jnp.arange(k, dtype=u.dtype) + jax.random.uniform(kt, (k,), u.dtype)) / k
        t = self.t_eps + (1.0 - self.t_eps) * strata
        eps = jax.random.normal(ke, (k, self.n), u.dtype)
        alpha, sigma = self._alpha_sigma(t)
        r_t = alpha[:, None] * r + sigma[:, None] * eps
        pred = jax.vmap(self._eps, in_axes=(0, 0, None))(r_t, t, c[0])
        return self.pre.loss(u, c) + jnp.mean(jnp.sum((pred - eps) ** 2, axis=-1))

    # ---- inference --------------------------------------------------------------------
    def point(self, c):
        half = self.point_draws // 2
        r1 = _point_base(self.point_draws, self.n, c[0].dtype, antithetic=True)
        keys = jax.random.split(jax.random.key(_POINT_SEED + 1), half)
        keys = jnp.concatenate([keys, keys])
        sign = jnp.concatenate([jnp.ones(half, c[0].dtype), -jnp.ones(half, c[0].dtype)])
        r0 = jax.vmap(lambda r, kk, sg: self._reverse_sde(r, c[0], kk, both_modes=True, sign=sg))(r1, keys, sign)
        return self.pre.color(jnp.mean(r0, axis=0, keepdims=True), c)[0]

    def _reverse_sde(self, r1, f, key, both_modes: bool = False, sign=1.0):
        import diffrax
        import lineax

        T = 1.0 - self.t_eps  # integrate in s = 1 − t from 0 to T

        def drift(s, r, args):
            t = 1.0 - s
            _, sigma = self._alpha_sigma(t)
            beta = self._beta(t).astype(r.dtype)
            return 0.5 * beta * r - beta * self._eps(r, t, f) / sigma.astype(r.dtype)

        def diffusion(s, r, args):
            return lineax.DiagonalLinearOperator(jnp.full(r.shape, jnp.sqrt(self._beta(1.0 - s)), r.dtype))

        if both_modes:
            # the same Euler–Maruyama increments from a Brownian path fixed on the step grid
            # (linear interpolation of its values), which reverse-mode adjoints accept
            ts = jnp.linspace(0.0, T, self.sample_steps + 1, dtype=r1.dtype)
            dw = sign * jax.random.normal(key, (self.sample_steps, *r1.shape), r1.dtype) * jnp.sqrt(T / self.sample_steps)
            w = jnp.concatenate([jnp.zeros((1, *r1.shape), r1.dtype), jnp.cumsum(dw, axis=0)])
            bm = diffrax.LinearInterpolation(ts, w)
        else:
            bm = diffrax.UnsafeBrownianPath(jax.ShapeDtypeStruct(r1.shape, r1.dtype), key)
        terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, bm))
        sol = diffrax.diffeqsolve(
            terms, diffrax.Euler(), 0.0, T, dt0=T / self.sample_steps, y0=r1,
            saveat=diffrax.SaveAt(t1=True), max_steps=self.sample_steps + 1,
            # sampling is differentiated forward-mode only; the point estimate both ways
            adjoint=diffrax.DirectAdjoint() if both_modes else diffrax.ForwardMode(),
        )
        r = sol.ys[-1]
        alpha, sigma = self._alpha_sigma(self.t_eps)
        return (r - sigma * self._eps(r, self.t_eps, f)) / alpha  # Tweedie: E[r_0 | r_eps]

    def sample(self, c, key, k: int):
        k0, k1 = jax.random.split(key)
        r1 = jax.random.normal(k0, (k, self.n), c[0].dtype)
        r0 = jax.vmap(lambda r, kk: self._reverse_sde(r, c[0], kk))(r1, jax.random.split(k1, k))
        return self.pre.color(r0, c)

    def log_prob(self, u, c, key=None):
        import diffrax

        r0, logdet = self.pre.whiten(u, c)
        exact = self.n <= self.exact_trace_max_dim
        if not exact:
            key = jax.random.key(0) if key is None else key
            probes = jax.random.rademacher(key, (self.hutchinson_probes, self.n), dtype=r0.dtype)

        def vector_field(t, state, args):
            r, _ = state
            beta = self._beta(t).astype(r.dtype)
            _, sigma = self._alpha_sigma(t)

            def f(x):
                return -0.5 * beta * x + 0.5 * beta * self._eps(x, t, c[0]) / sigma.astype(x.dtype)

            if exact:
                dr, jac = f(r), jax.jacfwd(f)(r)
                div = jnp.trace(jac)
            else:
                dr, jv = jax.vmap(lambda v: jax.jvp(f, (r,), (v,)))(probes)
                dr, div = dr[0], jnp.mean(jnp.sum(probes * jv, axis=-1))
            return dr, div

        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(vector_field), diffrax.Tsit5(), self.t_eps, 1.0, dt0=0.02,
            y0=(r0, jnp.zeros((), r0.dtype)),
            stepsize_controller=diffrax.PIDController(rtol=self.ode_rtol, atol=self.ode_atol),
            saveat=diffrax.SaveAt(t1=True), max_steps=4096,
        )
        r1, integral = sol.ys[0][-1], sol.ys[1][-1]
        return -0.5 * jnp.sum(r1 * r1) - 0.5 * self.n * _LOG_2PI + integral + logdet


SCORE_DEFAULTS = {
    "width": 256, "depth": 3, "activation": "gelu", "time_features": 8, "beta_min": 0.1, "beta_max": 20.0,
    "t_eps": 1e-3, "sample_steps": 200, "dsm_draws": 4, "exact_trace_max_dim": 64, "hutchinson_probes": 1,
    "ode_rtol": 1e-5, "ode_atol": 1e-5, "point_draws": 8, **PRECOND_DEFAULTS,
}


def resolve_score_config(cfg: dict, n: int) -> dict:
    cfg = resolve("head (score)", cfg, SCORE_DEFAULTS)
    _resolve_precond("head (score)", cfg, n)
    positive_int(
        "head (score)", cfg, "width", "depth", "time_features", "sample_steps", "dsm_draws",
        "exact_trace_max_dim", "hutchinson_probes",
    )
    _check_point_draws("head (score)", cfg)
    for k in ("beta_min", "beta_max", "t_eps", "ode_rtol", "ode_atol"):
        cfg[k] = float(cfg[k])
        if not cfg[k] > 0:
            raise ValueError(f"head (score): `{k}` must be > 0, got {cfg[k]!r}")
    if not cfg["beta_max"] > cfg["beta_min"] or not cfg["t_eps"] < 0.5:
        raise ValueError("head (score): need beta_max > beta_min and t_eps < 0.5")
    return cfg


HEADS = {
    "gaussian": (GaussianHead, resolve_gaussian_config),
    "flow": (ConditionalFlowHead, resolve_flow_config),
    "score": (ScoreDiffusionHead, resolve_score_config),
}


def resolve_head_config(config: dict | None, n: int) -> dict:
    config = dict(config or {"type": "gaussian"})
    kind = config.pop("type", "gaussian")
    if kind not in HEADS:
        raise ValueError(f"unknown head type {kind!r}; choose one of {', '.join(HEADS)}")
    return {"type": kind, **HEADS[kind][1](config, n)}


def build_head(cfg: dict, n: int, cond_dim: int, n_obs: int, key) -> AbstractHead:
    cfg = dict(cfg)
    return HEADS[cfg.pop("type")][0](n, cond_dim, n_obs, cfg, key)
