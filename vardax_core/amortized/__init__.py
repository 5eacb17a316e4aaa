"""Amortized posteriors q_φ(x | y): encoders, Gaussian / flow / score heads, training
from a Zarr ``pairs`` store or on fresh simulated pairs (``fit_simulated``), and
serialisation.

    posterior = build_posterior(problem, {"encoder": {"type": "mlp"},
                                          "head": {"type": "gaussian", "covariance": "full"}},
                                jax.random.key(0))
    posterior, history = fit(posterior, "pairs.zarr", problem=problem, config={"max_epochs": 50}, seed=0)
    x_hat = posterior(y, mask)                      # (B, *state) point estimates
    draws = posterior.sample(y, mask, key, 100)     # (B, 100, *state)
    save_posterior("model.vdx", posterior); load_posterior("model.vdx")
"""

from ._consistency import ConsistencyConfig as ConsistencyConfig
from ._consistency import JacobianConsistency as JacobianConsistency
from ._encoders import ENCODER_DEFAULTS as ENCODER_DEFAULTS
from ._encoders import AbstractEncoder as AbstractEncoder
from ._encoders import Conv2DEncoder as Conv2DEncoder
from ._encoders import IdentityEncoder as IdentityEncoder
from ._encoders import MLPEncoder as MLPEncoder
from ._encoders import PeriodicConv1DEncoder as PeriodicConv1DEncoder
from ._heads import FLOW_DEFAULTS as FLOW_DEFAULTS
from ._heads import GAUSSIAN_DEFAULTS as GAUSSIAN_DEFAULTS
from ._heads import SCORE_DEFAULTS as SCORE_DEFAULTS
from ._heads import AbstractHead as AbstractHead
from ._heads import ConditionalFlowHead as ConditionalFlowHead
from ._heads import GaussianHead as GaussianHead
from ._heads import GaussianPreconditioner as GaussianPreconditioner
from ._heads import ScoreDiffusionHead as ScoreDiffusionHead
from ._io import load_posterior as load_posterior
from ._io import read_posterior_config as read_posterior_config
from ._io import save_posterior as save_posterior
from ._posterior import FORMAT_VERSION as FORMAT_VERSION
from ._posterior import AmortizedPosterior as AmortizedPosterior
from ._posterior import build_posterior as build_posterior
from ._posterior import layout_of as layout_of
from ._posterior import posterior_from_config as posterior_from_config
from ._posterior import posterior_skeleton as posterior_skeleton
from ._posterior import resolve_model_config as resolve_model_config
from ._realtime import RealtimeAnalysis as RealtimeAnalysis
from ._simulated import SimulationBudget as SimulationBudget
from ._simulated import fit_simulated as fit_simulated
from ._standardize import Standardizer as Standardizer
from ._train import TrainConfig as TrainConfig
from ._train import fit as fit
from ._train import fit_standardizer as fit_standardizer
