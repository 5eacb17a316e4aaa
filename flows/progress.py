"""Progress reporting for long steps: a Prefect progress artifact plus log lines."""

from __future__ import annotations

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import FlowRunContext, TaskRunContext


class Progress:
    """``update(done, total)`` callback for chunked writers and training loops."""

    def __init__(self, key: str, description: str):
        self.key = key.lower().replace("_", "-")
        self.description = description
        self.artifact_id = None
        self.last = -1.0
        # outside a flow or task run there is no artifact to update: each attempt would
        # cost a failed API round trip per chunk (measured ~0.2 s), so none is made
        self.artifacts = FlowRunContext.get() is not None or TaskRunContext.get() is not None

    def update(self, done: int, total: int) -> None:
        pct = 100.0 * done / max(total, 1)
        if self.artifacts:
            try:
                if self.artifact_id is None:
                    self.artifact_id = create_progress_artifact(progress=pct, key=self.key,
                                                                description=self.description)
                else:
                    update_progress_artifact(artifact_id=self.artifact_id, progress=pct)
            except Exception:  # progress reporting never fails a step; after one failure, none is tried
                self.artifacts = False
        if pct - self.last >= 10.0 or done == total:
            self.last = pct
            try:
                get_run_logger().info("%s: %d/%d (%.0f%%)", self.description, done, total, pct)
            except Exception:
                print(f"{self.description}: {done}/{total}")
