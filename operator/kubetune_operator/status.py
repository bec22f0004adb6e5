"""FineTuneJob status from what the Job and its pods show: pure functions, no API calls.

What the operator writes (the contract the Helm chart's Argo CD health check and
kstatus read):

``status.phase`` is derived from the conditions (see `phase_of`) and is one of:

=========== ====================================================================
Pending     Job created (or about to be); pod not running yet. Also while Kueue
            has not admitted it (reason WaitingForAdmission) and between retries.
Running     the trainer container runs.
Succeeded   the Job completed; ``status.artifact`` and ``status.metrics`` are set.
Failed      terminal: InvalidSpec, InvalidConfig, InvalidData, OOMKilled,
            DeadlineExceeded, BackoffLimitExceeded, TrainingError, ...
Suspended   spec.suspend is true and the run has not finished.
=========== ====================================================================

``status.conditions`` always holds these five types, each with status, a CamelCase
reason, message, lastTransitionTime and observedGeneration:

============ ========== ========= ========= ============ =========
phase        Ready      Reconciling Stalled  Suspended    Failed
============ ========== ========= ========= ============ =========
Pending      False      True      False*    False        False
Running      False      True      False     False        False
Succeeded    True       False     False     False        False
Failed       False      False     True      False        True
Suspended    False      False     False     True         False
============ ========== ========= ========= ============ =========

(*) Stalled is True while Pending when the pod cannot start without someone acting:
image pull errors (reason ImagePullError) and container config errors (missing
Secret/ConfigMap: CreateContainerConfigError). The Job is not failed; it starts once
fixed. Health for Argo CD / kstatus: Failed phase or Stalled=True -> Degraded;
Succeeded -> Healthy; Suspended -> Suspended; otherwise Progressing.

``status.reason`` / ``status.message`` carry the failure (or the last failed
attempt while the Job retries, or why a pending pod does not start: Unschedulable
with the scheduler's message). ``observedGeneration``, ``jobName``, ``podName``,
``attempts``, ``startTime``, ``completionTime``, ``artifact`` and ``metrics`` complete
it; ``progress`` is written separately by the progress reader.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubetune_operator.builders import CONTAINER_NAME
from kubetune_operator.volumes import to_user_uri
from kubetune_trainer.protocol import EXIT_INVALID_CONFIG, Result, decode_result

CONDITION_TYPES = ("Ready", "Reconciling", "Stalled", "Suspended", "Failed")
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})
PENDING_MESSAGE = "waiting for the trainer pod to start"
RUNNING_MESSAGE = "the trainer is running"
MAX_MESSAGE = 1024

Json = Mapping[str, Any]


@dataclass(frozen=True)
class Observed:
    """Everything the status is derived from."""

    generation: int | None
    suspend: bool
    queued: bool = False  # a Kueue queue label: Kueue decides when the Job unsuspends
    invalid: str | None = None  # InvalidSpec message, when the spec cannot run
    job: Json | None = None
    pods: Sequence[Json] = ()


@dataclass(frozen=True)
class Assessment:
    """The phase, why, and the status fields other than conditions."""

    phase: str
    reason: str
    message: str
    stalled: bool = False
    fields: dict[str, Any] = field(default_factory=dict)
    failure: tuple[str, str] | None = None  # (reason, message) for status.reason/message


def _one_line(text: str | None, limit: int = MAX_MESSAGE) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _job_condition(job: Json, kind: str) -> Json | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def newest_pod(pods: Sequence[Json]) -> Json | None:
    """The latest attempt (pods of one Job differ by creation time; name breaks ties)."""
    if not pods:
        return None
    return max(pods, key=_creation_order)


def _creation_order(pod: Json) -> tuple[str, str]:
    return pod["metadata"].get("creationTimestamp") or "", pod["metadata"]["name"]


def trainer_state(pod: Json) -> tuple[Json, Json]:
    """The trainer container's (state, lastState)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER_NAME:
            return status.get("state") or {}, status.get("lastState") or {}
    return {}, {}


def terminated(pod: Json) -> Json | None:
    state, last = trainer_state(pod)
    return state.get("terminated") or last.get("terminated")


def pod_result(pod: Json) -> tuple[Result | None, str]:
    """The trainer's Result from the termination message, else the message's last line."""
    term = terminated(pod) or {}
    text = term.get("message")
    result = decode_result(text)
    return result, "" if result is not None else _one_line(text)


def _attempts(job: Json | None, pods: Sequence[Json]) -> int:
    status = (job or {}).get("status") or {}
    counted = sum(int(status.get(key) or 0) for key in ("active", "succeeded", "failed"))
    return max(counted, len(pods))


