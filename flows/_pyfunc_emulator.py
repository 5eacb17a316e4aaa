"""Models-from-code entry point MLflow loads for emulators: it sets the pyfunc model object."""

import mlflow.models

from flows.emulator_pyfunc import EmulatorPyfunc

mlflow.models.set_model(EmulatorPyfunc())
