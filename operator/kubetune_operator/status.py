"""FineTuneJob status from what the Job and its pods show: pure functions, no API calls.

What the operator writes (the contract the Helm chart's Argo CD health check and
kstatus read):

``status.phase`` is derived from the conditions (`conditions.phase_of`) and is one of:

=========== ====================================================================
Pending     Job created (or about to be); pod not running yet. Also while Kueue
            has not admitted it (reason WaitingForAdmission), between retries,
            and while the API server refuses the Job for a reason that may pass
            (JobCreateFailed with a 403, NameConflict: Stalled).
Running     the trainer container runs.
Succeeded   the Job completed; ``status.artifact`` and ``status.metrics`` are set.
Failed      terminal: InvalidSpec, InvalidConfig, InvalidData, OOMKilled,
            DeadlineExceeded, BackoffLimitExceeded, TooManyDisruptions,
            JobCreateFailed (the Job is invalid), TrainingError, ...
Suspended   spec.suspend is true and the run has not finished.
=========== ====================================================================

The conditions are described in `kubetune_operator.conditions`. ``status.reason`` /
``status.message`` carry the failure (or the last failed attempt while the Job retries,
or why a pending pod does not start). ``observedGeneration``, ``jobName``, ``podName``,
``attempts``, ``startTime``, ``completionTime``, ``artifact``, ``metrics`` and
``specHash`` complete it; ``progress`` is written separately by the progress reader.

Status is the record and only moves forward: once Succeeded or Failed, it is not
derived again (`frozen_status`): the Job and the pods may go (TTL, PodGC, a person), the
outcome stays. Multi-node runs are described in `kubetune_operator.attempts`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubetune_api.finetunejob import FineTuneJobSpec
from kubetune_api.outcomes import EXIT_INVALID_CONFIG, Reason
from kubetune_operator import attempts, merge_patch
from kubetune_operator.conditions import (
    GPU_MEMORY_TOO_SMALL,
    SPEC_CHANGE_IGNORED,
    build_conditions,
    is_true,
    memory_warning_of,
    phase_of,
)
from kubetune_operator.views import IMAGE_PULL_REASONS, JobView, PodView, one_line, pod_views
from kubetune_operator.volumes import to_user_uri

PENDING_MESSAGE = "waiting for the trainer pod to start"
RUNNING_MESSAGE = "the trainer is running"
NO_RESULT_MESSAGE = "the trainer's result went with its pod: the model is at spec.output, its metrics were not read"

Json = Mapping[str, Any]


@dataclass(frozen=True)
class CreateProblem:
    """The API server refused to create the run's Job (or something holds its name)."""

    reason: str  # JobCreateFailed or NameConflict
    message: str
    final: bool = False  # refused for good: the spec, and so the Job, cannot change


@dataclass(frozen=True)
class Observed:
    """Everything the status is derived from."""

    generation: int | None
    suspend: bool
    queued: bool = False  # the Job carries Kueue's queue label: Kueue decides when it runs
    invalid: str | None = None  # InvalidSpec message, when the spec cannot run
    job: Json | None = None
    pods: Sequence[Json] = ()
    create_problem: CreateProblem | None = None
    # Where the spec says the model goes (uri as the user wrote it, kind), for when the pod
    # and its Result are gone before the operator read them.
    expected_artifact: Mapping[str, str] | None = None
    disrupted: int = 0  # pods the cluster stopped so far (remembered beyond their deletion)
    max_disruptions: int | None = None
    spec_change_ignored: bool = False
    memory_warning: str | None = None  # GPUMemoryTooSmall, found before the Job was created


@dataclass(frozen=True)
class Assessment:
    """The phase, why, and the status fields other than conditions."""

    phase: str
    reason: str
    message: str
    stalled: bool = False
    fields: dict[str, Any] = field(default_factory=dict)
    failure: tuple[str, str] | None = None  # (reason, message) for status.reason/message


def expected_artifact(spec: FineTuneJobSpec | None) -> dict[str, str] | None:
    """Where the spec says the model goes: the artifact, should its pod and Result be gone."""
    if spec is None or spec.output is None:
        return None
    return {"uri": spec.output.uri, "kind": "adapter" if spec.lora else "full"}