def attempt_failure(pod: Json) -> tuple[str, str]:
    """Why one trainer pod failed: (CamelCase reason, one-line message)."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    for condition in conditions:
        if condition.get("type") == "DisruptionTarget" and condition.get("status") == "True":
            why = condition.get("reason") or "Disrupted"
            return "Disrupted", f"the pod was disrupted ({why}): {_one_line(condition.get('message'))}".rstrip(": ")
    term = terminated(pod) or {}
    if term.get("reason") == "OOMKilled":
        return "OOMKilled", (
            "the trainer ran out of memory (OOMKilled); raise spec.resources.memory or "
            "lower per_device_train_batch_size"
        )
    result, raw = pod_result(pod)
    if result is not None and result.outcome == "Failed":
        return result.reason or "TrainingError", _one_line(result.message) or "the trainer failed"
    code = term.get("exitCode")
    if code == EXIT_INVALID_CONFIG:
        return "InvalidConfig", raw or "the trainer rejected its configuration"
    if raw:
        return "TrainingError", raw
    if (pod.get("status") or {}).get("reason"):
        status = pod["status"]
        return status["reason"], _one_line(status.get("message")) or status["reason"]
    return "TrainingError", f"the trainer exited with code {code}" if code is not None else "the trainer pod failed"


def _terminal_failure(job: Json, failed: Json, last_pod: Json | None) -> tuple[str, str]:
    job_reason = failed.get("reason") or "Failed"
    job_message = _one_line(failed.get("message"))
    if job_reason == "DeadlineExceeded":
        return "DeadlineExceeded", f"the run exceeded spec.activeDeadlineSeconds: {job_message}".rstrip(": ")
    if last_pod is None:
        return job_reason, job_message or "the Job failed"
    reason, message = attempt_failure(last_pod)
    if job_reason == "PodFailurePolicy" and reason in {"TrainingError", "Disrupted"}:
        reason = "InvalidConfig"
    if job_reason == "BackoffLimitExceeded" and reason not in {"OOMKilled", "InvalidConfig", "InvalidData"}:
        limit = (job.get("spec") or {}).get("backoffLimit")
        return "BackoffLimitExceeded", f"every attempt failed (backoffLimit {limit} used up); last: {reason}: {message}"
    return reason, message


def _succeeded_fields(pod: Json | None) -> dict[str, Any]:
    if pod is None:
        return {}
    result, _ = pod_result(pod)
    if result is None:
        return {}
    fields: dict[str, Any] = {}
    if result.artifact is not None:
        artifact: dict[str, Any] = {"uri": to_user_uri(result.artifact.uri), "kind": result.artifact.kind}
        if result.artifact.merged_uri:
            artifact["mergedUri"] = to_user_uri(result.artifact.merged_uri)
        fields["artifact"] = artifact
    if result.metrics:
        fields["metrics"] = dict(result.metrics)
    return fields


def _pending_problem(pod: Json) -> tuple[str, str, bool] | None:
    """Why a pending pod does not start: (reason, message, stalled), or None."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if (condition.get("type"), condition.get("status"), condition.get("reason")) == (
            "PodScheduled",
            "False",
            "Unschedulable",
        ):
            return "Unschedulable", _one_line(condition.get("message")) or "no node fits the pod", False
    state, _ = trainer_state(pod)
    waiting = state.get("waiting") or {}
    why = waiting.get("reason")
    if why in IMAGE_PULL_REASONS:
        image = ""
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") == CONTAINER_NAME:
                image = status.get("image") or ""
        message = _one_line(waiting.get("message")) or f"cannot pull image {image}".strip()
        return "ImagePullError", f"{why}: {message}", True
    if why in CONFIG_REASONS:
        return why, _one_line(waiting.get("message")) or why, True
    return None


def assess(observed: Observed) -> Assessment:
    """The phase and its reason for the observed Job and pods (see the module docstring)."""
    if observed.invalid is not None:
        return Assessment("Failed", "InvalidSpec", observed.invalid, failure=("InvalidSpec", observed.invalid))

    job = observed.job
    pods = list(observed.pods)
    pod = newest_pod(pods)
    if job is None:
        return Assessment("Pending", "Pending", PENDING_MESSAGE)

    job_status = job.get("status") or {}
    base: dict[str, Any] = {"jobName": job["metadata"]["name"]}
    started: dict[str, Any] = dict(base)
    if pod is not None:
        started["podName"] = pod["metadata"]["name"]
    started["attempts"] = _attempts(job, pods)
    if job_status.get("startTime"):
        started["startTime"] = job_status["startTime"]

    complete = _job_condition(job, "Complete")
    if complete is not None:
        fields = {**started, **_succeeded_fields(pod)}
        fields["completionTime"] = job_status.get("completionTime") or complete.get("lastTransitionTime")
        return Assessment("Succeeded", "Succeeded", "training finished", fields=fields)

    # FailureTarget: the Job controller has decided to fail the Job (Kubernetes >= 1.31).
    failed = _job_condition(job, "Failed") or _job_condition(job, "FailureTarget")
    if failed is None and pod is not None and (terminated(pod) or {}).get("exitCode") == EXIT_INVALID_CONFIG:
        # The Job's podFailurePolicy fails it on this exit code; no retry is coming.
        failed = {"reason": "PodFailurePolicy", "lastTransitionTime": (terminated(pod) or {}).get("finishedAt")}
    if failed is not None:
        reason, message = _terminal_failure(job, failed, pod)
        fields = {**started, "completionTime": failed.get("lastTransitionTime")}
        return Assessment("Failed", reason, message, fields=fields, failure=(reason, message))

    if observed.suspend:
        return Assessment("Suspended", "Suspended", "spec.suspend is true: the trainer pods are stopped", fields=base)

    if (job.get("spec") or {}).get("suspend"):
        if observed.queued:
            return Assessment("Pending", "WaitingForAdmission", "queued in Kueue, waiting for admission", fields=base)
        return Assessment("Pending", "Resuming", "the Job is being resumed", fields=base)

    if pod is None:
        return Assessment("Pending", "Pending", PENDING_MESSAGE, fields=base)

    pod_phase = (pod.get("status") or {}).get("phase")
    state, _ = trainer_state(pod)
    if (pod_phase == "Running" and "running" in state) or pod_phase == "Succeeded":
        # A succeeded pod whose Job is not yet Complete is still "running" to the user.
        return Assessment("Running", "Running", RUNNING_MESSAGE, fields=started)

    if pod_phase == "Failed" or (pod_phase == "Running" and "terminated" in state):
        return _retrying(pod, pods, started)

    problem = _pending_problem(pod)
    if problem is not None:
        reason, message, stalled = problem
        return Assessment("Pending", reason, message, stalled=stalled, fields=base, failure=(reason, message))
    earlier = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
    if earlier:
        # Between attempts: keep saying why the last one failed until the next one runs.
        return _retrying(newest_pod(earlier) or pod, pods, started)
    return Assessment("Pending", "Pending", PENDING_MESSAGE, fields=base)


