"""Status mapping, table-driven over Job and pod states."""

from __future__ import annotations

from typing import Any

import pytest

from kubetune_operator.events import transition_event
from kubetune_operator.status import Observed, desired_status, phase_of, status_patch
from kubetune_operator.status_model import FineTuneJobStatus
from kubetune_trainer.protocol import Artifact, Result, encode_result

NOW = "2030-01-01T00:00:00Z"
T0 = "2029-12-31T23:00:00Z"


def job(*conditions: tuple[str, str, str], suspend: bool = False, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "ft-train", "namespace": "ml", "uid": "job-uid"},
        "spec": {"suspend": suspend, "backoffLimit": 3},
        "status": {
            "startTime": T0,
            **status,
            "conditions": [
                {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": NOW}
                for t, r, m in conditions
            ],
        },
    }


def pod(name: str = "ft-train-1", phase: str = "Pending", created: str = T0, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": created}, "status": {"phase": phase, **extra}}


def container(state: dict[str, Any]) -> dict[str, Any]:
    return {"containerStatuses": [{"name": "trainer", "image": "trainer:1", "state": state}]}


def terminated(code: int, reason: str = "Error", message: str = "") -> dict[str, Any]:
    return container({"terminated": {"exitCode": code, "reason": reason, "message": message, "finishedAt": NOW}})


OK = encode_result(
    Result(
        outcome="Succeeded",
        artifact=Artifact(uri="/mnt/pvc/models/out", kind="adapter", merged_uri="/mnt/pvc/models/out/merged"),
        metrics={"eval_loss": 0.5},
    )
)
BAD_DATA = encode_result(Result(outcome="Failed", reason="InvalidData", message="row 3: label is empty"))
CRASH = encode_result(Result(outcome="Failed", reason="TrainingError", message="CUDA error: device-side assert"))

CASES: list[tuple[str, Observed, str, str, dict[str, Any]]] = [
    ("no job yet", Observed(1, False), "Pending", "Pending", {}),
    ("job, no pod", Observed(1, False, job=job()), "Pending", "Pending", {"jobName": "ft-train"}),
    (
        "pending pod",
        Observed(1, False, job=job(), pods=[pod(**container({"waiting": {"reason": "ContainerCreating"}}))]),
        "Pending",
        "Pending",
        {},
    ),
    (
        "unschedulable",
        Observed(
            1,
            False,
            job=job(),
            pods=[
                pod(
                    conditions=[
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "reason": "Unschedulable",
                            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                        }
                    ]
                )
            ],
        ),
        "Pending",
        "Unschedulable",
        {"reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."},
    ),
    (
        "image pull failure",
        Observed(
            1,
            False,
            job=job(),
            pods=[
                pod(
                    **container(
                        {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image trainer:nope"}}
                    )
                )
            ],
        ),
        "Pending",
        "ImagePullError",
        {"reason": "ImagePullError", "message": "ImagePullBackOff: Back-off pulling image trainer:nope"},
    ),
    (
        "running",
        Observed(1, False, job=job(active=1), pods=[pod(phase="Running", **container({"running": {}}))]),
        "Running",
        "Running",
        {"podName": "ft-train-1", "attempts": 1, "startTime": T0},
    ),
    (
        "OOMKilled, retrying",
        Observed(1, False, job=job(failed=1), pods=[pod(phase="Failed", **terminated(137, "OOMKilled"))]),
        "Pending",
        "Retrying",
        {"reason": "OOMKilled", "attempts": 1},
    ),
    (
        "OOMKilled, next pod pending",
        Observed(
            1,
            False,
            job=job(failed=1, active=1),
            pods=[pod(phase="Failed", **terminated(137, "OOMKilled")), pod("ft-train-2", created=NOW)],
        ),
        "Pending",
        "Retrying",
        {"reason": "OOMKilled", "attempts": 1, "podName": "ft-train-1"},
    ),
    (
        "OOMKilled on the last attempt",
        Observed(
            1,
            False,
            job=job(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"), failed=4),
            pods=[pod(phase="Failed", **terminated(137, "OOMKilled"))],
        ),
        "Failed",
        "OOMKilled",
        {"reason": "OOMKilled", "completionTime": NOW},
    ),
    (
        "deadline",
        Observed(
            1,
            False,
            job=job(("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")),
            pods=[pod(phase="Failed")],
        ),
        "Failed",
        "DeadlineExceeded",
        {"reason": "DeadlineExceeded"},
    ),
    (
        "backoff exhausted with the trainer's error",
        Observed(
            1,
            False,
            job=job(("Failed", "BackoffLimitExceeded", "")),
            pods=[pod(phase="Failed", **terminated(1, message=CRASH))],
        ),
        "Failed",
        "BackoffLimitExceeded",
        {"reason": "BackoffLimitExceeded"},
    ),
    (
        "invalid-config exit",
        Observed(
            1,
            False,
            job=job(("Failed", "PodFailurePolicy", "Container trainer ... exit code 78")),
            pods=[pod(phase="Failed", **terminated(78, message=BAD_DATA))],
        ),
        "Failed",
        "InvalidData",
        {"reason": "InvalidData", "message": "row 3: label is empty"},
    ),
    (
        "invalid-config exit before the Job says so",
        Observed(
            1,
            False,
            job=job(active=1),
            pods=[pod(phase="Failed", **terminated(78, message="Traceback...\nValueError: bad"))],
        ),
        "Failed",
        "InvalidConfig",
        {"reason": "InvalidConfig", "message": "ValueError: bad"},
    ),
    (
        "succeeded with result",
        Observed(
            1,
            False,
            job=job(("Complete", "CompletionsReached", ""), succeeded=1, completionTime=NOW),
            pods=[pod(phase="Succeeded", **terminated(0, "Completed", OK))],
        ),
        "Succeeded",
        "Succeeded",
        {
            "artifact": {"uri": "pvc://models/out", "kind": "adapter", "mergedUri": "pvc://models/out/merged"},
            "metrics": {"eval_loss": 0.5},
            "completionTime": NOW,
        },
    ),
    (
        "pod done, Job not yet complete",
        Observed(1, False, job=job(active=1), pods=[pod(phase="Succeeded", **terminated(0, "Completed", OK))]),
        "Running",
        "Running",
        {},
    ),
    ("suspended", Observed(2, True, job=job(suspend=True)), "Suspended", "Suspended", {"observedGeneration": 2}),
    ("waiting for Kueue", Observed(1, False, queued=True, job=job(suspend=True)), "Pending", "WaitingForAdmission", {}),
    (
        "invalid spec",
        Observed(1, False, invalid="spec.task: bad"),
        "Failed",
        "InvalidSpec",
        {"reason": "InvalidSpec", "message": "spec.task: bad"},
    ),
]


@pytest.mark.parametrize(("observed", "phase", "reason", "fields"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_status_table(observed: Observed, phase: str, reason: str, fields: dict[str, Any]) -> None:
    status = desired_status(observed, None, NOW)
    assert status["phase"] == phase
    assert phase_of(status["conditions"]) == phase
    assert {c["reason"] for c in status["conditions"]} == {reason}
    for key, value in fields.items():
        assert status[key] == value, key
    if phase not in ("Failed",) and reason not in ("Retrying", "Unschedulable", "ImagePullError"):
        assert "reason" not in status
    FineTuneJobStatus.model_validate(status)  # the CRD schema's model accepts it


def test_condition_table() -> None:
    truth = {
        name: {c["type"]: c["status"] for c in desired_status(observed, None, NOW)["conditions"]}
        for name, observed, *_ in CASES
    }
    assert truth["running"] == {
        "Ready": "False",
        "Reconciling": "True",
        "Stalled": "False",
        "Suspended": "False",
        "Failed": "False",
    }
    assert truth["succeeded with result"]["Ready"] == "True"
    assert truth["deadline"] == {
        "Ready": "False",
        "Reconciling": "False",
        "Stalled": "True",
        "Suspended": "False",
        "Failed": "True",
    }
    assert truth["suspended"]["Suspended"] == "True" and truth["suspended"]["Reconciling"] == "False"
    assert truth["image pull failure"]["Stalled"] == "True" and truth["image pull failure"]["Reconciling"] == "True"
    assert truth["unschedulable"]["Stalled"] == "False"


def test_transition_times_are_kept_and_patches_are_minimal() -> None:
    running = Observed(1, False, job=job(active=1), pods=[pod(phase="Running", **container({"running": {}}))])
    first = desired_status(running, None, T0)
    again = desired_status(running, first, NOW)
    assert again == first
    assert status_patch(first, again) == {}
    done = Observed(1, False, job=job(("Complete", "CompletionsReached", ""), completionTime=NOW), pods=running.pods)
    final = desired_status(done, first, NOW)
    ready = next(c for c in final["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == NOW
    stalled = next(c for c in final["conditions"] if c["type"] == "Stalled")
    assert stalled["lastTransitionTime"] == T0  # still False: not a transition
    patch = status_patch({**first, "reason": "Old", "progress": {"step": 1}}, final)
    assert patch["reason"] is None  # removed in the merge patch
    assert "progress" not in patch  # not ours to touch here


def test_events_follow_transitions() -> None:
    pending = desired_status(Observed(1, False), None, NOW)
    assert transition_event(None, pending, "ft-train").reason == "JobCreated"  # type: ignore[union-attr]
    assert transition_event(pending, pending) is None
    failed = desired_status(Observed(1, False, invalid="spec.x: bad"), None, NOW)
    event = transition_event(None, failed)
    assert event is not None and (event.type, event.reason, event.message) == ("Warning", "InvalidSpec", "spec.x: bad")
