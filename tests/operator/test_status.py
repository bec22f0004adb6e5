"""Status mapping, table-driven over Job and pod states."""

from __future__ import annotations

from typing import Any

import pytest

from kubetune_api.protocol import Artifact, Result, encode_result
from kubetune_api.status_model import FineTuneJobStatus
from kubetune_operator.events import shared_output_warning, transition_event
from kubetune_operator.status import Observed, desired_status, phase_of, status_patch

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
    # Stalled, and not also Reconciling: kstatus reads the first True of the two.
    assert truth["image pull failure"]["Stalled"] == "True" and truth["image pull failure"]["Reconciling"] == "False"
    pulling = next(observed for name, observed, *_ in CASES if name == "image pull failure")
    assert phase_of(desired_status(pulling, None, NOW)["conditions"]) == "Pending"
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


# -- multi-node runs: an Indexed Job with one pod per completion index ----------------------------


def t(second: int) -> str:
    return f"2030-01-01T00:00:{second:02d}Z"


def indexed_job(*conditions: tuple[str, str, str], nodes: int = 2, **status: Any) -> dict[str, Any]:
    built = job(*conditions, **status)
    built["metadata"]["annotations"] = {"kubetune.io/nodes": str(nodes)}
    built["spec"]["backoffLimit"] = 3 * nodes
    return built


def ipod(index: int, created: int, phase: str = "Running", **extra: Any) -> dict[str, Any]:
    made = pod(f"ft-train-{index}-c{created}", phase, t(created), **extra)
    made["metadata"]["annotations"] = {"batch.kubernetes.io/job-completion-index": str(index)}
    return made


def ended(code: int, second: int, message: str = "", reason: str = "Error") -> dict[str, Any]:
    state = {"terminated": {"exitCode": code, "reason": reason, "message": message, "finishedAt": t(second)}}
    return container(state)


RUNNING = container({"running": {}})
RANK1_CRASH = encode_result(
    Result(outcome="Failed", reason="TrainingError", message="rank 1 of 2 (node 1, local rank 0): CUDA error")
)
PEER_GONE = encode_result(
    Result(outcome="Failed", reason="TrainingError", message="rank 0 of 2 (node 0, local rank 0): peer closed")
)
RANK1_BAD_DATA = encode_result(
    Result(outcome="Failed", reason="InvalidData", message="rank 1 of 2 (node 1, local rank 0): row 3: empty label")
)

MULTI: list[tuple[str, Observed, str, str, dict[str, Any]]] = [
    (
        "all ranks run",
        Observed(1, False, job=indexed_job(active=2), pods=[ipod(1, 1, **RUNNING), ipod(0, 2, **RUNNING)]),
        "Running",
        "Running",
        {"podName": "ft-train-0-c2", "attempts": 1},
    ),
    (
        "rank 1 cannot be scheduled",
        Observed(
            1,
            False,
            job=indexed_job(active=2),
            pods=[
                ipod(0, 1, **RUNNING),
                ipod(
                    1,
                    1,
                    "Pending",
                    conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "x"}],
                ),
            ],
        ),
        "Pending",
        "Unschedulable",
        {"reason": "Unschedulable"},
    ),
    (
        "rank 1 failed first, rank 0 lost its peer",
        Observed(
            1,
            False,
            job=indexed_job(active=0, failed=2),
            pods=[ipod(0, 1, "Failed", **ended(1, 15, PEER_GONE)), ipod(1, 1, "Failed", **ended(1, 10, RANK1_CRASH))],
        ),
        "Pending",
        "Retrying",
        {
            "failedIndex": 1,
            "reason": "TrainingError",
            "message": "attempt 1 failed: index 1: rank 1 of 2 (node 1, local rank 0): CUDA error; the Job retries",
            "podName": "ft-train-0-c1",
            "attempts": 1,
        },
    ),
    (
        "second attempt: rank 0 failed first this time (older failures do not count)",
        Observed(
            1,
            False,
            job=indexed_job(active=1, failed=3),
            pods=[
                ipod(1, 1, "Failed", **ended(1, 10, RANK1_CRASH)),
                ipod(0, 1, "Failed", **ended(1, 15, PEER_GONE)),
                ipod(1, 11, **RUNNING),
                ipod(0, 16, "Failed", **ended(1, 30, "Traceback...\nRuntimeError: NCCL timeout")),
            ],
        ),
        "Pending",
        "Retrying",
        {
            "failedIndex": 0,
            "attempts": 2,
            "message": "attempt 2 failed: index 0: RuntimeError: NCCL timeout; the Job retries",
        },
    ),
    (
        "exit 78 wins over an earlier peer failure",
        Observed(
            1,
            False,
            job=indexed_job(("Failed", "PodFailurePolicy", "Container trainer ... exit code 78")),
            pods=[
                ipod(0, 1, "Failed", **ended(1, 10, PEER_GONE)),
                ipod(1, 1, "Failed", **ended(78, 12, RANK1_BAD_DATA)),
            ],
        ),
        "Failed",
        "InvalidData",
        {"failedIndex": 1, "message": "index 1: rank 1 of 2 (node 1, local rank 0): row 3: empty label"},
    ),
    (
        "exit 78 on rank 1 before the Job says so",
        Observed(
            1,
            False,
            job=indexed_job(active=2),
            pods=[ipod(0, 1, **RUNNING), ipod(1, 1, "Failed", **ended(78, 12, RANK1_BAD_DATA))],
        ),
        "Failed",
        "InvalidData",
        {"failedIndex": 1},
    ),
    (
        "backoff used up: counted in attempts of the group",
        Observed(
            1,
            False,
            job=indexed_job(("Failed", "BackoffLimitExceeded", ""), failed=8),
            pods=[ipod(0, 1, "Failed", **ended(1, 15, PEER_GONE)), ipod(1, 1, "Failed", **ended(1, 10, RANK1_CRASH))],
        ),
        "Failed",
        "BackoffLimitExceeded",
        {
            "failedIndex": 1,
            "message": "every attempt failed (backoffLimit 3 used up); last: TrainingError: "
            "index 1: rank 1 of 2 (node 1, local rank 0): CUDA error",
        },
    ),
    (
        "succeeded: the artifact from rank 0's pod",
        Observed(
            1,
            False,
            job=indexed_job(("Complete", "CompletionsReached", ""), succeeded=2, completionTime=NOW),
            pods=[
                ipod(1, 1, "Succeeded", **ended(0, 20, "", "Completed")),
                ipod(0, 1, "Succeeded", **ended(0, 21, OK)),
            ],
        ),
        "Succeeded",
        "Succeeded",
        {
            "podName": "ft-train-0-c1",
            "artifact": {"uri": "pvc://models/out", "kind": "adapter", "mergedUri": "pvc://models/out/merged"},
        },
    ),
]


