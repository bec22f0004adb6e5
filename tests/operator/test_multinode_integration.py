"""A multi-node FineTuneJob through the real operator against the kmock emulator: the
fixture plays the Job controller for an Indexed Job (one pod per completion index, with
the index annotation and hostname Kubernetes gives them) and the kubelet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubetune_api.protocol import Progress
from kubetune_operator.names import run_object_name
from tests.operator.cluster import FakeCluster, failed_result, succeeded_result
from tests.operator.conftest import RunningOperator

SPEC: dict[str, Any] = {
    "task": "language-generation",
    "base": {"model": "org/tiny-llama"},
    "data": {"train": "s3://bucket/train.jsonl"},
    "output": {"uri": "s3://bucket/out"},
    "resources": {"gpus": 4},
    "nodes": 2,
}


def phase(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda status: status.get("phase") == name


async def services(cluster: FakeCluster, namespace: str = "default") -> list[dict[str, Any]]:
    listing = await cluster.request("GET", f"/api/v1/namespaces/{namespace}/services")
    return list((listing or {}).get("items") or [])


async def test_two_nodes_train_to_success(cluster: FakeCluster, operator: RunningOperator) -> None:
    ftj = await cluster.create_ftj("big", SPEC)
    job = await cluster.wait_job("big-train")
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 2

    # The headless Service came first, owned by the FineTuneJob, named in the pods' subdomain.
    expected = run_object_name("big", ftj["metadata"]["uid"])
    (service,) = await services(cluster)
    assert service["metadata"]["name"] == expected == job["spec"]["template"]["spec"]["subdomain"]
    assert service["metadata"]["ownerReferences"][0]["uid"] == ftj["metadata"]["uid"]
    assert service["spec"]["clusterIP"] == "None"
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert f"--rdzv-endpoint=big-train-0.{expected}:29400" in command and "--nnodes=2" in command
    # Only the run's own pods may reach its pods (the rendezvous store unpickles what it reads).
    listing = await cluster.request("GET", "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies")
    (policy,) = listing["items"]
    run = {"kubetune.io/run": ftj["metadata"]["uid"]}
    assert policy["spec"]["podSelector"] == {"matchLabels": run}
    assert policy["spec"]["ingress"] == [{"from": [{"podSelector": {"matchLabels": run}}]}]
    assert job["spec"]["template"]["metadata"]["labels"]["kubetune.io/run"] == ftj["metadata"]["uid"]
    assert policy["metadata"]["ownerReferences"][0]["uid"] == ftj["metadata"]["uid"]

    rank0 = await cluster.create_pod(job, index=0)
    await cluster.run(job, rank0)
    status = await cluster.wait_status("big", lambda s: s.get("jobName") == "big-train")
    assert status["phase"] == "Pending"  # rank 1's pod is not there yet: no training without it
    rank1 = await cluster.create_pod(job, index=1)
    await cluster.run(job, rank1)
    status = await cluster.wait_status("big", phase("Running"))
    assert status["podName"] == rank0["metadata"]["name"]

    # Progress comes from rank 0's log only.
    cluster.log(rank1, Progress(step=99, max_steps=100))
    cluster.log(rank0, Progress(step=5, max_steps=20, loss=1.5, elapsed_seconds=10))
    status = await cluster.wait_status("big", lambda s: (s.get("progress") or {}).get("step") == 5)

    await cluster.terminate(rank1, 0)  # other ranks leave no termination message
    await cluster.terminate(rank0, 0, succeeded_result("/mnt/out", "full"))
    await cluster.job_condition(job, "Complete", "CompletionsReached")
    status = await cluster.wait_status("big", phase("Succeeded"))
    assert status["artifact"] == {"uri": "/mnt/out", "kind": "full"}
    assert status["attempts"] == 1 and "failedIndex" not in status
    posts = [path for method, path, *_ in cluster.emulator.log if method == "POST" and path.endswith("/services")]
    assert len(posts) == 1


async def test_failed_index_is_reported(cluster: FakeCluster, operator: RunningOperator) -> None:
    spec = {**SPEC, "output": {"uri": "pvc://models/out"}}
    await cluster.create_ftj("shaky", spec)
    job = await cluster.wait_job("shaky-train")
    pods = [await cluster.create_pod(job, index=index) for index in (0, 1)]
    for pod in pods:
        await cluster.run(job, pod)
    await cluster.wait_status("shaky", phase("Running"))

    message = "rank 5 of 8 (node 1, local rank 1): data.columns: column 'text' not found"
    await cluster.terminate(pods[1], 78, failed_result("InvalidConfig", message))
    peer_gone = failed_result("TrainingError", "rank 0 of 8 (node 0, local rank 0): peer closed")
    await cluster.terminate(pods[0], 1, peer_gone)
    await cluster.job_condition(job, "Failed", "PodFailurePolicy", "Container trainer ... exit code 78")
    status = await cluster.wait_status("shaky", phase("Failed"))
    assert status["reason"] == "InvalidConfig"
    assert status["failedIndex"] == 1
    assert status["message"] == f"index 1: {message}"

    events = {e["reason"]: e for e in await cluster.events() if e["involvedObject"]["name"] == "shaky"}
    assert events["SharedOutputRequired"]["type"] == "Warning"
    assert "ReadWriteMany" in events["SharedOutputRequired"]["message"]