def _failed(reason: str, message: str, fields: dict[str, Any] | None = None) -> Assessment:
    return Assessment("Failed", reason, message, fields=fields or {}, failure=(reason, message))


def assess(observed: Observed) -> Assessment:
    """The phase and its reason for the observed Job and pods (see the module docstring)."""
    if observed.invalid is not None:
        return _failed(Reason.INVALID_SPEC, observed.invalid)
    if observed.job is None:
        return _without_job(observed.create_problem)

    job = JobView(observed.job)
    pods = pod_views(observed.pods)
    lead = attempts.lead_pod(pods)
    base: dict[str, Any] = {"jobName": job.name, "specHash": job.spec_hash}
    started = {**base, "attempts": attempts.attempts(job, pods), "startTime": job.start_time}
    if lead is not None:
        started["podName"] = lead.name

    if job.complete is not None:
        return _succeeded(job, pods, lead, started, observed.expected_artifact)
    failure = _failure(observed, job, pods, started)
    if failure is not None:
        return failure
    if observed.suspend:
        return Assessment(
            Reason.SUSPENDED, Reason.SUSPENDED, "spec.suspend is true: the trainer pods are stopped", fields=base
        )
    if job.suspended:
        if observed.queued:
            return Assessment(
                "Pending", Reason.WAITING_FOR_ADMISSION, "queued in Kueue, waiting for admission", fields=base
            )
        return Assessment("Pending", Reason.RESUMING, "the Job is being resumed", fields=base)
    return _waiting(job, pods, lead, base, started)


def _without_job(problem: CreateProblem | None) -> Assessment:
    if problem is None:
        return Assessment("Pending", Reason.PENDING, PENDING_MESSAGE)
    if problem.final:
        return _failed(problem.reason, problem.message)
    return Assessment(
        "Pending", problem.reason, problem.message, stalled=True, failure=(problem.reason, problem.message)
    )


def _succeeded(
    job: JobView, pods: list[PodView], lead: PodView | None, started: dict[str, Any], expected: Json | None
) -> Assessment:
    # Rank 0 writes the Result: look at the lead pod first, then the others.
    current = attempts.newest_per_index(pods)
    order = [lead, *(p for _, p in sorted(current.items()) if p is not lead)] if lead is not None else []
    result = next((p.result for p in order if p.result is not None), None)
    fields = {**started, "completionTime": job.completion_time or (job.complete or {}).get("lastTransitionTime")}
    message = "training finished"
    if result is not None and result.artifact is not None:
        artifact: dict[str, Any] = {"uri": to_user_uri(result.artifact.uri), "kind": result.artifact.kind}
        if result.artifact.merged_uri:
            artifact["mergedUri"] = to_user_uri(result.artifact.merged_uri)
        fields["artifact"] = artifact
        if result.metrics:
            fields["metrics"] = dict(result.metrics)
    elif expected is not None:
        fields["artifact"] = dict(expected)
        message = f"training finished; {NO_RESULT_MESSAGE}"
    return Assessment("Succeeded", Reason.SUCCEEDED, message, fields=fields)


def _failure(observed: Observed, job: JobView, pods: list[PodView], started: dict[str, Any]) -> Assessment | None:
    """The terminal failure the Job (or a config-error exit, or too many disruptions) shows."""
    nodes = job.nodes
    current = attempts.newest_per_index(pods)
    failed = job.failure
    if failed is None and any(p.exit_code == EXIT_INVALID_CONFIG for p in current.values()):
        # The Job's podFailurePolicy fails it on this exit code; no retry is coming.
        config_error = next(p for p in current.values() if p.exit_code == EXIT_INVALID_CONFIG)
        failed = {"reason": "PodFailurePolicy", "lastTransitionTime": config_error.terminated.get("finishedAt")}
    if failed is None:
        return _too_many_disruptions(observed, pods, started)
    # One pod: the newest, as ever. Several: the one whose failure ended the attempt.
    culprit = (attempts.first_failure(pods, nodes) or attempts.lead_pod(pods)) if nodes > 1 else attempts.newest(pods)
    reason, message = _terminal_failure(job, failed, culprit)
    fields = {**started, **_failed_index(culprit, nodes), "completionTime": failed.get("lastTransitionTime")}
    return _failed(reason, message, fields)


