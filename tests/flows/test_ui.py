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
