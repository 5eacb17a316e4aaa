"""The analyses store's writer lock: one writer at a time, released when its holder dies."""

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from vardax_core.data import StoreBusy, store_lock


def test_a_second_writer_stops_naming_the_holder(tmp_path):
    store = str(tmp_path / "analyses" / "m-v1.zarr")
    with store_lock(store, "analyses store") as lock:
        assert lock.endswith("m-v1.zarr.lock")
        with pytest.raises(StoreBusy, match=r"analyses store .*m-v1.zarr is being written by another run .*pid"):
            with store_lock(store, "analyses store"):
                pass
    with store_lock(store):  # released
        pass
    assert not (tmp_path / "analyses" / "m-v1.zarr").exists()  # the lock never touches the store


def test_the_lock_dies_with_a_killed_holder(tmp_path):
    store = str(tmp_path / "s.zarr")
    code = textwrap.dedent(f"""
        import time
        from vardax_core.data import store_lock
        with store_lock({store!r}):
            print("held", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(StoreBusy, match=f"pid.*{proc.pid}"):
            with store_lock(store):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    deadline = time.time() + 10
    while True:
        try:
            with store_lock(store):
                break
        except StoreBusy:
            assert time.time() < deadline
            time.sleep(0.1)


def test_remote_urls_are_not_locked():
    with store_lock("s3://bucket/a.zarr") as lock:
        assert lock is None
