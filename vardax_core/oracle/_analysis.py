"""The oracle behind the shared analysis interface: observations in, posterior out."""

from __future__ import annotations

import equinox as eqx

from ..posterior import Posterior
from ..problems import Problem
from ._base import AbstractFourDVar
from ._laplace import _resolve_method, laplace_posterior
from ._multistart import MultiStart
from ._result import FourDVarResult
from ._strong import StrongFourDVar


class OracleAnalysis(eqx.Module):
    """4DVar + Laplace as an analysis: ``analysis(problem, y, mask) -> Posterior``.

    ``solver`` is any 4DVar solver (or a :class:`MultiStart`); ``method`` and ``rank``
    choose the Laplace form (:func:`laplace_posterior`). The posterior's provenance
    names the method, the solver and its settings, the problem and its forward model,
    so an analysis on ``problem.with_forward(emulator)`` (step 4) is told apart from
    the oracle's (step 2) — the solver code is the same for both.
    """

    solver: AbstractFourDVar | MultiStart = eqx.field(default_factory=StrongFourDVar)
    method: str = eqx.field(static=True, default="auto")
    rank: int | None = eqx.field(static=True, default=None)

    def analyse(self, problem: Problem, y, mask) -> tuple[Posterior, FourDVarResult]:
        """The posterior and the solver's per-event result (convergence flags)."""
        result = self.solver.solve(problem, y, mask)
        post = laplace_posterior(problem, result.x, y, mask, method=self.method, rank=self.rank)
        provenance = {
            **post.provenance,
            "method": f"oracle-4dvar+{post.provenance['method']}",
            "solver": self.solver.config(),
            "problem_hash": problem.hash,
            "forward": type(problem.forward).__name__,
            "laplace": _resolve_method(problem, self.method),
        }
        return Posterior.create(post.mean, std=post.std, cov_factor=post.cov_factor, provenance=provenance), result

    def __call__(self, problem: Problem, y, mask) -> Posterior:
        return self.analyse(problem, y, mask)[0]
