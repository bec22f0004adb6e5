"""The reconciler's write discipline with a fake API: the Job at once, status changes
folded into one delayed write, and a due write waiting (boundedly) for the Job to catch
up with its pod."""

from __future__ import annotations

import asyncio
from typing import Any

from kubetune_operator.events import Event
from kubetune_operator.reconcile import Key, Reconciler
from kubetune_operator.settings import OperatorSettings
from tests.operator.fake_api import KEY, SPEC

DELAY = 0.05


class FakeApi:
    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.status_patches: list[dict[str, Any]] = []

    async def create_job(self, namespace: str, body: dict[str, Any]) -> bool:
        self.jobs.append(body)
        return True

    async def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        raise AssertionError("nothing to suspend here")

    async def patch_finetunejob_status(self, namespace: str, name: str, patch: dict[str, Any]) -> str:
        self.status_patches.append(patch)
        return ""

    async def read_pod_log(self, namespace: str, name: str, container: str, tail_lines: int, limit_bytes: int) -> str:
        return ""


class FakeIndices:
    def __init__(self) -> None:
        self.ftj: dict[str, Any] = {
            "metadata": {"name": "ftj", "namespace": "ns", "uid": "ftj-uid", "generation": 1},
            "spec": SPEC,
            "status": {},
        }
        self.job: dict[str, Any] | None = None
        self.pod: dict[str, Any] | None = None

    def finetunejob(self, key: Key) -> dict[str, Any] | None:
        return self.ftj

    def jobs(self, key: Key) -> list[dict[str, Any]]:
        return [self.job] if self.job else []

    def pods(self, key: Key) -> list[dict[str, Any]]:
        return [self.pod] if self.pod else []


def _job(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "ftj-train",
            "namespace": "ns",
            "uid": "job-uid",
            "ownerReferences": [{"uid": "ftj-uid", "controller": True}],
        },
        "spec": {"suspend": False},
        "status": status,
    }


def _pod(phase: str) -> dict[str, Any]:
    state = {"running": {"startedAt": "2026-01-01T00:00:00Z"}} if phase == "Running" else {}
    return {
        "metadata": {
            "name": "ftj-train-abcde",
            "namespace": "ns",
            "uid": "pod-uid",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "ownerReferences": [{"uid": "job-uid", "controller": True}],
        },
        "status": {"phase": phase, "containerStatuses": [{"name": "trainer", "ready": True, "state": state}]},
    }


async def test_one_write_per_change_and_the_job_created_event_at_once() -> None:
    api, indices, events = FakeApi(), FakeIndices(), []
    reconciler = Reconciler(
        api, OperatorSettings(), indices, lambda body, event: events.append(event), status_delay=DELAY
    )
    try:
        await reconciler.reconcile(KEY)
        assert len(api.jobs) == 1 and api.status_patches == []  # the Job at once, the status later
        assert [e.reason for e in events] == ["JobCreated"]
        indices.job = _job({})
        await reconciler.reconcile(KEY)  # the Job's own watch event: folded into the same write
        await asyncio.sleep(DELAY * 4)
        assert [p.get("phase") for p in api.status_patches] == ["Pending"]
        assert [e.reason for e in events] == ["JobCreated"]  # not posted again with the status

        # The pod runs before the Job controller records startTime: the write waits for it.
        indices.pod = _pod("Running")
        await reconciler.reconcile(KEY)
        await asyncio.sleep(DELAY * 4)
        assert len(api.status_patches) == 1
        indices.job = _job({"startTime": "2026-01-01T00:00:01Z", "active": 1})
        await reconciler.reconcile(KEY)
        await asyncio.sleep(DELAY * 4)
        assert len(api.status_patches) == 2
        running = api.status_patches[1]
        assert running["phase"] == "Running" and running["startTime"] == "2026-01-01T00:00:01Z"
        assert events[-1] == Event("Normal", "Running", events[-1].message)
    finally:
        await reconciler.close()


async def test_a_job_that_never_catches_up_is_written_anyway(monkeypatch: Any) -> None:
    monkeypatch.setattr("kubetune_operator.reconcile.MAX_SETTLE", DELAY * 2)
    api, indices = FakeApi(), FakeIndices()
    reconciler = Reconciler(api, OperatorSettings(), indices, lambda body, event: None, status_delay=DELAY)
    try:
        indices.job = _job({})
        indices.pod = _pod("Running")
        await reconciler.reconcile(KEY)
        await asyncio.sleep(DELAY * 10)
        assert [p.get("phase") for p in api.status_patches] == ["Running"]
    finally:
        await reconciler.close()
