"""The MLflow ``pyfunc`` wrapper of a trained emulator (step 3).

``predict({"x": (B, *state)})`` → ``{"x_next": (B, *state)}``: one call of the emulator
F_ψ (``steps_per_call`` model steps) per state, float64. The emulator is rebuilt in
``load_context`` from the file written by ``vardax_core.emulator.save_emulator``
(JSON config + weights), so loading needs only this package.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np


class EmulatorPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from vardax_core.emulator import load_emulator

        self.emulator = load_emulator(context.artifacts["emulator"])

    # no type hints on purpose (see flows.pyfunc): the input is one dict of arrays
    def predict(self, context, model_input, params=None):
        if not isinstance(model_input, dict) or "x" not in model_input:
            raise ValueError("predict expects a dict with an array `x` of shape (states, *state)")
        x = np.asarray(model_input["x"], dtype=np.float64)
        return {"x_next": np.asarray(self.emulator(x))}
