"""The real operator (Kopf in-process) against the emulator, on what a real API server and
controllers do that kmock does not by itself: server-side selectors, Jobs and pods deleted by
others, Kueue admitting and evicting. The fixture adds those (tests/operator/cluster.py)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubetune_api.protocol import Progress
from tests.operator.cluster import KUEUE_QUEUE_LABEL, FakeCluster, failed_result, succeeded_result
from tests.operator.conftest import RunningOperator
from tests.operator.test_operator_integration import SPEC, _job_suspended, phase


def _selectors(cluster: FakeCluster, resource_path: str) -> list[str]:
    """The labelSelector of every operator list/watch request on a resource."""
    found = []
    for method, path_qs, agent, _ in cluster.emulator.log:
        url = urlsplit(path_qs)
        if method == "GET" and url.path.endswith(resource_path) and agent.startswith("kopf/"):
            found.append(parse_qs(url.query).get("labelSelector", [""])[0])
    return found


async def test_job_and_pod_watches_are_filtered_by_the_server(cluster: FakeCluster, operator: RunningOperator) -> None:
    await cluster.create_ftj("selected", SPEC)
    job = await cluster.wait_job("selected-train")
    # A busy cluster: pods that are not kubetune's must never reach the operator.
    for index in range(20):
        await cluster.request(
            "POST",
            "/api/v1/namespaces/default/pods",
            {"metadata": {"name": f"web-{index}", "namespace": "default", "labels": {"app": "web"}}, "status": {}},
        )
    pod = await cluster.create_pod(job)
    await cluster.run(job, pod)
    await cluster.wait_status("selected", phase("Running"))
    for resource in ("/pods", "/jobs"):
        selectors = _selectors(cluster, resource)
        assert selectors and all("app.kubernetes.io/managed-by=kubetune" in s for s in selectors), resource
    indexed = operator.reconciler.indices.pods(("default", "selected"))
    assert [p["metadata"]["name"] for p in indexed] == [pod["metadata"]["name"]]


async def test_a_succeeded_run_survives_its_job_and_pods_and_a_restart(
    cluster: FakeCluster, operator: RunningOperator
) -> None:
    await cluster.create_ftj("kept", SPEC)
    job = await cluster.wait_job("kept-train")
    pod = await cluster.create_pod(job)
    await cluster.run(job, pod)
    cluster.log(pod, Progress(step=10, max_steps=10, loss=0.1))
    await cluster.terminate(pod, 0, succeeded_result())
    await cluster.job_condition(job, "Complete", "CompletionsReached")
    done = await cluster.wait_status("kept", lambda s: s.get("phase") == "Succeeded" and "progress" in s)

    await cluster.delete_pod(pod)  # PodGC
    await cluster.delete_job("kept-train")  # a TTL controller
    await operator.stop()
    await operator.start()
    await cluster.patch_ftj("kept", {"metadata": {"labels": {"touched": "yes"}}})  # any later event
    await cluster.wait_for(lambda: _true(("default", "kept") in operator.reconciler.runs), message="seen again")
    assert (await cluster.get_ftj("kept"))["status"] == done  # type: ignore[index]
    assert await cluster.jobs() == []
    posts = [path for method, path, *_ in cluster.emulator.log if method == "POST" and path.endswith("/jobs")]
    assert len(posts) == 1, "no Job for a FineTuneJob that finished"


async def test_a_failed_run_keeps_its_reason_when_its_pods_go(cluster: FakeCluster, operator: RunningOperator) -> None:
    await cluster.create_ftj("broken", SPEC)
    job = await cluster.wait_job("broken-train")
    pod = await cluster.create_pod(job)
    await cluster.run(job, pod)
    await cluster.terminate(pod, 78, failed_result("InvalidData", "data.train: no column 'label'"))
    await cluster.job_condition(job, "Failed", "PodFailurePolicy", "Container trainer ... exit code 78")
    failed = await cluster.wait_status("broken", phase("Failed"))
    assert failed["reason"] == "InvalidData"
    await cluster.delete_pod(pod)
    await cluster.job_status(job, {"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]})
    key = ("default", "broken")
    await cluster.wait_for(lambda: _true(operator.reconciler.indices.pods(key) == []), message="the pod seen gone")
    await cluster.patch_ftj("broken", {"metadata": {"labels": {"touched": "yes"}}})  # one more event
    await cluster.wait_for(
        lambda: _true(operator.reconciler.indices.finetunejob(key)["metadata"]["labels"] == {"touched": "yes"}),
        message="the event seen",
    )
    await asyncio.sleep(0.3)  # a status change would be written within status_delay
    status = (await cluster.get_ftj("broken"))["status"]  # type: ignore[index]
    assert status["reason"] == "InvalidData" and status["message"] == "data.train: no column 'label'"


async def test_kueue_admits_and_suspend_deactivates_the_workload(
    cluster: FakeCluster, operator: RunningOperator
) -> None:
    await cluster.create_ftj("queued", SPEC, labels={KUEUE_QUEUE_LABEL: "team-a"})
    job = await cluster.wait_job("queued-train")
    assert job["spec"]["suspend"] is True and job["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "team-a"
    await cluster.wait_status("queued", lambda s: _reason(s) == "WaitingForAdmission")
    await cluster.kueue_queue(job)
    await cluster.kueue_reconcile(job)  # admitted
    pod = await cluster.create_pod(job)
    await cluster.run(job, pod)
    await cluster.wait_status("queued", phase("Running"))

    await cluster.patch_ftj("queued", {"metadata": {"generation": 2}, "spec": {"suspend": True}})
    await cluster.wait_for(lambda: _workload_active(cluster, job, False), message="the Workload deactivated")
    await cluster.kueue_reconcile(job)  # Kueue evicts: it suspends the Job
    await cluster.delete_pod(pod)
    await cluster.wait_status("queued", phase("Suspended"))

    await cluster.patch_ftj("queued", {"metadata": {"generation": 3}, "spec": {"suspend": False}})
    await cluster.wait_for(lambda: _workload_active(cluster, job, True), message="the Workload active again")
    await cluster.kueue_reconcile(job)
    await cluster.wait_for(lambda: _job_suspended(cluster, "queued-train", False), message="admitted again")
    job_patches = [
        path
        for method, path, agent, _ in cluster.emulator.log
        if method == "PATCH" and path.startswith("/apis/batch/v1/") and agent.startswith("kubetune-operator/")
    ]
    assert job_patches == [], "the operator must not write suspend on a Job Kueue manages"


async def _workload_active(cluster: FakeCluster, job: dict[str, Any], active: bool) -> bool:
    return bool((await cluster.workload(job))["spec"].get("active", True)) is active


def _reason(status: dict[str, Any]) -> str | None:
    return next((c.get("reason") for c in status.get("conditions") or []), None)


async def _true(value: bool) -> bool:
    return value
