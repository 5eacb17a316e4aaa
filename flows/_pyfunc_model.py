"""Models-from-code entry point MLflow loads: it sets the pyfunc model object."""

import mlflow.models

from flows.pyfunc import AmortizedPyfunc

mlflow.models.set_model(AmortizedPyfunc())
