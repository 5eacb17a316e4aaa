"""Pipeline tests: one Prefect test server per session, MLflow on SQLite in a temp folder."""

import asyncio
import concurrent.futures
import inspect
import os
from unittest import mock

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


DRAIN_TIMEOUT_S = 20


def _bounded_at_exit(self):
    """Prefect's queue services (log and event workers) drain at interpreter exit and wait
    without a deadline. After a test has stopped the server (or the loop thread) they
    were observed to wait forever, every thread idle (py-spy, plain ``pytest
    tests/flows/test_servers.py tests/flows/test_dask.py``): give up after
    ``DRAIN_TIMEOUT_S``. Installed for the whole session, before any service starts, so
    every service registers this bound version."""
    try:
        self._drain(at_exit=True).result(timeout=DRAIN_TIMEOUT_S)
    except concurrent.futures.TimeoutError:
        print(f"prefect: {type(self).__name__} drain at exit gave up after {DRAIN_TIMEOUT_S} s")


def _bound_the_exit_drain():
    from prefect._internal.concurrency.services import _QueueServiceBase

    _QueueServiceBase._at_exit = _bounded_at_exit


_bound_the_exit_drain()


class _BoundedLogWorker:
    """Stands in for ``APILogWorker`` while the harness exits: its ``drain`` gives up
    after ``DRAIN_TIMEOUT_S`` instead of waiting forever."""

    @staticmethod
    def instance():
        from prefect.logging.handlers import APILogWorker

        real = APILogWorker.instance()

        class _Worker:
            def drain(self):
                result = real.drain()
                if not inspect.isawaitable(result):
                    return result

                async def bounded():
                    try:
                        await asyncio.wait_for(result, DRAIN_TIMEOUT_S)
                    except asyncio.TimeoutError:
                        print(f"prefect harness: log drain gave up after {DRAIN_TIMEOUT_S} s")

                return bounded()

        return _Worker()


class _BoundedEventsWorker:
    """Stands in for ``EventsWorker`` while the harness exits (``drain_all`` with a timeout)."""

    @staticmethod
    def drain_all():
        from prefect.events.worker import EventsWorker

        return EventsWorker.drain_all(timeout=DRAIN_TIMEOUT_S)


@pytest.fixture(scope="session")
def prefect_harness(vardax_home):
    """One Prefect test server per worker process. On exit the harness drains the log and
    event workers before stopping the server; that drain was observed to wait forever
    (every thread idle) at the end of a CI run after the Dask test, so it is bounded."""
    from prefect.testing import utilities as harness

    cm = harness.prefect_test_harness(server_startup_timeout=180)
    cm.__enter__()
    try:
        yield
    finally:
        with mock.patch.object(harness, "APILogWorker", _BoundedLogWorker), \
                mock.patch.object(harness, "EventsWorker", _BoundedEventsWorker):
            cm.__exit__(None, None, None)
