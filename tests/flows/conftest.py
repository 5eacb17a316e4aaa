"""Pipeline tests: one Prefect test server per session, MLflow on SQLite in a temp folder."""

import os

import pytest


@pytest.fixture(scope="session")
def vardax_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("vardax_home")
    old = {k: os.environ.get(k) for k in ("VARDAX_HOME", "PREFECT_LOCAL_STORAGE_PATH")}
    os.environ["VARDAX_HOME"] = str(home)
    os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(home / "prefect-storage")
    yield home
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def prefect_harness(vardax_home):
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
