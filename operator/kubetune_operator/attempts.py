"""Attempts of a run and who is to blame: which pods form the current attempt, how many
attempts there were, and why one failed (pure functions over `views`).

Multi-node runs (an Indexed Job, one pod per completion index): the current attempt is
each index's newest pod; the lead pod is index 0's (global rank 0: it writes the progress
lines, the artifact and the Result). A failure is described by the pod that failed first
in the newest failed attempt, preferring one that exited 78 (a bad config fails the Job
through the podFailurePolicy); the other ranks usually fail right after it only because
their peer went away.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubetune_api.outcomes import EXIT_INVALID_CONFIG, Reason
from kubetune_operator.views import JobView, PodView, one_line

OOM_MESSAGE = (
    "the trainer ran out of memory (OOMKilled); raise spec.resources.memory or lower per_device_train_batch_size"
)


def newest(pods: Sequence[PodView]) -> PodView | None:
    return max(pods, key=lambda pod: pod.order) if pods else None


def newest_per_index(pods: Sequence[PodView]) -> dict[int, PodView]:
    """The current attempt: each completion index's newest pod."""
    current: dict[int, PodView] = {}
    for pod in sorted(pods, key=lambda pod: pod.order):
        current[pod.index] = pod
    return current


def lead_pod(pods: Sequence[PodView]) -> PodView | None:
    """The pod holding global rank 0 (index 0's newest); for a one-pod Job, the newest pod."""
    current = newest_per_index(pods)
    return current.get(0) or newest(list(current.values()))


def first_failure(pods: Sequence[PodView], nodes: int) -> PodView | None:
    """The failed pod that explains the newest failed attempt.

    One pod per attempt: the newest failed pod. Several: the newest failed attempt is the
    newest failed pod's and those that failed after it was created (they ran beside it);
    in it, a pod that exited 78 wins (it is why the Job fails at once), else the one that
    finished first.
    """
    failed = [pod for pod in pods if pod.failed]
    latest = newest(failed)
    if latest is None or nodes <= 1:
        return latest
    attempt = [pod for pod in failed if pod is latest or pod.finished_at >= latest.created]
    config_errors = [pod for pod in attempt if pod.exit_code == EXIT_INVALID_CONFIG]
    return min(config_errors or attempt, key=lambda pod: (pod.finished_at, pod.index))


def attempts(job: JobView, pods: Sequence[PodView]) -> int:
    """Attempts of the group so far: one pod per index each; the Job's counters are per pod."""
    counted = sum(job.counted(key) for key in ("active", "succeeded", "failed"))
    per_index: dict[int, int] = {}
    for pod in pods:
        per_index[pod.index] = per_index.get(pod.index, 0) + 1
    return max(-(-counted // job.nodes), max(per_index.values(), default=0))


def attempt_number(pod: PodView, pods: Sequence[PodView]) -> int:
    """Which attempt `pod` was, counted among its index's pods (a replacement changes nothing here)."""
    same_index = sorted(p.order for p in pods if p.index == pod.index)
    return same_index.index(pod.order) + 1


def disruptions(pods: Sequence[PodView]) -> list[PodView]:
    """Pods the cluster stopped (DisruptionTarget): the Job's podFailurePolicy ignores them."""
    return [pod for pod in pods if pod.failed and pod.disruption is not None]


def attempt_failure(pod: PodView) -> tuple[str, str]:
    """Why one trainer pod failed: (CamelCase reason, one-line message)."""
    result = pod.result
    if pod.disruption is not None:
        why = pod.disruption.get("reason") or Reason.DISRUPTED
        detail = one_line(pod.disruption.get("message"))
        message = f"the pod was disrupted ({why}): {detail}".rstrip(": ")
        if result is not None and result.reason == Reason.INTERRUPTED and result.message:
            # The trainer got SIGTERM and saved first: say from which step the next pod goes on.
            message = f"{message}; the trainer {one_line(result.message)}"
        return Reason.DISRUPTED, message
    if pod.terminated.get("reason") == "OOMKilled":
        return Reason.OOM_KILLED, OOM_MESSAGE
    if result is not None and result.outcome == "Failed":
        return result.reason or Reason.TRAINING_ERROR, one_line(result.message) or "the trainer failed"
    if pod.exit_code == EXIT_INVALID_CONFIG:
        return Reason.INVALID_CONFIG, pod.raw_message or "the trainer rejected its configuration"
    if pod.raw_message:
        return Reason.TRAINING_ERROR, pod.raw_message
    if pod.pod_reason is not None:
        return pod.pod_reason
    code = pod.exit_code
    return (
        Reason.TRAINING_ERROR,
        f"the trainer exited with code {code}" if code is not None else "the trainer pod failed",
    )


def described_failure(pod: PodView, nodes: int) -> tuple[str, str]:
    """attempt_failure, saying which pod of a multi-node run it was."""
    reason, message = attempt_failure(pod)
    return (reason, f"index {pod.index}: {message}") if nodes > 1 else (reason, message)
