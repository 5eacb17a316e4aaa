"""Problems and solver settings shared by the oracle tests.

Compilation dominates these tests' time, and a compiled program is reused only for the
same problem configuration, batch shape and solver settings: the modules use these.
"""

import jax

from vardax_core.oracle import IncrementalFourDVar, StrongFourDVar
from vardax_core.problems import get_problem

#: linear_gaussian 1D with 20% of the observations missing; batches of 8 events.
LG_EVENTS = 8
#: tolerances for comparisons with the closed form at 1e-8
STRONG_EXACT = StrongFourDVar(gtol=1e-11)
INCREMENTAL_EXACT = IncrementalFourDVar(gtol=1e-11, inner_rtol=1e-13, max_inner=2000)
#: lorenz63 observing z only with a weak prior: non-convex; batches of 16 events.
L63_EVENTS = 16


def lg_problem():
    return get_problem("linear_gaussian", missing_fraction=0.2)


def l63_problem():
    return get_problem("lorenz63", observed=(2,), prior_std=10.0)


def l63_events():
    """(problem, x, y, mask) for the 16 lorenz63 events every module uses."""
    p = l63_problem()
    return (p, *p.simulate(jax.random.key(1), L63_EVENTS))
