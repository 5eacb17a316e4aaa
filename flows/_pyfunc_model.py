"""The MLflow ``pyfunc`` model of every vardax version — an amortized posterior (a head)
or an emulator — and the models-from-code entry point MLflow loads (it sets the model
object). Self-contained: it needs only ``mlflow``, ``numpy`` and ``vardax_core`` (which
the logged model carries in its ``code/`` folder), never the pipeline.

- head (artifact ``posterior``, written by ``vardax_core.amortized.save_posterior``):
  ``predict({"y": (B, T, *obs) float64, "mask": (B, T, *obs) bool}, params={"n_samples":
  n, "seed": s})`` → ``{"mean", "std"}`` (B, *state), plus ``"samples"`` (B, n, *state)
  when n > 0;
- emulator (artifact ``emulator``, written by ``vardax_core.emulator.save_emulator``):
  ``predict({"x": (B, *state) float64})`` → ``{"x_next": (B, *state)}``, one call of F_ψ.

The signature logged with the model (tensor specs, params) is enforced by MLflow before
``predict`` runs.
"""

import mlflow.models
import mlflow.pyfunc
import numpy as np


class VardaxPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        if "posterior" in context.artifacts:
            from vardax_core.amortized import load_posterior

            self.kind, self.obj = "posterior", load_posterior(context.artifacts["posterior"])
        else:
            from vardax_core.emulator import load_emulator

            self.kind, self.obj = "emulator", load_emulator(context.artifacts["emulator"])

    # no type hints on purpose: MLflow's hint-based validation assumes list inputs, and the
    # input here is one dict of arrays (described by the logged tensor signature instead)
    def predict(self, context, model_input, params=None):
        params = params or {}
        if self.kind == "emulator":
            if not isinstance(model_input, dict) or "x" not in model_input:
                raise ValueError("predict expects a dict with an array `x` of shape (states, *state)")
            return {"x_next": np.asarray(self.obj(np.asarray(model_input["x"], dtype=np.float64)))}
        import jax

        if not isinstance(model_input, dict) or "y" not in model_input or "mask" not in model_input:
            raise ValueError("predict expects a dict with arrays `y` and `mask` of shape (events, T, *obs)")
        y = np.asarray(model_input["y"], dtype=np.float64)
        mask = np.asarray(model_input["mask"], dtype=bool)
        n = int(params.get("n_samples", 0))
        key = jax.random.key(int(params.get("seed", 0)))
        post = self.obj.posterior(y, mask, key, n_samples=max(n, 0))
        out = {"mean": np.asarray(post.mean)}
        if post.std is not None:
            out["std"] = np.asarray(post.std)
        if n and post.samples is not None:
            out["samples"] = np.asarray(post.samples)
        return out


mlflow.models.set_model(VardaxPyfunc())
