"""Steps 3–4 of the cycle: a neural emulator F_ψ of the forward model, its gates, and
4DVar with the emulator in place of the physics."""

from ._model import EMULATOR_DEFAULTS as EMULATOR_DEFAULTS
from ._model import FORMAT_VERSION as FORMAT_VERSION
from ._model import ConvResidualEmulator as ConvResidualEmulator
from ._model import build_emulator as build_emulator
from ._model import emulator_from_config as emulator_from_config
from ._model import resolve_emulator_config as resolve_emulator_config
from ._train import EmulatorTrainConfig as EmulatorTrainConfig
from ._train import fit_emulator as fit_emulator
from ._train import physics_map as physics_map
from ._train import simulate_transitions as simulate_transitions
from ._io import load_emulator as load_emulator
from ._io import read_emulator_config as read_emulator_config
from ._io import save_emulator as save_emulator
from ._gates import EMULATOR_GATE_NAMES as EMULATOR_GATE_NAMES
from ._gates import FORWARD as FORWARD
from ._gates import EmulatorGateConfig as EmulatorGateConfig
from ._gates import emulator_gates as emulator_gates
from ._gates import emulator_gates_passed as emulator_gates_passed
from ._gates import forward_agreement as forward_agreement
from ._gates import heldout_states as heldout_states
from ._gates import jacobian_calibration as jacobian_calibration
from ._inference import emulated_problem as emulated_problem
from ._inference import emulator_agreement as emulator_agreement
from ._inference import emulator_agreement_from_oracle as emulator_agreement_from_oracle
from ._pairs import emulator_fingerprint as emulator_fingerprint
from ._pairs import write_emulated_pairs as write_emulated_pairs
