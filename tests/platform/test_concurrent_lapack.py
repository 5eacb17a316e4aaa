"""Regression: batched LAPACK kernels run from two threads at once must finish.

jaxlib 0.10.0–0.11.0 split a batched (vmapped) LAPACK call over XLA's intra-op thread
pool and blocked a pool thread until its pieces were done; two such calls in flight on a
2-thread pool (this 2-core machine) waited for each other forever. Fixed in jaxlib 0.11.1,
which the project requires. The checks run in a child process with a deadline, so a
regression fails the test instead of hanging the suite.
"""

import subprocess
import sys
import textwrap

import pytest

# Each thread runs its kernel several times so that the two are in flight together.
_SCRIPT = textwrap.dedent(
    """
    import threading
    import jax, jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    from vardax_core.amortized import build_posterior
    from vardax_core.oracle import StrongFourDVar, laplace_posterior
    from vardax_core.problems import get_problem

    problem = get_problem("lorenz96")
    x, y, mask = problem.simulate(jax.random.key(0), 256)
    A = jax.random.normal(jax.random.key(1), (2048, 40, 40))
    A = A @ jnp.swapaxes(A, 1, 2) / 40 + jnp.eye(40)
    chol = jax.jit(jnp.linalg.cholesky)
    head = build_posterior(problem, {"head": {"type": "gaussian", "covariance": "full"}}, jax.random.key(2))
    solver = StrongFourDVar(max_iterations=5)

    def cholesky():
        for _ in range(10):
            chol(A).block_until_ready()

    def head_point():
        for _ in range(10):
            head(y, mask).block_until_ready()

    def oracle():
        for _ in range(2):
            res = solver.solve(problem, y[:64], mask[:64])
            jax.block_until_ready(laplace_posterior(problem, res.x, y[:64], mask[:64]).mean)

    jobs = {"cholesky": (cholesky, cholesky), "head": (head_point, head_point), "mixed": (head_point, oracle)}
    for name, fns in jobs.items():
        threads = [threading.Thread(target=f) for f in fns]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print("finished", name, flush=True)
    """
)


@pytest.mark.timeout(400)
def test_batched_lapack_in_two_threads_finishes(tmp_path):
    """Two threads each running batched Cholesky, the full-covariance Gaussian head's
    point estimate, or that head beside an oracle solve + Laplace posterior: all finish."""
    try:
        proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(f"two threads running batched LAPACK kernels did not finish in 300 s (deadlock?); "
                    f"finished before: {out.split()!r}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[:3] == ["finished cholesky", "finished head", "finished mixed"]