def _retrying(failed_pod: Json, pods: Sequence[Json], started: dict[str, Any]) -> Assessment:
    reason, message = attempt_failure(failed_pod)
    # Numbered by the failed pod, so the next pod's creation changes nothing here.
    attempt = sorted(_creation_order(p) for p in pods).index(_creation_order(failed_pod)) + 1
    fields = {**started, "podName": failed_pod["metadata"]["name"], "attempts": attempt}
    retry = f"attempt {attempt} failed: {message}; the Job retries"
    return Assessment("Pending", "Retrying", retry, fields=fields, failure=(reason, retry))


def conditions_for(assessment: Assessment) -> dict[str, bool]:
    """Each condition type's truth for an assessment (the table in the module docstring)."""
    phase = assessment.phase
    return {
        "Ready": phase == "Succeeded",
        "Reconciling": phase in {"Pending", "Running"},
        "Stalled": phase == "Failed" or assessment.stalled,
        "Suspended": phase == "Suspended",
        "Failed": phase == "Failed",
    }


def phase_of(conditions: Sequence[Json]) -> str:
    """The phase the conditions say: Failed, Succeeded, Suspended, Running or Pending."""
    true = {c["type"]: c for c in conditions if c.get("status") == "True"}
    if "Failed" in true:
        return "Failed"
    if "Ready" in true:
        return "Succeeded"
    if "Suspended" in true:
        return "Suspended"
    if "Reconciling" in true and true["Reconciling"].get("reason") == "Running":
        return "Running"
    return "Pending"


def build_conditions(
    assessment: Assessment, previous: Sequence[Json], generation: int | None, now: str
) -> list[dict[str, Any]]:
    """Conditions for the assessment; lastTransitionTime kept where the status did not change."""
    before = {c.get("type"): c for c in previous}
    built = []
    for kind, truth in conditions_for(assessment).items():
        status = "True" if truth else "False"
        old = before.get(kind)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else None
        condition: dict[str, Any] = {
            "type": kind,
            "status": status,
            "reason": assessment.reason,
            "message": assessment.message,
            "lastTransitionTime": since or now,
        }
        if generation is not None:
            condition["observedGeneration"] = generation
        built.append(condition)
    return built


# Fields this module owns; `progress` belongs to the progress reader.
OWNED_FIELDS = (
    "phase",
    "conditions",
    "observedGeneration",
    "reason",
    "message",
    "jobName",
    "podName",
    "attempts",
    "startTime",
    "completionTime",
    "artifact",
    "metrics",
)


def desired_status(observed: Observed, previous: Json | None, now: str) -> dict[str, Any]:
    """The operator-owned part of status for what was observed."""
    previous = previous or {}
    assessment = assess(observed)
    conditions = build_conditions(assessment, previous.get("conditions") or [], observed.generation, now)
    status: dict[str, Any] = {"phase": phase_of(conditions), "conditions": conditions}
    if observed.generation is not None:
        status["observedGeneration"] = observed.generation
    if assessment.failure is not None:
        status["reason"], status["message"] = assessment.failure
    status.update({key: value for key, value in assessment.fields.items() if value is not None})
    return status


def status_patch(previous: Json | None, desired: Json) -> dict[str, Any]:
    """A merge patch turning the owned fields of `previous` into `desired` ({} when equal).

    Owned fields that are no longer wanted are removed (null in a merge patch).
    """
    previous = previous or {}
    patch: dict[str, Any] = {}
    for key in OWNED_FIELDS:
        if key in desired:
            if previous.get(key) != desired[key]:
                patch[key] = desired[key]
        elif previous.get(key) is not None:
            patch[key] = None
    return patch
