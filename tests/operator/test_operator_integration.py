"""The real operator (Kopf in-process, our handlers) against the kmock emulator, with the
fixture playing the Job controller and the kubelet."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any

from kubetune_api.protocol import Progress
from kubetune_operator.permissions import CLUSTER_RULES, NAMESPACED_RULES
from tests.operator.cluster import SPEC, FakeCluster, failed_result, succeeded_result
from tests.operator.conftest import RunningOperator


def phase(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda status: status.get("phase") == name


async def test_happy_path(cluster: FakeCluster, operator: RunningOperator) -> None:
    await cluster.create_ftj("sentiment", SPEC)
    job = await cluster.wait_job("sentiment-train")
    status = await cluster.wait_status("sentiment", phase("Pending"))
    assert status["observedGeneration"] == 1

    pod = await cluster.create_pod(job)
    await cluster.run(job, pod)
    status = await cluster.wait_status("sentiment", phase("Running"))
    assert status["podName"] == pod["metadata"]["name"]

    cluster.log(pod, Progress(step=5, max_steps=20, loss=1.5, epoch=0.25, elapsed_seconds=10))
    status = await cluster.wait_status("sentiment", lambda s: (s.get("progress") or {}).get("step") == 5)
    assert status["progress"]["percent"] == 25

    cluster.log(pod, Progress(step=20, max_steps=20, loss=0.3, epoch=1.0, elapsed_seconds=40))
    await cluster.terminate(pod, 0, succeeded_result())
    await cluster.job_condition(job, "Complete", "CompletionsReached")
    status = await cluster.wait_status("sentiment", phase("Succeeded"))
    assert status["artifact"] == {"uri": "pvc://models/out", "kind": "full"}
    assert status["metrics"]["eval_accuracy"] == 0.91
    assert status["progress"]["step"] == 20

    # One Event per transition, in the order they happened.
    # Kopf posts Events in the background: the last one may land just after the status.
    expected = ["JobCreated", "Running", "Succeeded"]
    assert await _reasons_become(cluster, "sentiment", expected) == expected
    # The Job the operator made: one, owned by the FineTuneJob, with the trainer config.
    jobs = await cluster.jobs()
    assert [j["metadata"]["name"] for j in jobs] == ["sentiment-train"]
    owner = jobs[0]["metadata"]["ownerReferences"][0]
    ftj = await cluster.get_ftj("sentiment")
    assert owner["uid"] == ftj["metadata"]["uid"] and owner["controller"] is True


async def test_invalid_spec_is_rejected_without_a_job(cluster: FakeCluster, operator: RunningOperator) -> None:
    bad = {**SPEC, "resources": {"gpus": 64}}
    await cluster.create_ftj("too-big", bad)
    status = await cluster.wait_status("too-big", phase("Failed"))
    assert status["reason"] == "InvalidSpec"
    assert "spec.resources.gpus" in status["message"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True" and failed["reason"] == "InvalidSpec"
    assert await cluster.jobs() == []
    events = await cluster.wait_for(lambda: _events_for(cluster, "too-big"), message="an InvalidSpec event")
    assert events[0]["type"] == "Warning" and events[0]["reason"] == "InvalidSpec"


async def test_missing_output_names_the_setting(
    cluster: FakeCluster, operator: RunningOperator, monkeypatch: Any
) -> None:
    # Restart the operator without a default output location.
    await operator.stop()
    monkeypatch.delenv("KUBETUNE_DEFAULT_OUTPUT")
    await operator.start()
    spec = {k: v for k, v in SPEC.items() if k != "output"}
    await cluster.create_ftj("no-output", spec)
    status = await cluster.wait_status("no-output", phase("Failed"))
    assert status["reason"] == "InvalidSpec"
    assert "KUBETUNE_DEFAULT_OUTPUT" in status["message"] and "spec.output.uri" in status["message"]
    assert await cluster.jobs() == []


async def test_default_output_is_used_and_mounted(cluster: FakeCluster, operator: RunningOperator) -> None:
    spec = {k: v for k, v in SPEC.items() if k != "output"}
    await cluster.create_ftj("defaulted", spec, namespace="team-a")
    job = await cluster.wait_job("defaulted-train", namespace="team-a")
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert '"uri":"/mnt/pvc/models/runs/team-a/defaulted"' in env["KUBETUNE_JOB"]


async def test_trainer_config_error_fails_at_once(cluster: FakeCluster, operator: RunningOperator) -> None:
    await cluster.create_ftj("bad-columns", SPEC)
    job = await cluster.wait_job("bad-columns-train")
    pod = await cluster.create_pod(job)
    await cluster.run(job, pod)
    await cluster.wait_status("bad-columns", phase("Running"))
    message = "data.columns: column 'label' not found; did you mean 'labels'?"
    await cluster.terminate(pod, 78, failed_result("InvalidConfig", message))
    # The Job's podFailurePolicy FailJob rule fires on exit code 78.
    await cluster.job_condition(job, "Failed", "PodFailurePolicy", "Container trainer ... exit code 78")
    status = await cluster.wait_status("bad-columns", phase("Failed"))
    assert status["reason"] == "InvalidConfig"
    assert status["message"] == message
    assert status["attempts"] == 1


async def test_oomkilled_then_retry_succeeds(cluster: FakeCluster, operator: RunningOperator) -> None:
    await cluster.create_ftj("hungry", SPEC)
    job = await cluster.wait_job("hungry-train")
    first = await cluster.create_pod(job)
    await cluster.run(job, first)
    await cluster.wait_status("hungry", phase("Running"))
    await cluster.terminate(first, 137, reason="OOMKilled")
    await cluster.job_status(job, {"active": 0, "failed": 1})
    status = await cluster.wait_status("hungry", lambda s: s.get("reason") == "OOMKilled")
    assert status["phase"] == "Pending"
    assert "out of memory" in status["message"]

    second = await cluster.create_pod(job)
    await cluster.run(job, second)
    status = await cluster.wait_status("hungry", phase("Running"))
    assert status["podName"] == second["metadata"]["name"]
    assert status["attempts"] == 2
    assert "reason" not in status

    await cluster.terminate(second, 0, succeeded_result("/mnt/pvc/models/out", "adapter"))
    await cluster.job_condition(job, "Complete", "CompletionsReached")
    status = await cluster.wait_status("hungry", phase("Succeeded"))
    assert status["artifact"]["kind"] == "adapter"
    expected = ["JobCreated", "Running", "Retrying", "Running", "Succeeded"]
    assert await _reasons_become(cluster, "hungry", expected) == expected


async def test_suspend_and_resume(cluster: FakeCluster, operator: RunningOperator) -> None:
    await cluster.create_ftj("pausable", SPEC)
    job = await cluster.wait_job("pausable-train")
    pod = await cluster.create_pod(job)
    await cluster.run(job, pod)
    await cluster.wait_status("pausable", phase("Running"))

    await cluster.patch_ftj("pausable", {"metadata": {"generation": 2}, "spec": {"suspend": True}})
    job = await cluster.wait_for(
        lambda: _job_suspended(cluster, "pausable-train", True), message="the Job to be suspended"
    )
    # The Job controller stops the pod and says so.
    await cluster.request("DELETE", f"/api/v1/namespaces/default/pods/{pod['metadata']['name']}")
    await cluster.job_status(
        job, {"active": 0, "conditions": [{"type": "Suspended", "status": "True", "reason": "JobSuspended"}]}
    )
    status = await cluster.wait_status("pausable", phase("Suspended"))
    assert status["observedGeneration"] == 2
    assert all(c["observedGeneration"] == 2 for c in status["conditions"])

    await cluster.patch_ftj("pausable", {"metadata": {"generation": 3}, "spec": {"suspend": False}})
    job = await cluster.wait_for(
        lambda: _job_suspended(cluster, "pausable-train", False), message="the Job to be resumed"
    )
    await cluster.job_status(job, {"conditions": [{"type": "Suspended", "status": "False", "reason": "JobResumed"}]})
    pod = await cluster.create_pod(job)
    await cluster.run(job, pod)
    status = await cluster.wait_status("pausable", phase("Running"))
    assert status["observedGeneration"] == 3


async def test_deletion_removes_job_and_pods(cluster: FakeCluster, operator: RunningOperator) -> None:
    await cluster.create_ftj("doomed", SPEC)
    job = await cluster.wait_job("doomed-train")
    pod = await cluster.create_pod(job)
    await cluster.run(job, pod)
    await cluster.wait_status("doomed", phase("Running"))

    await cluster.delete_ftj("doomed")
    # The garbage collector follows the ownerReferences the operator set.
    await cluster.collect_garbage()
    assert await cluster.jobs() == [] and await cluster.pods() == []
    # The operator lets go: no progress reader left, no Job re-created.
    await cluster.wait_for(
        lambda: _true(("default", "doomed") not in operator.reconciler.phases), message="the operator to forget it"
    )
    assert ("default", "doomed") not in operator.reconciler.runs
    assert await cluster.jobs() == []


async def test_restarted_operator_adopts_the_running_job(cluster: FakeCluster, operator: RunningOperator) -> None:
    await cluster.create_ftj("durable", SPEC)
    job = await cluster.wait_job("durable-train")
    pod = await cluster.create_pod(job)
    await cluster.run(job, pod)
    before = await cluster.wait_status("durable", phase("Running"))

    await operator.stop()
    await operator.start()
    cluster.log(pod, Progress(step=7, max_steps=10, loss=0.5))
    status = await cluster.wait_status("durable", lambda s: (s.get("progress") or {}).get("step") == 7)
    assert status["conditions"] == before["conditions"]  # nothing re-transitioned
    assert len(await cluster.jobs()) == 1
    posts = [path for method, path, *_ in cluster.emulator.log if method == "POST" and path.endswith("/jobs")]
    assert len(posts) == 1, "the restarted operator must not create a second Job"

    await cluster.terminate(pod, 0, succeeded_result())
    await cluster.job_condition(job, "Complete", "CompletionsReached")
    await cluster.wait_status("durable", phase("Succeeded"))


# A resource request: /api/v1 or /apis/GROUP/VERSION, maybe /namespaces/NS, then the
# resource, maybe a name and a subresource. Anything else (/api, /apis, /version,
# /apis/GROUP/VERSION) is discovery, which every authenticated user may read.
_RESOURCE_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/[^/]+)?/(?P<resource>[^/]+)"
    r"(?:/(?P<name>[^/]+)(?P<sub>/[^/]+)?)?$"
)
_OPERATOR_AGENTS = ("kopf/", "kubetune-operator/")


def _rbac_rule(method: str, path_qs: str) -> tuple[str, str, str] | None:
    path, _, query = path_qs.partition("?")
    match = _RESOURCE_PATH.match(path)
    if match is None:
        return None
    if method == "GET":
        verb = "watch" if "watch=true" in query else "get" if match["name"] else "list"
    else:
        verb = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[method]
    return (match["group"] or "", match["resource"] + (match["sub"] or ""), verb)


async def test_every_request_is_granted_by_the_rbac(cluster: FakeCluster, operator: RunningOperator) -> None:
    """What the running operator (Kopf and our client) sent, against permissions.py (the
    chart renders exactly those; tests/chart/test_rbac.py checks that nothing more)."""
    await cluster.create_ftj("audited", SPEC)
    job = await cluster.wait_job("audited-train")
    pod = await cluster.create_pod(job)
    await cluster.run(job, pod)
    cluster.log(pod, Progress(step=3, max_steps=10, loss=1.0))
    await cluster.wait_status("audited", lambda s: (s.get("progress") or {}).get("step") == 3)
    await cluster.patch_ftj("audited", {"metadata": {"generation": 2}, "spec": {"suspend": True}})
    await cluster.wait_for(lambda: _job_suspended(cluster, "audited-train", True), message="the Job suspended")
    await cluster.terminate(pod, 0, succeeded_result())
    await cluster.job_condition(job, "Complete", "CompletionsReached")
    await cluster.wait_status("audited", phase("Succeeded"))

    granted = {
        (group, resource, verb)
        for rule in [*CLUSTER_RULES, *NAMESPACED_RULES]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    sent = {
        rule
        for method, path, agent, _ in cluster.emulator.log
        if agent.startswith(_OPERATOR_AGENTS) and (rule := _rbac_rule(method, path)) is not None
    }
    # Not vacuous: the calls of a whole lifecycle were seen.
    assert {
        ("kubetune.io", "finetunejobs", "watch"),
        ("batch", "jobs", "create"),
        ("batch", "jobs", "patch"),
        ("kubetune.io", "finetunejobs/status", "patch"),
        ("", "pods/log", "get"),
        ("", "events", "create"),
    } <= sent
    assert sent - granted == set(), "the operator sent requests its RBAC does not grant"


async def _reasons_become(cluster: FakeCluster, name: str, expected: list[str], timeout: float = 5) -> list[str]:
    """The Event reasons of a FineTuneJob once they are `expected` (or whatever they are at the timeout)."""

    async def reasons() -> list[str]:
        return [e["reason"] for e in await _events_for(cluster, name)]

    with contextlib.suppress(AssertionError):  # timed out: the assertion shows what there is
        await cluster.wait_for(lambda: _matches(reasons(), expected), timeout=timeout)
    return await reasons()


async def _matches(found: Any, expected: list[str]) -> bool:
    return await found == expected


async def _events_for(cluster: FakeCluster, name: str) -> list[dict[str, Any]]:
    return [e for e in await cluster.events() if e["involvedObject"]["name"] == name]


async def _job_suspended(cluster: FakeCluster, name: str, suspended: bool) -> dict[str, Any] | None:
    job = next((j for j in await cluster.jobs() if j["metadata"]["name"] == name), None)
    return job if job is not None and bool(job["spec"].get("suspend")) == suspended else None


async def _true(value: bool) -> bool:
    return value
