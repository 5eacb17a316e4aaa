"""Cycled data assimilation: a twin experiment (:class:`TwinSetup`), analysis steps
behind one interface (:class:`AbstractAnalysisStep`) — the Kalman filter (exact on
linear-Gaussian cycles), the ensemble Kalman filter, optimal interpolation / 3D-Var,
climatology, the 4DVar oracle over a sliding window, the iterative ensemble Kalman
smoother (iEnKS) — and the driver
(:func:`run_cycle`) that runs forecast and analysis in one ``lax.scan`` and reports
per-cycle RMSE, spread and the truth's PIT (:class:`CycleResult`)."""

from ._conditioned import AmortizedAnalyser as AmortizedAnalyser
from ._conditioned import AbstractWindowAnalyser as AbstractWindowAnalyser
from ._conditioned import BackgroundConditionedStep as BackgroundConditionedStep
from ._conditioned import OracleAnalyser as OracleAnalyser
from ._driver import PIT_BINS as PIT_BINS
from ._driver import CycleResult as CycleResult
from ._driver import run_cycle as run_cycle
from ._ensemble import EnsembleKalmanFilter as EnsembleKalmanFilter
from ._fourdvar import FourDVar as FourDVar
from ._ienks import IterativeEnsembleKalmanSmoother as IterativeEnsembleKalmanSmoother
from ._kalman import KalmanFilter as KalmanFilter
from ._kalman import gaussian_prior as gaussian_prior
from ._published import PUBLISHED_TWINS as PUBLISHED_TWINS
from ._published import PublishedTwin as PublishedTwin
from ._published import get_twin as get_twin
from ._published import lorenz96_climatology as lorenz96_climatology
from ._static import Climatology as Climatology
from ._static import OptimalInterpolation as OptimalInterpolation
from ._step import AbstractAnalysisStep as AbstractAnalysisStep
from ._step import ensemble_pit as ensemble_pit
from ._twin import TwinSetup as TwinSetup
