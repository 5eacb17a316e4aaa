"""Step 2 of the cycle: the 4DVar oracle.

- :class:`StrongFourDVar` (L-BFGS) and :class:`IncrementalFourDVar` (Gauss–Newton + CG)
  solve strong-constraint 4DVar for a batch of events in the control variable
  x₀ = x_b + B^½ v, jitted and vmapped; :class:`MultiStart` wraps either for
  non-convex windows. Each returns a :class:`FourDVarResult` with reason codes
  (:data:`REASONS`).
- :func:`laplace_posterior` (and :func:`laplace_covariance`) give the Gauss–Newton
  Laplace posterior at the minimum; :func:`sensitivity_jvp` / :func:`sensitivity_vjp`
  the observation sensitivity ∂x*/∂y (:func:`sensitivity_matrix` dense, for small states).
- :func:`mcmc_reference` samples the exact posterior exp(−J) by HMC from the MAP,
  preconditioned by the Laplace covariance: a :class:`ReferencePosterior` with mixing
  and Laplace-validity diagnostics per event (settings: :class:`ReferenceConfig`).
- :class:`OracleAnalysis` is the oracle behind the shared analysis interface.
- :func:`solve_to_store` / :class:`OracleStoreWriter` write the ``oracle`` Zarr
  dataset chunk by chunk, resumably; :func:`open_oracle` reads it back validated.
"""

from ._analysis import OracleAnalysis as OracleAnalysis
from ._base import AbstractFourDVar as AbstractFourDVar
from ._incremental import IncrementalFourDVar as IncrementalFourDVar
from ._laplace import DENSE_MAX_STATE as DENSE_MAX_STATE
from ._laplace import LowRankLaplaceCovariance as LowRankLaplaceCovariance
from ._laplace import laplace_covariance as laplace_covariance
from ._laplace import laplace_posterior as laplace_posterior
from ._multistart import MultiStart as MultiStart
from ._reference import ReferenceConfig as ReferenceConfig
from ._reference import ReferencePosterior as ReferencePosterior
from ._reference import mcmc_reference as mcmc_reference
from ._result import CONVERGED as CONVERGED
from ._result import INVALID_INPUT as INVALID_INPUT
from ._result import MAX_ITERATIONS as MAX_ITERATIONS
from ._result import NONFINITE as NONFINITE
from ._result import REASONS as REASONS
from ._result import STALLED as STALLED
from ._result import FourDVarResult as FourDVarResult
from ._sensitivity import sensitivity_jvp as sensitivity_jvp
from ._sensitivity import sensitivity_matrix as sensitivity_matrix
from ._sensitivity import sensitivity_vjp as sensitivity_vjp
from ._strong import StrongFourDVar as StrongFourDVar
from ._store import ORACLE as ORACLE
from ._store import OracleStoreWriter as OracleStoreWriter
from ._store import open_oracle as open_oracle
from ._store import solve_to_store as solve_to_store