def _too_many_disruptions(observed: Observed, pods: list[PodView], started: dict[str, Any]) -> Assessment | None:
    limit = observed.max_disruptions
    if limit is None or observed.disrupted <= limit:
        return None
    last = attempts.newest(attempts.disruptions(pods))
    detail = f"; last: {attempts.attempt_failure(last)[1]}" if last is not None else ""
    message = (
        f"the cluster stopped the trainer pod {observed.disrupted} times (eviction, preemption, node "
        f"drain or pressure), more than spec.maxDisruptions {limit}{detail}"
    )
    return _failed(
        Reason.TOO_MANY_DISRUPTIONS, message, {**started, "completionTime": last.finished_at if last else None}
    )


def _terminal_failure(job: JobView, failed: Json, last_pod: PodView | None) -> tuple[str, str]:
    job_reason = failed.get("reason") or "Failed"
    job_message = one_line(failed.get("message"))
    if job_reason == Reason.DEADLINE_EXCEEDED:
        return Reason.DEADLINE_EXCEEDED, f"the run exceeded spec.activeDeadlineSeconds: {job_message}".rstrip(": ")
    if last_pod is None:
        return job_reason, job_message or "the Job failed"
    reason, message = attempts.described_failure(last_pod, job.nodes)
    if job_reason == "PodFailurePolicy" and reason in {Reason.TRAINING_ERROR, Reason.DISRUPTED}:
        reason = Reason.INVALID_CONFIG
    if job_reason == Reason.BACKOFF_LIMIT_EXCEEDED and reason not in {
        Reason.OOM_KILLED,
        Reason.INVALID_CONFIG,
        "InvalidData",
    }:
        # The Job's limit counts pods; the user set it in attempts of the group (see builders).
        limit = job.backoff_limit
        shown = limit // job.nodes if limit is not None else None
        return (
            Reason.BACKOFF_LIMIT_EXCEEDED,
            f"every attempt failed (backoffLimit {shown} used up); last: {reason}: {message}",
        )
    return reason, message


def _failed_index(pod: PodView | None, nodes: int) -> dict[str, Any]:
    return {"failedIndex": pod.index} if pod is not None and nodes > 1 else {}


def _waiting(
    job: JobView, pods: list[PodView], lead: PodView | None, base: dict[str, Any], started: dict[str, Any]
) -> Assessment:
    """Not finished, not suspended: running, between attempts, or a pod that cannot start."""
    nodes = job.nodes
    current = attempts.newest_per_index(pods)
    if not current:
        return Assessment("Pending", Reason.PENDING, PENDING_MESSAGE, fields=base)
    if len(current) >= nodes and all(p.training for p in current.values()):
        return Assessment("Running", Reason.RUNNING, RUNNING_MESSAGE, fields=started)
    if any(p.failed for p in current.values()):
        return _retrying(attempts.first_failure(pods, nodes) or lead or pods[0], pods, started, nodes)
    for _, pod in sorted(current.items()):
        problem = _pending_problem(pod)
        if problem is not None:
            reason, message, stalled = problem
            return Assessment("Pending", reason, message, stalled=stalled, fields=base, failure=(reason, message))
    culprit = attempts.first_failure(pods, nodes)
    if culprit is not None:
        # Between attempts: keep saying why the last one failed until the next one runs.
        return _retrying(culprit, pods, started, nodes)
    return Assessment("Pending", Reason.PENDING, PENDING_MESSAGE, fields=base)


