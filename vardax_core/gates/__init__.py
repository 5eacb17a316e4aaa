"""The three validation gates that decide promotion, with diagnostics and figures.

1. :func:`posterior_agreement` — the head's point estimate within ``tolerance_sigma``
   oracle standard deviations on a ``min_fraction`` of held-out events.
2. :func:`adjoint_calibration` — ∂x̂/∂y against a reference Jacobian: the MCMC
   posterior-mean Jacobian stored with the oracle (:class:`MCMCReference`) or the
   oracle's implicit-function Jacobian, compared densely (:func:`compare_jacobians`,
   pooled Frobenius error with a per-event tail bound) or matrix-free by jvp/vjp probing
   and power iteration (:func:`compare_linear_operators`, shared with the emulator's
   :func:`emulator_jacobian_calibration`).
3. :func:`sbc` — simulation-based calibration: rank uniformity per state component, the
   observation misfit and log q, chi^2 tests with a Holm correction.

:class:`GateProfile` says which settings may certify a head: ``release`` (the defaults,
or stricter) or ``exploration`` (anything weaker; never certifies).

:func:`run_gates` runs all three with the diagnostics (coverage, TARP, z-scores,
contraction) and figures, and returns a :class:`GateReport`. Every posterior follows
one protocol: ``posterior(y, mask)`` → (B, *state), ``posterior.sample(y, mask, key,
n)`` → (B, n, *state) and, when ``posterior.has_density``, ``posterior.log_prob(x, y,
mask)`` → (B,).
"""

from ._adjoint import KalmanReference as KalmanReference
from ._adjoint import MCMCReference as MCMCReference
from ._adjoint import OracleReference as OracleReference
from ._adjoint import PosteriorReference as PosteriorReference
from ._adjoint import adjoint_calibration as adjoint_calibration
from ._adjoint import compare_linear_operators as compare_linear_operators
from ._adjoint import emulator_jacobian_calibration as emulator_jacobian_calibration
from ._adjoint import gaussian_probes as gaussian_probes
from ._adjoint import linear_operator as linear_operator
from ._adjoint import operator_gate as operator_gate
from ._adjoint import reference_jacobians as reference_jacobians
from ._jacobian import compare_jacobians as compare_jacobians
from ._jacobian import jacobian_gate as jacobian_gate
from ._jacobian import point_jacobian as point_jacobian
from ._agreement import agreement_from_estimates as agreement_from_estimates
from ._agreement import posterior_agreement as posterior_agreement
from ._config import GateConfig as GateConfig
from ._diagnostics import sbc_diagnostics as sbc_diagnostics
from ._figures import gate_figures as gate_figures
from ._figures import simultaneous_ecdf_band as simultaneous_ecdf_band
from ._profile import EXPLORATION as EXPLORATION
from ._profile import RELEASE as RELEASE
from ._profile import RELEASE_VERSION as RELEASE_VERSION
from ._profile import GateProfile as GateProfile
from ._profile import gates_source_hash as gates_source_hash
from ._profile import is_current_release as is_current_release
from ._profile import release_profile as release_profile
from ._profile import verdict_settings_json as verdict_settings_json
from ._profile import weaker_settings as weaker_settings
from ._report import GATE_NAMES as GATE_NAMES
from ._report import GateReport as GateReport
from ._report import GateResult as GateResult
from ._run import read_oracle as read_oracle
from ._run import run_gates as run_gates
from ._sbc import SBCSimulation as SBCSimulation
from ._scores import crps as crps
from ._scores import energy_score as energy_score
from ._scores import skill_scores as skill_scores
from ._sbc import holm as holm
from ._sbc import rank_uniformity as rank_uniformity
from ._sbc import sbc as sbc
from ._sbc import sbc_gate as sbc_gate
from ._sbc import sbc_simulation_arrays as sbc_simulation_arrays
from ._sbc import simulate_sbc as simulate_sbc
from ._sbc import statistic_names as statistic_names
