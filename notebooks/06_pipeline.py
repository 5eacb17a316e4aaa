# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Running the pipeline: the cycle, the registry and catalogue reprocessing
#
# The science of notebooks 01–05 is wrapped in Prefect flows (`flows/`) that pass dataset
# paths and content hashes between steps, track every head in MLflow and decide
# promotion. `make cycle` runs the same thing from the command line:
#
# ```bash
# vardax cycle --config smoke        # or: make cycle CONFIG=configs/smoke.yaml
# vardax status --config smoke       # champion, versions and their gate outcomes
# vardax catalogue --config smoke --out cat.zarr --n 1000
# vardax reprocess --config smoke --catalogue cat.zarr
# ```
#
# Here the flows are called from Python on the `smoke` configuration (linear_gaussian,
# where a linear full-covariance Gaussian head can represent the exact posterior).
# Everything is written under a temporary home folder: Zarr stores, MLflow's SQLite
# database and artifacts, and Prefect's state. No Prefect server needs to be running:
# the first flow call starts a temporary local one (Prefect's ephemeral mode, about
# 20–30 s on a fresh database); with `PREFECT_API_URL` set, the runs go to that server
# instead and appear in its UI.

# %%
import os
from pathlib import Path

from _small import SMALL, size, workdir

home = Path(workdir("nb06"))
os.environ.update({
    "VARDAX_HOME": str(home),  # stores, MLflow (SQLite + artifacts) and caches of the flows
    "PREFECT_HOME": str(home / "prefect"),  # the temporary Prefect server's database
    "PREFECT_LOCAL_STORAGE_PATH": str(home / "prefect" / "storage"),  # cached task results
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
})

import numpy as np  # noqa: E402  (Prefect reads its settings at import: set the environment first)
from mlflow import MlflowClient  # noqa: E402

from flows import tracking  # noqa: E402
from flows.config import ConfigError, load_config, parse_config  # noqa: E402
from flows.cycle import print_summary, six_step_cycle  # noqa: E402
from flows.reprocess import reprocess_catalogue  # noqa: E402
from flows.simulate import simulate_pairs  # noqa: E402
from vardax_core.data import open_analyses, open_catalogue, write_catalogue  # noqa: E402

# %% [markdown]
# ## The configuration
#
# A pipeline configuration is a pydantic model loaded from YAML (`configs/smoke.yaml`);
# invalid values are refused before anything runs, naming the field. Two heads are
# configured here: the smoke config's `gaussian-full`, which can represent the exact
# posterior, and a deliberately undertrained copy of it (one epoch at a tiny learning
# rate) that must not be promoted.
#
# The gates run under the `release` profile (`gates.profile`, the default): settings at
# least as strict as the defaults, the only ones whose pass certifies a head. Weaker
# settings are refused unless the profile is `exploration`, whose verdicts are recorded
# under `exploration.*` tags and never promote. Small mode gates 40
# held-out events instead of 100 and compiles the gates quickly (settings that do not
# change a verdict); the heads train as at full size.

# %%
data = load_config("smoke").model_dump(mode="json")
undertrained = {**data["heads"][0], "name": "undertrained",
                "train": {"max_epochs": 1, "learning_rate": 1e-7, "warmup_epochs": 0, "batch_size": 128}}
data["heads"].append(undertrained)
if SMALL:
    data["data"].update(n_heldout=40)
    data["oracle"].update(chunk_size=40, workers=1)
    data["gates"]["settings"] = {"fast_compile": True, "band_simulations": 200}
config = parse_config(data)
print(config.problem, config.data, config.gates, sep="\n")
for head in config.heads:
    print(head.name, head.type, head.encoder, head.head, head.train)
print("stores under:", config.resolved_store_root())
print("MLflow:", config.tracking_uri(), "| registered model:", config.registered_model_name())

try:
    parse_config({**data, "heads": [{"name": "x", "type": "nope"}]})
except ConfigError as err:
    print(err)
try:  # a weaker gate setting under the release profile
    parse_config({**data, "gates": {"settings": {"sbc_runs": 100, "sbc_bins": 10}}})
except ConfigError as err:
    print(err)

# %% [markdown]
# ## The six-step cycle
#
# `six_step_cycle` chains the step flows: `simulate-pairs` → `oracle-solve` → (with an
# `emulator:` section, `train-emulator` and `emulator-oracle`) → for every head
# `train-head` and `validate-gates` → `promote`. It returns a summary (and publishes it as
# a Prefect markdown artifact).

# %%
summary = six_step_cycle(config)
print_summary(summary)

