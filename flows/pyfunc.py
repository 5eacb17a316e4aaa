"""The MLflow ``pyfunc`` wrapper of a trained amortized posterior.

``predict({"y": (B,T,*obs), "mask": (B,T,*obs) bool})`` → ``{"mean", "std"}`` (and
``"samples"`` when ``params={"n_samples": n}``). The model is rebuilt in
``load_context`` from the JSON config + weights saved by
``vardax_core.amortized.save_posterior``, so loading needs only this package.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np


class AmortizedPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from vardax_core.amortized import load_posterior

        self.posterior = load_posterior(context.artifacts["posterior"])

    # no type hints on purpose: MLflow's hint-based validation assumes list inputs, and
    # the input here is one dict of arrays
    def predict(self, context, model_input, params=None):
        import jax

        if not isinstance(model_input, dict) or "y" not in model_input or "mask" not in model_input:
            raise ValueError("predict expects a dict with arrays `y` and `mask` of shape (events, T, *obs)")
        params = params or {}
        y = np.asarray(model_input["y"], dtype=np.float64)
        mask = np.asarray(model_input["mask"], dtype=bool)
        n = int(params.get("n_samples", 0))
        key = jax.random.key(int(params.get("seed", 0)))
        post = self.posterior.posterior(y, mask, key, n_samples=max(n, 0))
        out = {"mean": np.asarray(post.mean)}
        if post.std is not None:
            out["std"] = np.asarray(post.std)
        if n and post.samples is not None:
            out["samples"] = np.asarray(post.samples)
        return out
