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
# # Step 1 — the problem and simulated pairs
#
# A *problem* bundles the forward model M, the observation operator H, a Gaussian
# prior p(x₀) = N(x_b, B) and Gaussian observation noise N(0, R) over a short window
# of `n_steps` model steps, observed after the steps in `obs_steps`:
#
#     y_t = H(M_{s_t}(x₀)) + ε_t,   ε_t ~ N(0, R),   x₀ ~ N(x_b, B),   t = 1 … T.
#
# The unknown is the window's initial state x₀. Everything later in the cycle — the
# oracle, the heads, the gates — is a function of such a problem.
#
# Set `VARDAX_NOTEBOOK_SMALL=1` for a quick run with small sizes (the tests do).

# %%
import jax
import matplotlib.pyplot as plt
import numpy as np

from _small import size, workdir
from vardax_core.data import open_pairs, write_pairs
from vardax_core.problems import ExactLinearGaussianPosterior, get_problem, list_problems, problem_defaults

print("registered problems:", list_problems())
problem = get_problem("lorenz96")
print("state", problem.state_shape, "| observations per event", problem.y_shape,
      "| observed after steps", problem.obs_steps, "| hash", problem.hash)

# %% [markdown]
# Every problem is built by name from documented defaults; overrides change the
# configuration *and its hash*, so a dataset written for one configuration is never
# read as another. Lorenz-96 here: N = 40 variables on a ring, forcing F = 8, one RK4
# step of dt = 0.05 per model step, a 10-step (0.5 time unit) window, every second
# variable observed every second step with unit noise.

# %%
print(problem_defaults("lorenz96"))
print("a longer window has another hash:", get_problem("lorenz96", n_steps=20).hash)

# %% [markdown]
# ## Simulating events
#
# `simulate(key, n)` draws x₀ from the prior, runs the model over the window and
# observes it. It returns `x0` (n, 40), `y` and `mask` (n, T, 20). Event i uses the
# key `fold_in(key, i)`, so an event is the same whichever batch it is simulated in.

# %%
x0, y, mask = problem.simulate(jax.random.key(0), 4)
print(x0.shape, y.shape, mask.shape)
traj = problem.trajectory(x0[0])  # (n_steps + 1, 40)
obs_idx = np.arange(0, problem.state_shape[0], 2)  # Subsample(stride=2): variables 0, 2, 4, …

fig, ax = plt.subplots(1, 2, figsize=(11, 3.2))
im = ax[0].imshow(np.asarray(traj).T, aspect="auto", cmap="RdBu_r", origin="lower")
ax[0].set(xlabel="model step", ylabel="variable", title="Lorenz-96 over one window")
fig.colorbar(im, ax=ax[0])
ax[1].plot(np.asarray(traj[-1]), "k-", label="truth at the last step")
ax[1].plot(obs_idx, np.asarray(y[0, -1]), "o", label="observed (σ = 1)")
ax[1].plot(np.asarray(problem.prior.mean), "--", c="grey", label="background x_b (prior mean at t=0)")
ax[1].set(xlabel="variable", title="last observation time")
ax[1].legend(fontsize=8)
plt.show()

# %% [markdown]
# **How nonlinear is the window?** Prior draws spread as the chaotic dynamics act: the
# ensemble standard deviation grows over the window (the prior has unit std at t = 0).
# Short windows keep 4DVar well conditioned; long chaotic windows make the cost
# function rugged and the Laplace approximation poor.

# %%
ens, _, _ = problem.simulate(jax.random.key(1), size(500, 100))
trajs = jax.vmap(problem.trajectory)(ens)  # (members, steps + 1, 40)
spread = np.asarray(trajs.std(axis=0).mean(axis=-1))
print("ensemble std by model step:", np.round(spread, 2))

# %% [markdown]
# ## Missing observations
#
# `missing_fraction` drops observation slots at random. Missing values are *masked*
# (`mask == False`, NaN in `y`), never silently zero; a non-finite value at an observed
# slot is an error with a message that names the variable.

# %%
gappy = get_problem("lorenz96", missing_fraction=0.2)
_, y_g, m_g = gappy.simulate(jax.random.key(1), size(1000, 200))
y_g, m_g = np.asarray(y_g), np.asarray(m_g)
print(f"observed fraction: {m_g.mean():.3f} (expected 0.8); all unobserved slots NaN: {np.isnan(y_g[~m_g]).all()}")

bad = y_g[:1].copy()
bad[0, 0, 0] = np.nan
try:
    gappy.check_observations(bad, np.ones_like(m_g[:1]))
except ValueError as err:
    print("refused:", err)

# %% [markdown]
# ## The linear-Gaussian problem knows its answer
#
# `linear_gaussian` is advection–diffusion on a ring of 10 points, every second point
# observed after each of 5 steps with σ = 0.3. With a linear window operator G (H M^{s_t}
# stacked over t) and W = diag(mask / σ²) the posterior is Gaussian:
#
#     P = (B⁻¹ + Gᵀ W G)⁻¹,     x_a = x_b + P Gᵀ W (y − G x_b),     ∂x_a/∂y = K = P Gᵀ W.
#
# This closed form is the ground truth against which every solver, head and gate is tested.

# %%
lg = get_problem("linear_gaussian")
x_lg, y_lg, m_lg = lg.simulate(jax.random.key(2), size(2000, 500))
exact = ExactLinearGaussianPosterior(lg).posterior(y_lg, m_lg)
std = np.asarray(exact.std)
print("posterior std of event 0 (prior std 1):", np.round(std[0], 3))
z = np.asarray((x_lg - exact.mean) / exact.std)
print(f"fraction of truths within 1σ of the exact posterior: {np.mean(np.abs(z) <= 1):.3f} (expected 0.683)")

# %% [markdown]
# The posterior std alternates: the points under a sensor (even indices at t = 0) are
# known better than the ones between them, and everything is known much better than
# the prior (std 1) because advection carries information from the sensors across
# the ring during the window. About 68 % of the truths lie within 1σ — the exact
# posterior is calibrated, which is what the SBC gate (notebook 04) checks for any head.
#
# ## Training pairs in Zarr
#
# `write_pairs` streams simulations into a chunked Zarr store tagged with the problem's
# configuration and hash. It is resumable: a rerun after a crash writes only the
# chunks not yet marked done, and the data are the same bit for bit.
# `open_pairs(path, problem)` validates the store (schema, hash, shapes) and opens it
# lazily through xarray.

# %%
tmp = workdir("nb01")
path = f"{tmp}/pairs.zarr"
n_pairs = size(10_000, 1_000)
write_pairs(problem, path, n_events=n_pairs, seed=0, chunk_size=size(2_000, 250))
ds = open_pairs(path, problem)
print(ds)
print("rerun writes nothing new:", write_pairs(problem, path, n_events=n_pairs, seed=0, chunk_size=size(2_000, 250)) == path)

# %%
try:
    open_pairs(path, get_problem("lorenz96", noise_std=0.5))
except ValueError as err:
    print("a store is never read as another problem's:", err)
