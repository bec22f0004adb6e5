"""Which Kubernetes Event a status transition deserves (pure).

One Event per transition of (phase, reason): `kubectl describe ftj NAME` then tells the
run's story (JobCreated, Unschedulable, Running, Retrying, Succeeded, OOMKilled, ...).
Repeated observations of the same state post nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kubetune_api.outcomes import Reason
from kubetune_api.uris import PVC_SCHEME
from kubetune_operator.conditions import current_reason, is_true

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Event:
    type: EventType
    reason: str
    message: str


def _key(status: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    if not status:
        return None, None
    return status.get("phase"), current_reason(status)


def transition_event(
    previous: Mapping[str, Any] | None, current: Mapping[str, Any], job_name: str | None = None
) -> Event | None:
    """The Event for going from `previous` to `current` status, or None for no transition."""
    before, after = _key(previous), _key(current)
    if before == after:
        return None
    phase, reason = after
    message = current.get("message") or next((c.get("message", "") for c in current.get("conditions") or []), "")
    if before == (None, None) and phase == "Pending" and reason == Reason.PENDING and job_name:
        return job_created_event(job_name)
    warning = phase == "Failed" or is_true(current, "Stalled") or reason in {Reason.RETRYING, Reason.UNSCHEDULABLE}
    return Event("Warning" if warning else "Normal", reason or phase or "Unknown", message or (phase or ""))


def job_created_event(job_name: str) -> Event:
    return Event("Normal", Reason.JOB_CREATED, f"created Job {job_name}")


def shared_output_warning(nodes: int, output_uri: str | None) -> Event | None:
    """A warning for a multi-node run whose output is a claim: every node must mount it.

    The operator cannot see the claim's access mode (it has no permission to read claims);
    a ReadWriteOnce volume attaches to one node, so the other pods would stay in
    ContainerCreating. Object stores are shared by nature and get no warning.
    """
    if nodes <= 1 or not output_uri or not output_uri.startswith(f"{PVC_SCHEME}://"):
        return None
    return Event(
        "Warning",
        Reason.SHARED_OUTPUT_REQUIRED,
        f"spec.nodes is {nodes}: every node mounts the output claim of {output_uri}, so it must be "
        "ReadWriteMany (or use an object store); a ReadWriteOnce claim keeps all but one pod from starting",
    )