def _pending_problem(pod: PodView) -> tuple[str, str, bool] | None:
    """Why a pending pod does not start: (reason, message, stalled), or None."""
    if pod.unschedulable is not None:
        return Reason.UNSCHEDULABLE, pod.unschedulable, False
    why = pod.waiting.get("reason")
    if why in IMAGE_PULL_REASONS:
        message = one_line(pod.waiting.get("message")) or f"cannot pull image {pod.image}".strip()
        return Reason.IMAGE_PULL_ERROR, f"{why}: {message}", True
    if why in Reason.CONTAINER_CONFIG_ERRORS:
        return why, one_line(pod.waiting.get("message")) or why, True
    return None


def _retrying(failed_pod: PodView, pods: list[PodView], started: dict[str, Any], nodes: int) -> Assessment:
    reason, message = attempts.described_failure(failed_pod, nodes)
    attempt = attempts.attempt_number(failed_pod, pods)
    fields = {**started, "attempts": attempt, **_failed_index(failed_pod, nodes)}
    if nodes == 1:
        fields["podName"] = failed_pod.name
    retry = f"attempt {attempt} failed: {message}; the Job retries"
    return Assessment("Pending", Reason.RETRYING, retry, fields=fields, failure=(reason, retry))


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
    "specHash",
)


def desired_status(observed: Observed, previous: Json | None, now: str) -> dict[str, Any]:
    """The operator-owned part of status for what was observed."""
    previous = previous or {}
    assessment = assess(observed)
    conditions = build_conditions(
        assessment.phase,
        assessment.stalled,
        assessment.reason,
        assessment.message,
        previous.get("conditions") or [],
        observed.generation,
        now,
        spec_change_ignored=observed.spec_change_ignored,
        memory_warning=observed.memory_warning or memory_warning_of(previous),
    )
    status: dict[str, Any] = {"phase": phase_of(conditions), "conditions": conditions}
    if observed.generation is not None:
        status["observedGeneration"] = observed.generation
    if assessment.failure is not None:
        status["reason"], status["message"] = assessment.failure
    status.update({key: value for key, value in assessment.fields.items() if value is not None})
    return status


# Failures the operator decides itself: no Job state can contradict them.
OPERATOR_VERDICTS = frozenset({Reason.INVALID_SPEC, Reason.JOB_CREATE_FAILED, Reason.TOO_MANY_DISRUPTIONS})


def is_record(known: Json, job: Json | None, wrote_phase: str | None) -> bool:
    """Whether a finished status is the run's record, or an edit the Job contradicts.

    Trusted: what this operator wrote, an outcome that has no Job to contradict it (the Job
    went, or never was), the operator's own verdicts, and a finished Job's outcome. A status
    claiming an end while the Job still runs is derived again (and so corrected).
    """
    if wrote_phase is not None and wrote_phase == known.get("phase"):
        return True
    return job is None or known.get("reason") in OPERATOR_VERDICTS or JobView(job).finished


def frozen_status(previous: Json, generation: int | None, spec_change_ignored: bool, now: str) -> dict[str, Any]:
    """A finished run's status: the outcome as recorded; only the generation it describes moves.

    A finished run ignores spec.suspend, so a new generation with the same spec is observed
    at once; a changed spec is not (`spec_change_ignored`), and says so in a condition.
    """
    status = dict(previous)
    extra = (SPEC_CHANGE_IGNORED, GPU_MEMORY_TOO_SMALL)
    standard = [c for c in previous.get("conditions") or [] if c.get("type") not in extra]
    seen = previous.get("observedGeneration") if spec_change_ignored else generation
    if seen is not None:
        status["observedGeneration"] = seen
    reason = next((c.get("reason", "") for c in standard), "")
    message = next((c.get("message", "") for c in standard), "")
    stalled = is_true(previous, "Stalled") and previous.get("phase") != "Failed"
    status["conditions"] = build_conditions(
        str(previous.get("phase")),
        stalled,
        reason,
        message,
        standard,
        seen,
        now,
        spec_change_ignored,
        memory_warning_of(previous),
    )
    return status


def status_patch(previous: Json | None, desired: Json) -> dict[str, Any]:
    """A merge patch turning the owned fields of `previous` into `desired` ({} when equal).

    Owned fields that are no longer wanted, nested ones included, are removed (null).
    """
    return merge_patch.diff(previous or {}, desired, OWNED_FIELDS)
