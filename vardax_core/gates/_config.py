"""Gate configuration: one JSON-able dataclass with the DESIGN defaults."""

from __future__ import annotations

import dataclasses
import json

from .._checks import DataclassConfig

#: SBC runs / events vmapped together by default (see ``GateConfig``, Batching).
DEFAULT_CHUNK = 256


@dataclasses.dataclass(frozen=True)
class GateConfig(DataclassConfig):
    """Thresholds and sample sizes of the three gates (defaults from DESIGN.md).

    Posterior agreement
        ``tolerance_sigma`` (1.0): an event agrees when max_i z_i <= tolerance_sigma,
        z_i = |mu_amort,i - mu_oracle,i| / sigma_oracle,i. ``min_fraction`` (0.95): the
        gate passes when the fraction of agreeing events is >= min_fraction.
        ``agreement_events``: at most this many (converged) oracle events; None = all.

    Adjoint calibration
        ``adjoint_statistic`` ("frobenius", the default): the head's and the
        reference's Jacobians ∂x/∂y are formed densely per event; the statistic is the
        pooled relative Frobenius error R = √(Σ_e ‖J_f − J_ref‖²_F / Σ_e ‖J_ref‖²_F)
        over ``adjoint_events`` events, debiased for the reference's Monte-Carlo
        variance; the gate passes when R < ``adjoint_threshold`` (0.05) and every
        event's own debiased ratio is < ``adjoint_tail`` (0.25), so no event may be
        arbitrarily wrong (``vardax_core.gates._jacobian``). ``adjoint_reference``:
        "auto" (the MCMC posterior-mean Jacobian when the oracle dataset stores one,
        else the oracle's implicit-function Jacobian), "mcmc" (required; an error when
        the dataset has none) or "ift".

        ``adjoint_statistic="operator-norm"`` (matrix-free, for states too large for
        dense Jacobians): ``adjoint_threshold`` on the relative operator-norm error
        ||J_f - J_o||_2 / ||J_o||_2 estimated by ``power_steps`` power iterations; the
        gate statistic is the ``adjoint_quantile`` (0.95) order statistic of that ratio
        over ``adjoint_events`` held-out events (passes when it is < threshold, i.e.
        when at least 95 % of events are below threshold). ``n_probes`` random probes
        per event give the (reported) per-probe relative errors. ``adjoint_hessian``
        ("exact", the default, or "gauss-newton", DESIGN.md's first definition): the Hessian of the oracle's
        implicit-function-theorem sensitivity. Both agree for a linear window; for a
        nonlinear one only "exact" is the derivative of the 4DVar analysis y ↦ x*(y)
        (the Gauss–Newton form drops the residual curvature and is not the Jacobian of
        any map, so no differentiable point estimate can match it more closely than
        the gap between the two — 10–20 % on lorenz96, see vardax_core.oracle's
        sensitivity module).

    Simulation-based calibration
        ``sbc_runs`` (N) prior draws, ``sbc_draws`` (L) posterior draws each; ranks in
        {0..L} are binned into ``sbc_bins`` bins, which must divide L + 1 exactly so that
        every bin holds the same number of rank values. chi^2 uniformity test per
        statistic, Holm correction across statistics, pass when the smallest
        Holm-adjusted p-value is > ``sbc_alpha`` (0.01).

    Batching
        ``sbc_chunk``, ``adjoint_chunk``, ``eval_chunk``: runs / events processed
        together by ``vmap`` inside the jitted loop (``chunked_map``); None = the
        default: 256 for SBC runs and point estimates; for the adjoint gate 1 on CPU
        and 128 on GPU/TPU. Why 1 there (measured on lorenz96, 50 events, warm): its
        reference solves a conjugate-gradient system per probe, and a vmapped block runs
        until its slowest event converges — chunk 64 took 3.3 / 6.9 / 5.3 s against
        3.2 / 3.9 / 3.2 s one at a time (Gaussian diag / full / flow heads), whereas SBC
        ran 4x (Gaussian) to 9x (flow) faster in blocks of 256. Results do not depend
        on these.

    Compilation
        ``fast_compile`` (False): compile the gates' jitted computations at XLA backend
        optimisation level 0 — several times faster to compile, slower to run (see
        ``vardax_core.gates._common.FAST_COMPILE_OPTIONS``): worth it for small
        problems and short runs (the linear_gaussian tests), not for lorenz96 heads.

    Diagnostics and figures
        ``coverage_levels`` points of the expected-coverage / TARP curves;
        ``band_simulations`` uniform-ECDF simulations for the simultaneous ECDF band.
    """

    # posterior agreement
    tolerance_sigma: float = 1.0
    min_fraction: float = 0.95
    agreement_events: int | None = None
    # adjoint calibration
    adjoint_threshold: float = 0.05
    adjoint_quantile: float = 0.95
    adjoint_events: int = 200
    n_probes: int = 8
    power_steps: int = 20
    adjoint_chunk: int | None = None
    adjoint_hessian: str = "exact"
    adjoint_statistic: str = "frobenius"
    adjoint_tail: float = 0.25
    adjoint_reference: str = "auto"
    # simulation-based calibration
    sbc_runs: int = 1000
    sbc_draws: int = 99
    sbc_bins: int = 20
    sbc_alpha: float = 0.01
    sbc_chunk: int | None = None
    # diagnostics / figures
    coverage_levels: int = 19
    band_simulations: int = 2000
    band_level: float = 0.99
    eval_chunk: int | None = None
    fast_compile: bool = False
    # skill scores on the agreement events (not a gate; vardax_core.gates.skill_scores)
    score_draws: int = 32

    def __post_init__(self):
        def need(cond, msg):
            if not cond:
                raise ValueError(f"GateConfig: {msg}")

        need(self.tolerance_sigma > 0, f"`tolerance_sigma` must be > 0, got {self.tolerance_sigma}")
        need(0 < self.min_fraction <= 1, f"`min_fraction` must be in (0, 1], got {self.min_fraction}")
        need(self.agreement_events is None or self.agreement_events >= 1,
             f"`agreement_events` must be >= 1 or None, got {self.agreement_events}")
        need(self.adjoint_threshold > 0, f"`adjoint_threshold` must be > 0, got {self.adjoint_threshold}")
        need(0 < self.adjoint_quantile <= 1, f"`adjoint_quantile` must be in (0, 1], got {self.adjoint_quantile}")
        for name in ("adjoint_events", "n_probes", "power_steps", "sbc_runs", "sbc_draws", "sbc_bins",
                     "coverage_levels", "band_simulations"):
            need(int(getattr(self, name)) >= 1, f"`{name}` must be >= 1, got {getattr(self, name)}")
        need(isinstance(self.score_draws, int) and (self.score_draws == 0 or self.score_draws >= 2),
             f"`score_draws` must be 0 (no skill scores) or an integer >= 2, got {self.score_draws!r}")
        for name in ("adjoint_chunk", "sbc_chunk", "eval_chunk"):
            v = getattr(self, name)
            need(v is None or int(v) >= 1, f"`{name}` must be >= 1 or None, got {v}")
        need(self.adjoint_hessian in ("gauss-newton", "exact"),
             f"`adjoint_hessian` must be 'gauss-newton' or 'exact', got {self.adjoint_hessian!r}")
        need(self.adjoint_statistic in ("frobenius", "operator-norm"),
             f"`adjoint_statistic` must be 'frobenius' or 'operator-norm', got {self.adjoint_statistic!r}")
        need(self.adjoint_reference in ("auto", "mcmc", "ift"),
             f"`adjoint_reference` must be 'auto', 'mcmc' or 'ift', got {self.adjoint_reference!r}")
        need(self.adjoint_tail >= self.adjoint_threshold,
             f"`adjoint_tail` ({self.adjoint_tail}) must be >= `adjoint_threshold` ({self.adjoint_threshold})")
        need(0 < self.sbc_alpha < 1, f"`sbc_alpha` must be in (0, 1), got {self.sbc_alpha}")
        need(0 < self.band_level < 1, f"`band_level` must be in (0, 1), got {self.band_level}")
        need(self.sbc_bins >= 2, f"`sbc_bins` must be >= 2, got {self.sbc_bins}")
        need((self.sbc_draws + 1) % self.sbc_bins == 0,
             f"`sbc_bins` ({self.sbc_bins}) must divide `sbc_draws` + 1 ({self.sbc_draws + 1}) so that every "
             "bin holds the same number of rank values (e.g. sbc_draws=99 with 10 or 20 bins)")
        need(self.sbc_runs / self.sbc_bins >= 5,
             f"`sbc_runs` / `sbc_bins` = {self.sbc_runs / self.sbc_bins:.1f} expected runs per bin; the chi^2 "
             "approximation needs >= 5: use more runs or fewer bins")

    def chunk(self, name: str) -> int:
        """The resolved value of ``sbc_chunk`` / ``adjoint_chunk`` / ``eval_chunk``."""
        v = getattr(self, name)
        if v is not None:
            return int(v)
        if name != "adjoint_chunk":
            return DEFAULT_CHUNK
        import jax

        return 1 if jax.default_backend() == "cpu" else 128

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> "GateConfig":
        return cls.from_dict(json.loads(s))
