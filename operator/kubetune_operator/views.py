"""Typed read-only views of the trainer Jobs and pods, parsed once from what the indices keep.

The status logic works on these instead of walking `(pod.get("status") or {}).get(...)`
chains: every field a decision needs has one name and one parsing rule here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from kubetune_api.protocol import Result, decode_result
from kubetune_api.trainer_pod import CONTAINER_NAME, completion_index, creation_order
from kubetune_operator.builders import ANNOTATION_NODES, ANNOTATION_SPEC_HASH

Json = Mapping[str, Any]

# A finished pod's termination message is parsed on every reconcile that sees the pod (its
# own events, the Job's, the delayed write): a fifth of the status logic's CPU. The Result is
# shared between callers, who only read it.
_decoded_result = lru_cache(maxsize=256)(decode_result)

IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
MAX_MESSAGE = 1024


def one_line(text: str | None, limit: int = MAX_MESSAGE) -> str:
    """The last non-empty line of `text`, cut to `limit` characters (messages in status)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _true_conditions(status: Json) -> dict[str, Json]:
    return {c.get("type", ""): c for c in status.get("conditions") or [] if c.get("status") == "True"}


def _owner_uids(meta: Json) -> frozenset[str]:
    return frozenset(ref["uid"] for ref in meta.get("ownerReferences") or [] if ref.get("uid"))


@dataclass(frozen=True)
class _View:
    """An object as the index keeps it: metadata and status, parsed on first use."""

    body: Json = field(repr=False)

    @cached_property
    def meta(self) -> Json:
        return self.body.get("metadata") or {}

    @cached_property
    def status(self) -> Json:
        return self.body.get("status") or {}

    @property
    def name(self) -> str:
        return str(self.meta.get("name", ""))

    def owned_by(self, uid: str) -> bool:
        return uid in _owner_uids(self.meta)


@dataclass(frozen=True)
class PodView(_View):
    """One trainer pod: where it is in its life, and what its trainer container said."""

    @property
    def uid(self) -> str:
        return str(self.meta.get("uid") or self.name)

    @property
    def created(self) -> str:
        return str(self.meta.get("creationTimestamp") or "")

    @property
    def order(self) -> tuple[str, str]:
        """Creation order (pods of one Job differ by creation time; the name breaks ties)."""
        return creation_order(self.meta)

    @cached_property
    def index(self) -> int:
        """The completion index in an Indexed Job; 0 for the one pod of a plain Job."""
        return completion_index(self.meta)

    @property
    def phase(self) -> str | None:
        return self.status.get("phase")

    @cached_property
    def _container(self) -> Json:
        for status in self.status.get("containerStatuses") or []:
            if status.get("name") == CONTAINER_NAME:
                return status
        return {}

    @property
    def state(self) -> Json:
        return self._container.get("state") or {}

    @property
    def image(self) -> str:
        return str(self._container.get("image") or "")

    @property
    def terminated(self) -> Json:
        """The trainer container's termination (now, or of its last run); {} if none."""
        return self.state.get("terminated") or (self._container.get("lastState") or {}).get("terminated") or {}

    @property
    def exit_code(self) -> int | None:
        code = self.terminated.get("exitCode")
        return code if isinstance(code, int) else None

    @property
    def finished_at(self) -> str:
        return str(self.terminated.get("finishedAt") or self.created)

    @property
    def failed(self) -> bool:
        return self.phase == "Failed" or (self.phase == "Running" and "terminated" in self.state)

    @property
    def training(self) -> bool:
        """The trainer runs (or has finished well) in this pod; a succeeded pod whose Job is
        not yet Complete is still "running" to the user."""
        return (self.phase == "Running" and "running" in self.state) or self.phase == "Succeeded"

    @cached_property
    def disruption(self) -> Json | None:
        """The DisruptionTarget condition: the cluster stopped the pod (preemption, eviction,
        node drain or pressure), not the trainer."""
        return _true_conditions(self.status).get("DisruptionTarget")

    @cached_property
    def unschedulable(self) -> str | None:
        """The scheduler's message when no node fits the pod."""
        for condition in self.status.get("conditions") or []:
            if (condition.get("type"), condition.get("status"), condition.get("reason")) == (
                "PodScheduled",
                "False",
                "Unschedulable",
            ):
                return one_line(condition.get("message")) or "no node fits the pod"
        return None

    @property
    def waiting(self) -> Json:
        return self.state.get("waiting") or {}

    @cached_property
    def result(self) -> Result | None:
        """The trainer's Result from the termination message."""
        return _decoded_result(self.terminated.get("message"))

    @property
    def raw_message(self) -> str:
        """The termination message's last line when it holds no Result (a crash's log tail)."""
        return "" if self.result is not None else one_line(self.terminated.get("message"))

    @property
    def pod_reason(self) -> tuple[str, str] | None:
        """The pod's own reason and message (e.g. Evicted), when the kubelet gave one."""
        reason = self.status.get("reason")
        return (str(reason), one_line(self.status.get("message")) or str(reason)) if reason else None


@dataclass(frozen=True)
class JobView(_View):
    """The trainer Job: its spec as built and what the Job controller reports."""

    @cached_property
    def spec(self) -> Json:
        return self.body.get("spec") or {}

    @property
    def uid(self) -> str | None:
        return self.meta.get("uid")

    @property
    def labels(self) -> Json:
        return self.meta.get("labels") or {}

    @property
    def spec_hash(self) -> str | None:
        return (self.meta.get("annotations") or {}).get(ANNOTATION_SPEC_HASH)

    @cached_property
    def nodes(self) -> int:
        """Pods per attempt: the Job's parallelism as the builder recorded it (1 when absent)."""
        text = (self.meta.get("annotations") or {}).get(ANNOTATION_NODES, self.spec.get("parallelism"))
        try:
            return max(1, int(text)) if text is not None else 1
        except ValueError:
            return 1

    @property
    def suspended(self) -> bool:
        return bool(self.spec.get("suspend"))

    @property
    def backoff_limit(self) -> int | None:
        limit = self.spec.get("backoffLimit")
        return limit if isinstance(limit, int) else None

    @cached_property
    def _conditions(self) -> dict[str, Json]:
        return _true_conditions(self.status)

    @property
    def complete(self) -> Json | None:
        return self._conditions.get("Complete")

    @property
    def failure(self) -> Json | None:
        """Failed, or FailureTarget: the Job controller has decided to fail it (Kubernetes >= 1.31)."""
        return self._conditions.get("Failed") or self._conditions.get("FailureTarget")

    @property
    def finished(self) -> bool:
        return "Complete" in self._conditions or "Failed" in self._conditions

    def counted(self, key: str) -> int:
        """The Job controller's pod counter `key` (active, succeeded, failed)."""
        return int(self.status.get(key) or 0)

    def behind(self, pods: Sequence[PodView]) -> bool:
        """Whether the Job controller has yet to record what the Job's pods show: a running
        pod without the Job's startTime, or more finished pods than the Job counts."""
        if self.finished:
            return False
        if any(pod.phase == "Running" for pod in pods) and not self.start_time:
            return True
        finished = sum(1 for pod in pods if pod.phase in ("Succeeded", "Failed"))
        return finished > self.counted("succeeded") + self.counted("failed")

    @property
    def start_time(self) -> str | None:
        return self.status.get("startTime")

    @property
    def completion_time(self) -> str | None:
        return self.status.get("completionTime")


def pod_views(pods: Sequence[Json]) -> list[PodView]:
    return [PodView(pod) for pod in pods]
