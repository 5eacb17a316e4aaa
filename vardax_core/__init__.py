"""vardax_core: amortized posterior inference for variational data assimilation.

Importing the package enables float64 in JAX (``jax_enable_x64``): oracle solves and
gate statistics are computed in float64, as the design requires. Training code casts
to float32 explicitly where it wants to.
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from ._version import __version__ as __version__
from .posterior import Posterior as Posterior

__all__ = ["Posterior", "__version__"]
