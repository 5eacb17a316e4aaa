"""``make ui`` (``flows.servers ui PORT CONFIG``) opens the MLflow UI on the config's store."""

import contextlib

import pytest

from flows import servers
from flows.config import load_config


@pytest.fixture
def launched(monkeypatch):
    """Run ``servers.ui`` without starting anything: record the command, stop at once."""
    seen = []

    @contextlib.contextmanager
    def fake_process(cmd, env, log):
        seen.append(cmd)
        yield None

    def interrupt(_):
        raise KeyboardInterrupt

    monkeypatch.setattr(servers, "_process", fake_process)
    monkeypatch.setattr(servers.time, "sleep", interrupt)
    monkeypatch.setattr(servers, "_sigterm_as_interrupt", lambda: None)
    return seen


def _arg(cmd, flag):
    return cmd[cmd.index(flag) + 1]


def test_ui_uses_the_configs_tracking_store(launched, tmp_path, vardax_home):
    cfg = load_config("smoke").model_dump(mode="json")
    cfg["tracking"] = {"uri": f"sqlite:///{tmp_path / 'db' / 'mlflow.db'}", "artifact_root": (tmp_path / "a").as_uri()}
    path = tmp_path / "cfg.json"
    path.write_text(__import__("json").dumps(cfg))
    servers.ui(5123, str(path))
    cmd = launched[-1]
    assert _arg(cmd, "--port") == "5123"
    assert _arg(cmd, "--backend-store-uri") == cfg["tracking"]["uri"]
    assert _arg(cmd, "--default-artifact-root") == cfg["tracking"]["artifact_root"]
    assert (tmp_path / "db").is_dir()


def test_ui_defaults_to_the_project_store(launched, vardax_home):
    servers.ui(5000)
    assert _arg(launched[-1], "--backend-store-uri") == f"sqlite:///{vardax_home / 'mlflow' / 'mlflow.db'}"
    servers.ui(5000, "lorenz96")  # the default config tracks to the same store
    assert _arg(launched[-1], "--backend-store-uri") == f"sqlite:///{vardax_home / 'mlflow' / 'mlflow.db'}"


def test_ui_on_a_tracking_server_starts_nothing(launched, tmp_path, capsys):
    cfg = load_config("smoke").model_dump(mode="json")
    cfg["tracking"] = {"uri": "http://127.0.0.1:5999"}
    path = tmp_path / "cfg.json"
    path.write_text(__import__("json").dumps(cfg))
    servers.ui(5000, str(path))
    assert launched == [] and "http://127.0.0.1:5999" in capsys.readouterr().out


def _tree(root: int) -> set[int]:
    """``root`` and every process descended from it (from ``ps``)."""
    import subprocess

    rows = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True).stdout.split("\n")
    children: dict[int, list[int]] = {}
    for row in rows:
        if row.strip():
            pid, ppid = map(int, row.split())
            children.setdefault(ppid, []).append(pid)
    out, todo = set(), [root]
    while todo:
        p = todo.pop()
        out.add(p)
        todo += children.get(p, [])
    return out


def _running() -> set[int]:
    import subprocess

    out = subprocess.run(["ps", "-eo", "pid=,stat="], capture_output=True, text=True, check=True).stdout
    return {int(r.split()[0]) for r in out.split("\n") if r.strip() and not r.split()[1].startswith("Z")}


@pytest.mark.pipeline
@pytest.mark.slow
def test_sigterm_to_make_ui_stops_the_server_and_its_job_consumers(tmp_path):
    """The real ``make ui`` process tree (the wrapper, ``mlflow ui``, uvicorn, MLflow's
    job runner and its huey consumers, each server in its own process group): SIGTERM to
    the wrapper alone leaves no process behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    port = servers.free_port()
    env = {**os.environ, "VARDAX_HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "flows.servers", "ui", str(port)], env=env,
                            cwd=servers.Path(servers.__file__).resolve().parent.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        servers.wait_healthy(f"http://127.0.0.1:{port}/health", 120)
        time.sleep(3)  # the job runner starts its consumers after the server is up
        tree = _tree(proc.pid)
        assert len(tree) >= 3, tree  # wrapper, mlflow ui, uvicorn at least
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        deadline = time.time() + 30
        while (alive := tree & _running()) and time.time() < deadline:
            time.sleep(0.5)
        assert not alive, f"left running after SIGTERM: {sorted(alive)}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