# %% [markdown]
# What happened, step by step:
#
# 1. two pairs stores were simulated (training pairs and held-out events, separate seeds);
# 2. the oracle (incremental 4DVar + Laplace) solved the held-out events, chunk by chunk;
# 3. each head was trained in an MLflow run (parameters, per-epoch metrics, the pairs and
#    oracle stores as dataset inputs, the model as a `pyfunc`) and registered as a new
#    version of `vardax-linear_gaussian`; each new version took the alias `challenger`;
# 4. the three gates ran against the oracle store for each version; every statistic
#    became a metric of its run, the report and figures its artifacts, each outcome a tag
#    of the version;
# 5. `promote` moved the alias `champion` to the best version whose three gates passed —
#    the undertrained head failed, so it stays `challenger` only.
#
# Every step is keyed on content hashes: running it again with the same configuration
# is served from Prefect's cache (or finds its store complete) and redoes nothing.

# %%
print({split: ref.cached for split, ref in simulate_pairs(config).items()})

# %% [markdown]
# ## Reading the registry
#
# The MLflow registry is the record of truth for promotion: `champion` and `challenger`
# are aliases of versions, and each version carries its gate outcomes as tags. A new
# candidate becomes `challenger` whatever its gates say; `champion` moves only to a
# version with a current passing verdict — all three gates passed under the release gate
# profile, with this code version, on this problem — and only if it is at least as good
# as the incumbent on the held-out energy score. A champion that fails a release re-gate
# loses the alias (to the best remaining passing version, or none), and reprocessing
# refuses a champion without a current pass.

# %%
client = MlflowClient(tracking_uri=config.tracking_uri(), registry_uri=config.tracking_uri())
name = config.registered_model_name()
champion = client.get_model_version_by_alias(name, "champion")
challenger = client.get_model_version_by_alias(name, "challenger")
print(f"{name}: champion version {champion.version} ({champion.tags['head_name']}), "
      f"challenger version {challenger.version} ({challenger.tags['head_name']})")
for mv in (champion, challenger):
    print(mv.version, {k: v for k, v in sorted(mv.tags.items()) if k.startswith("gate")})
run = client.get_run(champion.run_id)
print("champion's gate metrics:", {k: round(v, 4) for k, v in sorted(run.data.metrics.items()) if k.endswith(".statistic")})
print("its artifacts:", [a.path for a in client.list_artifacts(champion.run_id, "gates")])
print(summary.promotion.reason)

# %%
status = tracking.registry_status(client, name)
for row in status["versions"]:
    print(row["version"], row["aliases"], row["head"], row["gates"], "all passed:", row["gates_passed"])

# %% [markdown]
# The champion's verdict records what it rests on — an exploration re-gate
# (`gates.profile: exploration`) would be recorded under `exploration.*` tags beside it,
# never instead of it:

# %%
tags = client.get_model_version(name, champion.version).tags
print("release verdict:", tags["gates_passed"], "| profile", tags["gate_profile"], "v" + tags["gate_profile_version"],
      "| code", tags["gate_code_version"], "| problem", tags["gate_problem_hash"], "| reference", tags["gate_reference"])

# %% [markdown]
# The same table from the command line (`vardax status`), here called in-process:

# %%
from flows.cli import main  # noqa: E402

cfg_file = home / "config.json"
cfg_file.write_text(config.model_dump_json())
main(["status", "--config", str(cfg_file)])

# %% [markdown]
# ## Catalogue reprocessing
#
# Operationally, the champion is run over a *catalogue* of observed events: the
# `reprocess-catalogue` flow (the `nightly` deployment) loads `models:/<name>@champion`,
# validates the catalogue against the champion's problem, and writes an `analyses` store
# (mean, std, quantiles, optionally draws) chunk by chunk to
# `<store_root>/analyses/<catalogue>-<hash>/<model>-v<version>.zarr`. A catalogue the same
# version already processed is skipped; a new champion writes a new store. Here the
# catalogue is synthetic, so it carries the truth and the analyses can be checked.

# %%
problem = config.problem.build()
catalogue = write_catalogue(problem, str(home / "catalogues" / "demo.zarr"), n_events=size(2000, 300), seed=7,
                            chunk_size=size(500, 100))
print(open_catalogue(catalogue, problem))
ref = reprocess_catalogue(catalogue, config)
print(ref.model_dump_json(indent=1))

# %%
an = open_analyses(ref.path)
truth = open_catalogue(catalogue)["x_true"].values
q05, q95 = an["quantiles"].values[:, 0], an["quantiles"].values[:, -1]
print(an)
print(f"model version {an.attrs['model_version']}; 90 % interval coverage of the truth: "
      f"{np.mean((truth >= q05) & (truth <= q95)):.3f} (expected 0.90)")
print("rerun skipped:", reprocess_catalogue(catalogue, config).skipped)

# %% [markdown]
# The coverage is the calibration the SBC gate certified, now seen on the catalogue.
#
# Where things are after a real `make cycle`: everything under `.vardax/` in the project
# (`stores/`, `mlflow/`, `prefect/`); `make ui` opens the MLflow UI (registry, runs, gate
# artifacts) and `make serve` a Prefect server with the deployments and a worker. See
# `docs/operations.md` for schedules, recovery after a crash and scaling out.
