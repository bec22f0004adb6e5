"""FineTuneJob objects in every state, with the status the operator itself builds.

The statuses come from `kubetune_operator.status.desired_status` (and `progress_status`
for a running job) fed with Job and Pod objects as the API server reports them, so the
health checks are tested against what the operator really writes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubetune_api.protocol import Artifact, Progress, Result, encode_result
from kubetune_operator.builders import CONTAINER_NAME
from kubetune_operator.progress_status import progress_status
from kubetune_operator.status import Observed, desired_status

NOW = "2026-01-02T03:04:05Z"
JOB = {"metadata": {"name": "sentiment-x7k2"}, "spec": {"backoffLimit": 3}, "status": {}}


def _pod(state: dict[str, Any], phase: str = "Running", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "sentiment-x7k2-abcde", "creationTimestamp": "2026-01-02T03:00:00Z"},
        "status": {"phase": phase, "containerStatuses": [{"name": CONTAINER_NAME, "state": state}], **status},
    }


def _job(**status: Any) -> dict[str, Any]:
    return {**JOB, "status": status}


def _finished(kind: str, reason: str | None = None) -> dict[str, Any]:
    condition = {"type": kind, "status": "True", "lastTransitionTime": NOW}
    if reason:
        condition["reason"] = reason
        condition["message"] = "Job has reached the specified backoff limit"
    return _job(conditions=[condition], startTime="2026-01-02T03:00:00Z")


SUCCEEDED_RESULT = Result(
    outcome="Succeeded",
    artifact=Artifact(uri="/mnt/pvc/models/sentiment", kind="adapter"),
    metrics={"eval_accuracy": 0.91},
)
FAILED_RESULT = Result(outcome="Failed", reason="TrainingError", message="CUDA error: device-side assert triggered")


def _terminated(result: Result, code: int) -> dict[str, Any]:
    return {
        "terminated": {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "message": encode_result(result),
        }
    }


def _obj(observed: Observed, generation: int = 1, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    status = desired_status(observed, None, NOW)
    status.update(extra or {})
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "sentiment", "namespace": "ml", "generation": generation},
        "status": status,
    }


RUNNING_PROGRESS = progress_status(
    Progress(step=30, max_steps=120, epoch=0.5, loss=0.41, elapsed_seconds=60.0),
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
)

# name -> (object, Argo CD health, kstatus status, expected phase)
SAMPLES: dict[str, tuple[dict[str, Any], str, str, str | None]] = {
    "no-status-yet": (
        {"apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob", "metadata": {"name": "s", "generation": 1}},
        "Progressing",
        # kstatus calls an object without status Current: Flux needs the healthCheckExprs in
        # examples/gitops/flux-kustomization.yaml to wait for the operator's first status.
        "Current",
        None,
    ),
    "pending-no-job": (_obj(Observed(generation=1, suspend=False)), "Progressing", "InProgress", "Pending"),
    "pending-pod-scheduling": (
        _obj(
            Observed(
                generation=1,
                suspend=False,
                job=_job(active=1),
                pods=[_pod({"waiting": {"reason": "ContainerCreating"}}, phase="Pending")],
            )
        ),
        "Progressing",
        "InProgress",
        "Pending",
    ),
    "unschedulable": (
        _obj(
            Observed(
                generation=1,
                suspend=False,
                job=_job(active=1),
                pods=[
                    {
                        "metadata": {"name": "p", "creationTimestamp": NOW},
                        "status": {
                            "phase": "Pending",
                            "conditions": [
                                {
                                    "type": "PodScheduled",
                                    "status": "False",
                                    "reason": "Unschedulable",
                                    "message": "0/3 nodes have nvidia.com/gpu",
                                }
                            ],
                        },
                    }
                ],
            )
        ),
        "Progressing",
        "InProgress",
        "Pending",
    ),
    "queued-in-kueue": (
        _obj(Observed(generation=1, suspend=False, queued=True, job={**JOB, "spec": {"suspend": True}})),
        "Progressing",
        "InProgress",
        "Pending",
    ),
    "running": (
        _obj(
            Observed(generation=1, suspend=False, job=_job(active=1), pods=[_pod({"running": {"startedAt": NOW}})]),
            extra={"progress": RUNNING_PROGRESS},
        ),
        "Progressing",
        "InProgress",
        "Running",
    ),
    "retrying": (
        _obj(
            Observed(
                generation=1,
                suspend=False,
                job=_job(active=1, failed=1),
                pods=[_pod(_terminated(FAILED_RESULT, 1), phase="Failed")],
            )
        ),
        "Progressing",
        "InProgress",
        "Pending",
    ),
    "image-pull-error": (
        _obj(
            Observed(
                generation=1,
                suspend=False,
                job=_job(active=1),
                pods=[
                    _pod(
                        {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}},
                        phase="Pending",
                    )
                ],
            )
        ),
        "Degraded",
        # kstatus takes the first of Reconciling/Stalled that is True; a stalled run has
        # Reconciling=False, so kstatus (and Flux without extra expressions) says Failed.
        "Failed",
        "Pending",
    ),
    "succeeded": (
        _obj(
            Observed(
                generation=1,
                suspend=False,
                job=_finished("Complete"),
                pods=[_pod(_terminated(SUCCEEDED_RESULT, 0), phase="Succeeded")],
            )
        ),
        "Healthy",
        "Current",
        "Succeeded",
    ),
    "failed-backoff": (
        _obj(
            Observed(
                generation=1,
                suspend=False,
                job=_finished("Failed", "BackoffLimitExceeded"),
                pods=[_pod(_terminated(FAILED_RESULT, 1), phase="Failed")],
            )
        ),
        "Degraded",
        "Failed",
        "Failed",
    ),
    "invalid-spec": (
        _obj(Observed(generation=1, suspend=False, invalid="spec.resources.gpus: 16 exceeds the 8 GPUs a node has")),
        "Degraded",
        "Failed",
        "Failed",
    ),
    "suspended": (
        _obj(Observed(generation=2, suspend=True, job=_job()), generation=2),
        "Suspended",
        "Current",
        "Suspended",
    ),
    "stale-after-spec-change": (
        _obj(Observed(generation=1, suspend=False, job=_finished("Complete"), pods=[]), generation=2),
        "Progressing",
        "InProgress",
        "Succeeded",
    ),
}
