"""Which Kubernetes Event a status transition deserves (pure).

One Event per transition of (phase, reason): `kubectl describe ftj NAME` then tells the
run's story (JobCreated, Unschedulable, Running, Retrying, Succeeded, OOMKilled, ...).
Repeated observations of the same state post nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Event:
    type: EventType
    reason: str
    message: str


def _key(status: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    if not status:
        return None, None
    # Every condition carries the reason of the current state (see kubetune_operator.status).
    reason = next((c.get("reason") for c in status.get("conditions") or []), None)
    return status.get("phase"), reason


def _stalled(status: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Stalled" and c.get("status") == "True" for c in status.get("conditions") or [])


def transition_event(
    previous: Mapping[str, Any] | None, current: Mapping[str, Any], job_name: str | None = None
) -> Event | None:
    """The Event for going from `previous` to `current` status, or None for no transition."""
    before, after = _key(previous), _key(current)
    if before == after:
        return None
    phase, reason = after
    message = current.get("message") or next((c.get("message", "") for c in current.get("conditions") or []), "")
    if before == (None, None) and phase == "Pending" and reason == "Pending" and job_name:
        return Event("Normal", "JobCreated", f"created Job {job_name}")
    warning = phase == "Failed" or _stalled(current) or reason in {"Retrying", "Unschedulable"}
    return Event("Warning" if warning else "Normal", reason or phase or "Unknown", message or (phase or ""))
