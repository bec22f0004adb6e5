"""Choosing the pod to read and following a run's log across retries, against a scripted run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kubetune_api.trainer_logs import Follower, newest_pod
from kubetune_api.trainer_pod import COMPLETION_INDEX_KEY, CONTAINER_NAME


def pod(name: str, created: str, index: int | None = None, state: str | None = "running") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": created}
    if index is not None:
        meta["annotations"] = {COMPLETION_INDEX_KEY: str(index)}
    containers = [{"name": CONTAINER_NAME, "state": {state: {}}}] if state else []
    phase = {"running": "Running", "terminated": "Failed", None: "Pending"}[state]
    return {"metadata": meta, "status": {"phase": phase, "containerStatuses": containers}}


def test_the_newest_pod_of_a_rank() -> None:
    pods = [
        pod("a-0-old", "2030-01-01T10:00:00Z", 0),
        pod("a-1-old", "2030-01-01T10:00:00Z", 1),
        pod("a-0-new", "2030-01-01T11:00:00Z", 0),
        pod("a-1-new", "2030-01-01T11:00:01Z", 1),
    ]
    assert newest_pod(pods)["metadata"]["name"] == "a-0-new"
    assert newest_pod(pods, 1)["metadata"]["name"] == "a-1-new"
    assert newest_pod(pods, 2) is None
    # One pod per attempt: no index means rank 0; the same second is ordered by name.
    single = [pod("b-00002", "2030-01-01T10:00:00Z"), pod("b-00001", "2030-01-01T10:00:00Z")]
    assert newest_pod(single)["metadata"]["name"] == "b-00002"


class ScriptedRun:
    """A run whose pods and logs change each time the follower looks (sleeps)."""

    def __init__(self, steps: list[tuple[list[dict[str, Any]], bool]], logs: dict[str, list[str]]) -> None:
        self.steps = steps
        self.logs = logs
        self.reads: list[tuple[str, int | None]] = []
        self.now = 0

    def pods(self) -> list[dict[str, Any]]:
        return self.steps[min(self.now, len(self.steps) - 1)][0]

    def finished(self) -> bool:
        return self.steps[min(self.now, len(self.steps) - 1)][1]

    def lines(self, pod: str, follow: bool, tail: int | None) -> Iterator[str]:
        assert follow
        self.reads.append((pod, tail))
        return iter([] if tail == 0 else self.logs.get(pod, []))

    def sleep(self, _: float) -> None:
        self.now += 1


def test_follow_waits_for_the_pod_reads_each_attempt_once_and_stops_with_the_run() -> None:
    first_running = pod("r-00001", "2030-01-01T10:00:00Z")
    first_done = pod("r-00001", "2030-01-01T10:00:00Z", state="terminated")
    second_pending = pod("r-00002", "2030-01-01T10:05:00Z", state=None)
    second_done = pod("r-00002", "2030-01-01T10:05:00Z", state="terminated")
    run = ScriptedRun(
        [
            ([], False),  # no pod yet
            # read from the start; then the stream drops while it runs: picked up with new lines only
            ([first_running], False),
            ([first_done, second_pending], False),  # the retry's pod waits for a node
            ([first_done, second_done], False),  # the retry ran and ended before we looked
            ([first_done, second_done], True),  # the run is over
        ],
        {"r-00001": ["one"], "r-00002": ["two"]},
    )
    lines = list(Follower(run, interval=0, sleep=run.sleep))
    assert lines == ["one", "two"]
    assert run.reads == [("r-00001", None), ("r-00001", 0), ("r-00002", None)]


def test_follow_of_a_run_that_failed_before_any_pod_ends() -> None:
    run = ScriptedRun([([], True)], {})
    assert list(Follower(run, interval=0, sleep=run.sleep)) == []