@pytest.mark.parametrize(("observed", "phase", "reason", "fields"), [c[1:] for c in MULTI], ids=[c[0] for c in MULTI])
def test_multi_node_status_table(observed: Observed, phase: str, reason: str, fields: dict[str, Any]) -> None:
    status = desired_status(observed, None, NOW)
    assert (status["phase"], {c["reason"] for c in status["conditions"]}) == (phase, {reason})
    for key, value in fields.items():
        assert status[key] == value, key
    if reason in ("Running", "Succeeded", "Unschedulable"):
        assert "failedIndex" not in status
    FineTuneJobStatus.model_validate(status)


def test_multi_node_is_pending_until_every_rank_runs() -> None:
    one_running = Observed(1, False, job=indexed_job(active=2), pods=[ipod(0, 1, **RUNNING)])
    assert desired_status(one_running, None, NOW)["phase"] == "Pending"
    status = desired_status(
        Observed(1, False, job=indexed_job(active=2), pods=[ipod(0, 1, **RUNNING), ipod(1, 1, **RUNNING)]), None, NOW
    )
    assert status["phase"] == "Running"


def test_failed_index_is_removed_once_running_again() -> None:
    failing = next(c[1] for c in MULTI if c[0] == "rank 1 failed first, rank 0 lost its peer")
    before = desired_status(failing, None, T0)
    again = Observed(
        1,
        False,
        job=indexed_job(active=2, failed=2),
        pods=[*failing.pods, ipod(0, 20, **RUNNING), ipod(1, 20, **RUNNING)],
    )
    after = desired_status(again, before, NOW)
    assert after["phase"] == "Running" and after["attempts"] == 2
    patch = status_patch(before, after)
    assert patch["failedIndex"] is None and patch["reason"] is None


@pytest.mark.parametrize(
    ("nodes", "uri", "warned"),
    [(2, "pvc://models/out", True), (1, "pvc://models/out", False), (4, "s3://bucket/out", False), (2, None, False)],
)
def test_multi_node_claim_output_is_warned_about(nodes: int, uri: str | None, warned: bool) -> None:
    event = shared_output_warning(nodes, uri)
    assert (event is not None) == warned
    if event is not None:
        assert event.type == "Warning" and "ReadWriteMany" in event.message and uri in event.message


# -- a stopped pod (SIGTERM): the trainer saved a checkpoint first --------------------------------

INTERRUPTED = encode_result(
    Result(
        outcome="Failed",
        reason="Interrupted",
        message="stopped by SIGTERM at step 40: checkpoint-40 saved to s3://b/run; the next attempt resumes from it",
    )
)


def stopped_pod(disruption: dict[str, Any] | None = None) -> dict[str, Any]:
    conditions = [{"type": "DisruptionTarget", "status": "True", **disruption}] if disruption else []
    return pod(phase="Failed", conditions=conditions, **terminated(1, message=INTERRUPTED))


def test_a_preempted_pod_says_from_which_step_the_next_one_goes_on() -> None:
    preempted = stopped_pod({"reason": "PreemptionByScheduler", "message": "Preempted by a higher priority pod"})
    status = desired_status(Observed(1, False, job=job(), pods=[preempted], max_disruptions=5, disrupted=1), None, NOW)
    assert (status["phase"], status["reason"]) == ("Pending", "Disrupted")
    assert status["message"] == (
        "attempt 1 failed: the pod was disrupted (PreemptionByScheduler): Preempted by a higher priority pod; "
        "the trainer stopped by SIGTERM at step 40: checkpoint-40 saved to s3://b/run; the next attempt resumes "
        "from it; the Job retries"
    )


def test_a_pod_stopped_by_hand_is_interrupted_and_retried() -> None:
    status = desired_status(Observed(1, False, job=job(), pods=[stopped_pod()]), None, NOW)
    assert (status["phase"], status["reason"]) == ("Pending", "Interrupted")
    assert "checkpoint-40 saved to s3://b/run; the next attempt resumes from it; the Job retries" in status["message"]


def test_a_pushed_artifact_is_reported_by_its_digest() -> None:
    pinned = "oci://ghcr.io/team/chat@sha256:" + "ab" * 32
    pushed = encode_result(Result(outcome="Succeeded", artifact=Artifact(uri=pinned, kind="adapter")))
    done = job(("Complete", "", ""), completionTime=NOW)
    status = desired_status(
        Observed(1, False, job=done, pods=[pod(phase="Succeeded", **terminated(0, "Completed", pushed))]), None, NOW
    )
    assert status["artifact"] == {"uri": pinned, "kind": "adapter"}
