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
Pending      False      True*     False*    False        False
Running      False      True      False     False        False
Succeeded    True       False     False     False        False
Failed       False      False     True      False        True
Suspended    False      False     False     True         False
============ ========== ========= ========= ============ =========

(*) Stalled is True while Pending when the pod cannot start without someone acting:
image pull errors (reason ImagePullError) and container config errors (missing
Secret/ConfigMap: CreateContainerConfigError). Reconciling is then False: kstatus reads
the first True of Reconciling and Stalled, and a stalled run is not making progress.
The Job is not failed; it starts once fixed. Health for Argo CD / kstatus: Failed phase
or Stalled=True -> Degraded (kstatus: Failed); Succeeded -> Healthy; Suspended ->
Suspended; otherwise Progressing.

``status.reason`` / ``status.message`` carry the failure (or the last failed
attempt while the Job retries, or why a pending pod does not start: Unschedulable
with the scheduler's message). ``observedGeneration``, ``jobName``, ``podName``,
``attempts``, ``startTime``, ``completionTime``, ``artifact`` and ``metrics`` complete
it; ``progress`` is written separately by the progress reader.

Multi-node runs (an Indexed Job, one pod per completion index): the run is Running
once every index's newest pod runs; ``podName`` is the index-0 pod (global rank 0: it
writes the progress lines, the artifact and the Result); ``attempts`` counts attempts of
the group. A failure is described by the pod that failed first in the newest failed
attempt, preferring one that exited 78 (a bad config fails the Job through the
podFailurePolicy); the other ranks usually fail right after it only because their peer
went away. ``failedIndex`` is that pod's completion index, and the message starts with
``index N:``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubetune_api.protocol import EXIT_INVALID_CONFIG, Result, decode_result
from kubetune_operator.builders import ANNOTATION_NODES, COMPLETION_INDEX_KEY, CONTAINER_NAME
from kubetune_operator.volumes import to_user_uri

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


def job_nodes(job: Json | None) -> int:
    """Pods per attempt: the Job's parallelism as the builder recorded it (1 when absent)."""
    meta = (job or {}).get("metadata") or {}
    text = (meta.get("annotations") or {}).get(ANNOTATION_NODES)
    if text is None:
        text = ((job or {}).get("spec") or {}).get("parallelism")
    try:
        return max(1, int(text)) if text is not None else 1
    except ValueError:
        return 1


def completion_index(pod: Json) -> int:
    """The pod's completion index in an Indexed Job; 0 for the one pod of a plain Job."""
    meta = pod.get("metadata") or {}
    for source in (meta.get("annotations"), meta.get("labels")):
        text = (source or {}).get(COMPLETION_INDEX_KEY)
        if text is not None and str(text).isdigit():
            return int(text)
    return 0


def newest_per_index(pods: Sequence[Json]) -> dict[int, Json]:
    """The current attempt: each completion index's newest pod."""
    newest: dict[int, Json] = {}
    for pod in sorted(pods, key=_creation_order):
        newest[completion_index(pod)] = pod
    return newest


def lead_pod(pods: Sequence[Json]) -> Json | None:
    """The pod holding global rank 0 (index 0's newest): progress lines and the artifact come
    from it. For a one-pod Job, the newest pod."""
    current = newest_per_index(pods)
    return current.get(0) or newest_pod(list(current.values()))


def _failed(pod: Json) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    state, _ = trainer_state(pod)
    return phase == "Failed" or (phase == "Running" and "terminated" in state)


def _finished_at(pod: Json) -> str:
    return (terminated(pod) or {}).get("finishedAt") or pod["metadata"].get("creationTimestamp") or ""


def first_failure(pods: Sequence[Json], nodes: int) -> Json | None:
    """The failed pod that explains the newest failed attempt (see the module docstring).

    One pod per attempt: the newest failed pod. Several: the newest failed attempt is the
    newest failed pod's and those that failed after it was created (they ran beside it);
    in it, a pod that exited 78 wins (it is why the Job fails at once), else the one that
    finished first: the others' ranks failed because it went away.
    """
    failed = [p for p in pods if _failed(p)]
    if not failed:
        return None
    newest = max(failed, key=_creation_order)
    if nodes <= 1:
        return newest
    since = newest["metadata"].get("creationTimestamp") or ""
    attempt = [p for p in failed if p is newest or _finished_at(p) >= since]
    config_errors = [p for p in attempt if (terminated(p) or {}).get("exitCode") == EXIT_INVALID_CONFIG]
    return min(config_errors or attempt, key=lambda p: (_finished_at(p), completion_index(p)))


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


