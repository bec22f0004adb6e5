"""Which trainer pod's log to read, and following a run's log across its retries.

A run's pods carry its labels (`kubetune_api.trainer_pod`); each retry is a new pod of the
same Job, and a multi-node run has one pod per completion index (node rank) per attempt.
The current pod of a rank is the newest with that index.

Following: the API server ends a followed log when the container ends. If the run is not
finished then, a retry's pod is coming: wait for it and follow it from its start. A log
stream that drops while its container still runs is picked up again with only new lines
(`tailLines=0`), so nothing is printed twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kubetune_api.trainer_pod import CONTAINER_NAME, completion_index, creation_order

Pod = Mapping[str, Any]


def newest_pod(pods: Sequence[Pod], rank: int = 0) -> Pod | None:
    """The newest pod with completion index `rank` (0 is the only pod of a single-node run)."""
    candidates = [pod for pod in pods if completion_index(pod.get("metadata") or {}) == rank]
    return max(candidates, key=lambda pod: creation_order(pod.get("metadata") or {}), default=None)


def _trainer_state(pod: Pod) -> Mapping[str, Any]:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        if container.get("name") == CONTAINER_NAME:
            return container.get("state") or {}
    return {}


def started(pod: Pod) -> bool:
    """The trainer container has started, so the pod has a log to read."""
    state = _trainer_state(pod)
    return (
        "running" in state
        or "terminated" in state
        or (pod.get("status") or {}).get("phase")
        in (
            "Running",
            "Succeeded",
            "Failed",
        )
    )


def ended(pod: Pod) -> bool:
    """The trainer container will write no more (it terminated, or the pod is over)."""
    return "terminated" in _trainer_state(pod) or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def pod_name(pod: Pod) -> str:
    return str((pod.get("metadata") or {}).get("name", ""))


class RunLogs(Protocol):
    """What following needs from the cluster (the client provides it; tests can fake it)."""

    def pods(self) -> list[dict[str, Any]]:
        """The run's trainer pods now."""

    def finished(self) -> bool:
        """Whether the run is Succeeded or Failed."""

    def lines(self, pod: str, follow: bool, tail: int | None) -> Iterator[str]:
        """The trainer container's log, line by line (tail: only the last N lines)."""


@dataclass
class Follower:
    """Follows the log of one rank of a run until the run is finished."""

    source: RunLogs
    rank: int = 0
    interval: float = 2.0
    sleep: Callable[[float], None] = time.sleep

    def __iter__(self) -> Iterator[str]:
        current: str | None = None  # the pod being followed
        while True:
            pod = newest_pod(self.source.pods(), self.rank)
            if pod is None or not started(pod) or (pod_name(pod) == current and ended(pod)):
                # Nothing (new) to read: the run is over, or the next pod is on its way.
                if self.source.finished() and (pod is None or pod_name(pod) == current or not started(pod)):
                    return
                self.sleep(self.interval)
                continue
            # A pod seen before is picked up again with new lines only.
            tail = None if pod_name(pod) != current else 0
            current = pod_name(pod)
            read = 0
            for line in self.source.lines(current, True, tail):
                read += 1
                yield line
            if not read:
                self.sleep(self.interval)  # a stream that ended at once: do not ask again straight away
