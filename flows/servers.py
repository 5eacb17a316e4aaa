"""Local Prefect and MLflow servers (own process groups, always cleaned up).

Used by ``make serve`` / ``make ui`` and by the integration test. Every process is
started in a new session and stopped by signalling its whole group: the worker before
the server, SIGTERM first, SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent
WORK_POOL = "vardax-process"
PREFECT_FILE = "deployments/prefect.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server process exited with code {proc.returncode} before {url} was healthy")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout:.0f} s")


def stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it has not exited within ``grace``."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def _process(cmd: list[str], env: dict, log: Path | None) -> Iterator[subprocess.Popen]:
    out = open(log, "ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        stop(proc)
        if log:
            out.close()


@contextlib.contextmanager
def prefect_server(port: int | None = None, home: Path | None = None, log: Path | None = None) -> Iterator[str]:
    """A ``prefect server`` on loopback; yields its API URL (``…/api``)."""
    port = port or free_port()
    env = dict(os.environ)
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    env.pop("PREFECT_API_URL", None)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with _process(cmd, env, log) as proc:
        api = f"http://127.0.0.1:{port}/api"
        wait_healthy(f"{api}/health", 180, proc)
        yield api


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts: str, port: int | None = None, log: Path | None = None) -> Iterator[str]:
    """An ``mlflow server`` on loopback (SQLite or PostgreSQL backend, artifact proxy);
    yields its tracking URI."""
    port = port or free_port()
    Path(artifacts).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", backend_uri, "--artifacts-destination", artifacts]
    with _process(cmd, env, log) as proc:
        uri = f"http://127.0.0.1:{port}"
        wait_healthy(f"{uri}/health", 180, proc)
        yield uri


def prefect_cli(args: list[str], api: str, cwd: str | None = None, timeout: float = 300) -> str:
    env = {**os.environ, "PREFECT_API_URL": api}
    proc = subprocess.run([str(BIN / "prefect"), "--no-prompt", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"prefect {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


def deploy_all(api: str, project_dir: str) -> str:
    """Create the process work pool if needed and apply every deployment in prefect.yaml."""
    env_dir = {"VARDAX_PROJECT_DIR": project_dir}
    os.environ.update(env_dir)
    try:
        prefect_cli(["work-pool", "inspect", WORK_POOL], api)
    except RuntimeError:
        prefect_cli(["work-pool", "create", WORK_POOL, "--type", "process"], api)
    return prefect_cli(["deploy", "--all", "--prefect-file", PREFECT_FILE], api, cwd=project_dir)


@contextlib.contextmanager
def prefect_worker(api: str, project_dir: str, log: Path | None = None) -> Iterator[subprocess.Popen]:
    env = {**os.environ, "PREFECT_API_URL": api, "VARDAX_PROJECT_DIR": project_dir}
    cmd = [str(BIN / "prefect"), "worker", "start", "--pool", WORK_POOL, "--type", "process"]
    with _process(cmd, env, log) as proc:
        yield proc


def _sigterm_as_interrupt() -> None:
    """Let SIGTERM (e.g. from `timeout` or a supervisor) unwind like Ctrl-C, so the
    context managers stop the worker and the server instead of orphaning them."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def serve(port: int = 4200) -> None:
    """``make serve``: a local Prefect server with the deployments applied and a worker
    polling the process pool, until Ctrl-C (worker stopped before the server)."""
    _sigterm_as_interrupt()
    project = str(Path(__file__).resolve().parent.parent)
    home = Path(os.environ.get("VARDAX_HOME", Path(project) / ".vardax"))
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with prefect_server(port, log=logs / "prefect-server.log") as api:
        print(deploy_all(api, project))
        with prefect_worker(api, project, log=logs / "prefect-worker.log"):
            print(f"Prefect UI: http://127.0.0.1:{port}  (API {api}); worker polling pool {WORK_POOL!r}")
            print(f"Run the cycle from the UI (deployment six-step-cycle/manual) or:\n"
                  f"  PREFECT_API_URL={api} .venv/bin/prefect deployment run six-step-cycle/manual")
            print("Ctrl-C stops the worker, then the server.")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(1)


def ui(port: int = 5000, config: str | None = None) -> None:
    """``make ui``: the MLflow UI on the store of ``config`` (a config name or file; its
    ``tracking.uri``, default the project's SQLite store and local artifacts). A config
    tracking to an MLflow server needs no UI process: its address is printed."""
    from .config import load_config, vardax_home

    cfg = load_config(config) if config else None
    backend = cfg.tracking_uri() if cfg is not None else f"sqlite:///{vardax_home() / 'mlflow' / 'mlflow.db'}"
    if backend.startswith(("http://", "https://")):
        print(f"{config} tracks to the MLflow server {backend}: open it in a browser (no local UI needed)")
        return
    artifacts = (cfg.artifact_root() if cfg is not None else None) or (vardax_home() / "mlflow" / "artifacts").as_uri()
    if backend.startswith("sqlite:///"):
        Path(backend.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(BIN / "mlflow"), "ui", "--host", "127.0.0.1", "--port", str(port), "--backend-store-uri", backend,
           "--default-artifact-root", artifacts]
    print(f"MLflow UI: http://127.0.0.1:{port}  (backend {backend}); Ctrl-C to stop")
    _sigterm_as_interrupt()
    with contextlib.suppress(KeyboardInterrupt), _process(cmd, {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}, None):
        while True:
            time.sleep(1)


if __name__ == "__main__":
    command, port, *rest = sys.argv[1:]
    {"serve": serve, "ui": ui}[command](int(port), *rest)