def _attempts(job: Json | None, pods: Sequence[Json], nodes: int = 1) -> int:
    """Attempts of the group: one pod per index each; the Job's counters are per pod."""
    status = (job or {}).get("status") or {}
    counted = sum(int(status.get(key) or 0) for key in ("active", "succeeded", "failed"))
    per_index: dict[int, int] = {}
    for pod in pods:
        index = completion_index(pod)
        per_index[index] = per_index.get(index, 0) + 1
    return max(-(-counted // nodes), max(per_index.values(), default=0))


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


def _terminal_failure(job: Json, failed: Json, last_pod: Json | None, nodes: int = 1) -> tuple[str, str]:
    job_reason = failed.get("reason") or "Failed"
    job_message = _one_line(failed.get("message"))
    if job_reason == "DeadlineExceeded":
        return "DeadlineExceeded", f"the run exceeded spec.activeDeadlineSeconds: {job_message}".rstrip(": ")
    if last_pod is None:
        return job_reason, job_message or "the Job failed"
    reason, message = _pod_failure(last_pod, nodes)
    if job_reason == "PodFailurePolicy" and reason in {"TrainingError", "Disrupted"}:
        reason = "InvalidConfig"
    if job_reason == "BackoffLimitExceeded" and reason not in {"OOMKilled", "InvalidConfig", "InvalidData"}:
        # The Job's limit counts pods; the user set it in attempts of the group (see builders).
        limit = (job.get("spec") or {}).get("backoffLimit")
        if isinstance(limit, int):
            limit //= nodes
        return "BackoffLimitExceeded", f"every attempt failed (backoffLimit {limit} used up); last: {reason}: {message}"
    return reason, message


def _pod_failure(pod: Json, nodes: int) -> tuple[str, str]:
    """attempt_failure, saying which pod of a multi-node run it was."""
    reason, message = attempt_failure(pod)
    return (reason, f"index {completion_index(pod)}: {message}") if nodes > 1 else (reason, message)


def _failure_fields(pod: Json | None, nodes: int) -> dict[str, Any]:
    return {"failedIndex": completion_index(pod)} if pod is not None and nodes > 1 else {}


def _succeeded_fields(pods: Sequence[Json]) -> dict[str, Any]:
    """The artifact and metrics from the Result of the pod that holds rank 0 (`pods` in the
    order to look: the lead pod first; other pods of a multi-node run write no Result)."""
    result = next((r for r in (pod_result(p)[0] for p in pods) if r is not None), None)
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


def _training(pod: Json) -> bool:
    """The trainer runs (or has finished well) in this pod."""
    pod_phase = (pod.get("status") or {}).get("phase")
    state, _ = trainer_state(pod)
    # A succeeded pod whose Job is not yet Complete is still "running" to the user.
    return (pod_phase == "Running" and "running" in state) or pod_phase == "Succeeded"


def assess(observed: Observed) -> Assessment:
    """The phase and its reason for the observed Job and pods (see the module docstring)."""
    if observed.invalid is not None:
        return Assessment("Failed", "InvalidSpec", observed.invalid, failure=("InvalidSpec", observed.invalid))

    job = observed.job
    pods = list(observed.pods)
    if job is None:
        return Assessment("Pending", "Pending", PENDING_MESSAGE)
    nodes = job_nodes(job)
    current = newest_per_index(pods)  # the newest attempt: one pod per index
    lead = lead_pod(pods)

    job_status = job.get("status") or {}
    base: dict[str, Any] = {"jobName": job["metadata"]["name"]}
    started: dict[str, Any] = dict(base)
    if lead is not None:
        started["podName"] = lead["metadata"]["name"]
    started["attempts"] = _attempts(job, pods, nodes)
    if job_status.get("startTime"):
        started["startTime"] = job_status["startTime"]

    complete = _job_condition(job, "Complete")
    if complete is not None:
        order = [lead, *(p for _, p in sorted(current.items()) if p is not lead)] if lead is not None else []
        fields = {**started, **_succeeded_fields(order)}
        fields["completionTime"] = job_status.get("completionTime") or complete.get("lastTransitionTime")
        return Assessment("Succeeded", "Succeeded", "training finished", fields=fields)

    # FailureTarget: the Job controller has decided to fail the Job (Kubernetes >= 1.31).
    failed = _job_condition(job, "Failed") or _job_condition(job, "FailureTarget")
    config_error = next(
        (p for p in current.values() if (terminated(p) or {}).get("exitCode") == EXIT_INVALID_CONFIG), None
    )
    if failed is None and config_error is not None:
        # The Job's podFailurePolicy fails it on this exit code; no retry is coming.
        finished = (terminated(config_error) or {}).get("finishedAt")
        failed = {"reason": "PodFailurePolicy", "lastTransitionTime": finished}
    if failed is not None:
        # One pod: the newest, as ever. Several: the one whose failure ended the attempt.
        culprit = (first_failure(pods, nodes) or lead) if nodes > 1 else newest_pod(pods)
        reason, message = _terminal_failure(job, failed, culprit, nodes)
        fields = {**started, **_failure_fields(culprit, nodes), "completionTime": failed.get("lastTransitionTime")}
        return Assessment("Failed", reason, message, fields=fields, failure=(reason, message))

    if observed.suspend:
        return Assessment("Suspended", "Suspended", "spec.suspend is true: the trainer pods are stopped", fields=base)

    if (job.get("spec") or {}).get("suspend"):
        if observed.queued:
            return Assessment("Pending", "WaitingForAdmission", "queued in Kueue, waiting for admission", fields=base)
        return Assessment("Pending", "Resuming", "the Job is being resumed", fields=base)

    if not current:
        return Assessment("Pending", "Pending", PENDING_MESSAGE, fields=base)

    if len(current) >= nodes and all(_training(p) for p in current.values()):
        return Assessment("Running", "Running", RUNNING_MESSAGE, fields=started)

    if any(_failed(p) for p in current.values()):
        return _retrying(first_failure(pods, nodes) or lead or pods[0], pods, started, nodes)

    for _, pod in sorted(current.items()):
        problem = _pending_problem(pod)
        if problem is not None:
            reason, message, stalled = problem
            return Assessment("Pending", reason, message, stalled=stalled, fields=base, failure=(reason, message))
    culprit = first_failure(pods, nodes)
    if culprit is not None:
        # Between attempts: keep saying why the last one failed until the next one runs.
        return _retrying(culprit, pods, started, nodes)
    return Assessment("Pending", "Pending", PENDING_MESSAGE, fields=base)


def _retrying(failed_pod: Json, pods: Sequence[Json], started: dict[str, Any], nodes: int = 1) -> Assessment:
    reason, message = _pod_failure(failed_pod, nodes)
    # Numbered by the failed pod among its index's pods, so the next pod's creation changes nothing here.
    index = completion_index(failed_pod)
    same_index = sorted(_creation_order(p) for p in pods if completion_index(p) == index)
    attempt = same_index.index(_creation_order(failed_pod)) + 1
    fields = {**started, "attempts": attempt, **_failure_fields(failed_pod, nodes)}
    if nodes == 1:
        fields["podName"] = failed_pod["metadata"]["name"]
    retry = f"attempt {attempt} failed: {message}; the Job retries"
    return Assessment("Pending", "Retrying", retry, fields=fields, failure=(reason, retry))


def conditions_for(assessment: Assessment) -> dict[str, bool]:
    """Each condition type's truth for an assessment (the table in the module docstring)."""
    phase = assessment.phase
    return {
        "Ready": phase == "Succeeded",
        # A stalled run is not progressing: kstatus must see Stalled, not Reconciling.
        "Reconciling": phase in {"Pending", "Running"} and not assessment.stalled,
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
    "failedIndex",
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
