"""The client against the kmock emulator: with the real operator end to end, and with the
status written by the test where a run's whole story is the point (wait, logs, fetch)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kubetune_api.client import Client, NoTrainerPodError
from kubetune_api.fetch_pvc import FETCH_MANAGER, FetchError
from kubetune_api.hftrainer_spec import NotForClusterError
from kubetune_api.kube_http import KubeError, NotFoundError
from kubetune_api.manifest import ManifestError
from kubetune_api.outcomes import EXIT_FAILED, EXIT_INVALID_CONFIG
from kubetune_api.protocol import Progress
from kubetune_api.run_status import RunFailed, RunStatus
from kubetune_api.trainer_pod import LABEL_MANAGED_BY, WATCH_SELECTOR
from tests.client.conftest import SPEC, ClaimExec, finetunejob, set_status
from tests.operator.cluster import FakeCluster, succeeded_result
from tests.operator.conftest import RunningOperator


def phase(name: str) -> Any:
    return lambda status: status.get("phase") == name


async def test_submit_runs_through_the_operator_to_succeeded(
    cluster: FakeCluster, operator: RunningOperator, client: Client
) -> None:
    name = await asyncio.to_thread(
        client.submit,
        "org/tiny-bert",
        "pvc://datasets/train.csv",
        name="sentiment",
        output="pvc://models/sentiment",
        learning_rate=3e-5,
        num_train_epochs=2,
    )
    assert name == "sentiment"
    ftj = await cluster.get_ftj("sentiment")
    assert ftj["spec"]["trainingArgs"] == {"learning_rate": 3e-5, "num_train_epochs": 2}

    seen: list[RunStatus] = []
    waiting = asyncio.create_task(asyncio.to_thread(client.wait, "sentiment", callback=seen.append, timeout=30))
    job = await cluster.wait_job("sentiment-train")  # the operator picked it up
    pod = await cluster.create_pod(job)
    await cluster.run(job, pod)
    cluster.log(pod, Progress(step=5, max_steps=20, loss=1.5, epoch=0.5, elapsed_seconds=10))
    await cluster.wait_status("sentiment", lambda s: (s.get("progress") or {}).get("step") == 5)
    await asyncio.sleep(0.2)  # the client's next look sees it
    cluster.log(pod, Progress(step=20, max_steps=20, loss=0.3, epoch=2.0, elapsed_seconds=40))
    await cluster.terminate(pod, 0, succeeded_result("/mnt/pvc/models/sentiment"))
    await cluster.job_condition(job, "Complete", "CompletionsReached")

    final = await waiting
    assert final.succeeded and final.exit_code == 0
    assert final.artifact is not None and final.artifact.uri == "pvc://models/sentiment"
    assert final.metrics["eval_accuracy"] == 0.91
    phases = [run.phase for run in seen]
    assert phases[0] in (None, "Pending") and phases[-1] == "Succeeded" and "Running" in phases
    steps = [run.progress.step for run in seen if run.progress is not None]
    assert 5 in steps and steps[-1] == 20

    lines = await asyncio.to_thread(lambda: list(client.logs("sentiment")))
    assert any('"step":20' in line for line in lines)


async def test_wait_raises_for_a_failed_run_with_its_exit_code(cluster: FakeCluster, client: Client) -> None:
    await asyncio.to_thread(client.submit, finetunejob("bad-columns"))
    await set_status(cluster, "bad-columns", {"phase": "Running"})
    seen: list[RunStatus] = []
    waiting = asyncio.create_task(asyncio.to_thread(client.wait, "bad-columns", callback=seen.append, timeout=10))
    await asyncio.sleep(0.2)
    await set_status(
        cluster, "bad-columns", {"phase": "Failed", "reason": "InvalidConfig", "message": "data.columns: no 'label'"}
    )
    with pytest.raises(RunFailed) as failure:
        await waiting
    assert failure.value.exit_code == EXIT_INVALID_CONFIG
    assert "InvalidConfig: data.columns: no 'label'" in str(failure.value)
    assert [run.phase for run in seen] == ["Running", "Failed"]

    await set_status(cluster, "bad-columns", {"reason": "OOMKilled"})
    run = await asyncio.to_thread(client.wait, "bad-columns", check=False)
    assert run.exit_code == EXIT_FAILED


async def test_wait_times_out_saying_where_the_run_is(cluster: FakeCluster, client: Client) -> None:
    await asyncio.to_thread(client.submit, finetunejob("slow"))
    await set_status(cluster, "slow", {"phase": "Pending", "reason": "WaitingForAdmission"})
    with pytest.raises(TimeoutError, match="still Pending"):
        await asyncio.to_thread(client.wait, "slow", timeout=0.2)


async def test_logs_read_the_newest_pod_across_a_retry(cluster: FakeCluster, client: Client) -> None:
    await asyncio.to_thread(client.submit, finetunejob("retried"))
    run = await asyncio.to_thread(client.get, "retried")
    job = await fake_job(cluster, "retried", run.uid)
    first = await cluster.create_pod(job)
    await cluster.run(job, first)
    cluster.append_log(first, "attempt one")
    await cluster.terminate(first, 137, reason="OOMKilled")
    await asyncio.sleep(0.01)  # a later creationTimestamp is not needed: the name breaks ties
    second = await cluster.create_pod(job)
    await cluster.run(job, second)
    cluster.append_log(second, "attempt two", "step 3")

    lines = await asyncio.to_thread(lambda: list(client.logs("retried")))
    assert lines == ["attempt two", "step 3"]
    tail = await asyncio.to_thread(lambda: list(client.logs("retried", tail=1)))
    assert tail == ["step 3"]


async def test_logs_of_rank_n_in_a_multi_node_run(cluster: FakeCluster, client: Client) -> None:
    await asyncio.to_thread(client.submit, finetunejob("multi", {**SPEC, "nodes": 3, "output": {"uri": "s3://b/m"}}))
    run = await asyncio.to_thread(client.get, "multi")
    job = await fake_job(cluster, "multi", run.uid)
    pods = [await cluster.create_pod(job, index=index) for index in range(3)]
    for index, pod in enumerate(pods):
        await cluster.run(job, pod)
        cluster.append_log(pod, f"rank {index}")
    assert await asyncio.to_thread(lambda: list(client.logs("multi"))) == ["rank 0"]
    assert await asyncio.to_thread(lambda: list(client.logs("multi", rank=2))) == ["rank 2"]
    with pytest.raises(ValueError, match="ranks 0 to 2"):
        await asyncio.to_thread(client.logs, "multi", rank=3)


async def test_logs_without_a_pod_say_why(cluster: FakeCluster, client: Client) -> None:
    await asyncio.to_thread(client.submit, finetunejob("queued"))
    await set_status(cluster, "queued", {"phase": "Pending", "reason": "WaitingForAdmission"})
    expected = r"queued: no trainer pod; the run is Pending \(WaitingForAdmission\); follow=True waits for it"
    with pytest.raises(NoTrainerPodError, match=expected):
        await asyncio.to_thread(client.logs, "queued")


async def test_follow_carries_on_in_the_retry_until_the_run_ends(cluster: FakeCluster, client: Client) -> None:
    await asyncio.to_thread(client.submit, finetunejob("followed"))
    run = await asyncio.to_thread(client.get, "followed")
    job = await fake_job(cluster, "followed", run.uid)
    first = await cluster.create_pod(job)
    await cluster.run(job, first)
    cluster.append_log(first, "one-a")

    lines: list[str] = []

    def follow() -> None:
        lines.extend(client.logs("followed", follow=True))

    following = asyncio.create_task(asyncio.to_thread(follow))
    await until(lambda: lines == ["one-a"])
    cluster.append_log(first, "one-b")  # arrives on the open stream
    await until(lambda: lines == ["one-a", "one-b"])
    await cluster.terminate(first, 137, reason="OOMKilled")
    second = await cluster.create_pod(job)
    await asyncio.sleep(0.2)  # Pending: nothing to read yet
    await cluster.run(job, second)
    cluster.append_log(second, "two-a")
    await until(lambda: lines[-1:] == ["two-a"])
    assert not following.done()
    cluster.append_log(second, "two-b")
    await cluster.terminate(second, 0, succeeded_result())
    await set_status(cluster, "followed", {"phase": "Succeeded"})
    await asyncio.wait_for(following, 10)
    assert lines == ["one-a", "one-b", "two-a", "two-b"]


async def test_fetch_from_a_claim_copies_the_model_and_removes_its_pod(
    cluster: FakeCluster, tmp_path: Path, fetch_kubelet: list[dict[str, Any]]
) -> None:
    claims = tmp_path / "claims"
    model = claims / "models" / "out" / "sentiment"
    (model / "checkpoint-10").mkdir(parents=True)
    (model / "checkpoint-10" / "optimizer.pt").write_bytes(b"x" * 1000)
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (model / "config.json").write_text("{}")
    (model / "merged").mkdir()
    (model / "merged" / "model.safetensors").write_bytes(b"merged")
    transport = ClaimExec(claims, cluster)
    client = Client(interval=0.05, exec_stdout=transport)
    await asyncio.to_thread(client.submit, finetunejob("done"))
    await set_status(cluster, "done", succeeded("pvc://models/out/sentiment"))

    target = tmp_path / "copy"
    await asyncio.to_thread(client.fetch, "done", target)
    copied = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert copied == ["config.json", "merged/model.safetensors", "model.safetensors"]
    assert (target / "model.safetensors").read_bytes() == (model / "model.safetensors").read_bytes()

    [pod] = fetch_kubelet[:1]
    spec = pod["spec"]
    assert spec["volumes"] == [{"name": "claim", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}}]
    assert spec["containers"][0]["volumeMounts"][0]["readOnly"] is True
    assert spec["automountServiceAccountToken"] is False
    assert pod["metadata"]["labels"][LABEL_MANAGED_BY] == FETCH_MANAGER  # not a trainer pod to the operator
    assert WATCH_SELECTOR.split(",")[0] != f"{LABEL_MANAGED_BY}={FETCH_MANAGER}"
    assert pod["metadata"]["ownerReferences"][0]["name"] == "done"
    assert transport.calls[0][2][-1] == "/claim/out/sentiment"
    assert await cluster.pods() == []  # deleted after the copy

    with_checkpoints = tmp_path / "all"
    await asyncio.to_thread(client.fetch, "done", with_checkpoints, checkpoints=True)
    assert (with_checkpoints / "checkpoint-10" / "optimizer.pt").exists()
    assert await cluster.pods() == []


async def test_fetch_from_a_claim_removes_its_pod_when_the_copy_fails(
    cluster: FakeCluster, tmp_path: Path, fetch_kubelet: list[dict[str, Any]]
) -> None:
    (tmp_path / "claims" / "models" / "out").mkdir(parents=True)
    (tmp_path / "claims" / "models" / "out" / "config.json").write_text("{}")
    transport = ClaimExec(tmp_path / "claims", cluster)
    transport.fail = "websocket closed: connection reset"
    client = Client(interval=0.05, exec_stdout=transport)
    await asyncio.to_thread(client.submit, finetunejob("broken"))
    await set_status(cluster, "broken", succeeded("pvc://models/out"))
    with pytest.raises(FetchError, match="connection reset"):
        await asyncio.to_thread(client.fetch, "broken", tmp_path / "copy")
    assert fetch_kubelet and await cluster.pods() == []

    transport.fail = None
    await set_status(cluster, "broken", succeeded("pvc://models/missing"))
    with pytest.raises(FetchError, match="can't cd"):
        await asyncio.to_thread(client.fetch, "broken", tmp_path / "copy")
    assert await cluster.pods() == []


async def test_fetch_before_the_run_has_a_model(cluster: FakeCluster, client: Client, tmp_path: Path) -> None:
    await asyncio.to_thread(client.submit, finetunejob("young"))
    await set_status(cluster, "young", {"phase": "Running"})
    with pytest.raises(FetchError, match=r"no model yet: the run is Running"):
        await asyncio.to_thread(client.fetch, "young", tmp_path)


async def test_delete_and_get_of_a_deleted_run(cluster: FakeCluster, client: Client) -> None:
    await asyncio.to_thread(client.submit, finetunejob("short-lived"))
    assert [run.name for run in await asyncio.to_thread(client.runs)] == ["short-lived"]
    await asyncio.to_thread(client.delete, "short-lived")
    with pytest.raises(NotFoundError):
        await asyncio.to_thread(client.get, "short-lived")


# -- helpers ------------------------------------------------------------------------------------


def succeeded(uri: str) -> dict[str, Any]:
    return {"phase": "Succeeded", "artifact": {"uri": uri, "kind": "full"}, "metrics": {"eval_accuracy": 0.9}}


async def fake_job(cluster: FakeCluster, name: str, uid: str) -> dict[str, Any]:
    """The Job the operator would build for a FineTuneJob (its template's labels), made here
    for the tests that play the operator's part."""
    from kubetune_api.finetunejob import FineTuneJobSpec
    from kubetune_operator.builders import build_job
    from kubetune_operator.pod_template import Owner
    from kubetune_operator.settings import OperatorSettings

    ftj = await cluster.get_ftj(name)
    spec = FineTuneJobSpec.model_validate(ftj["spec"])
    body = build_job(Owner(name=name, namespace="default", uid=uid), spec, OperatorSettings())
    return await cluster.request("POST", "/apis/batch/v1/namespaces/default/jobs", body)


async def until(check: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


async def test_submit_takes_a_spec_a_dict_a_manifest_or_a_file(
    cluster: FakeCluster, client: Client, tmp_path: Path
) -> None:
    from kubetune_api.finetunejob import FineTuneJobSpec

    generated = await asyncio.to_thread(client.submit, FineTuneJobSpec.model_validate(SPEC))
    assert generated.startswith("tiny-bert-") and generated != "tiny-bert-"  # the API server completes it
    assert await asyncio.to_thread(client.submit, SPEC, name="from-dict") == "from-dict"
    merged = {"output": {"mergeAdapter": True}}
    await asyncio.to_thread(client.submit, SPEC, name="merged", output="s3://b/o2", spec_fields=merged)
    assert (await cluster.get_ftj("merged"))["spec"]["output"] == {"uri": "s3://b/o2", "mergeAdapter": True}
    assert await asyncio.to_thread(client.submit, finetunejob("from-object"), labels={"team": "nlp"}) == "from-object"
    assert (await cluster.get_ftj("from-object"))["metadata"]["labels"] == {"team": "nlp"}

    import yaml

    two = tmp_path / "two.yaml"
    two.write_text(yaml.safe_dump_all([finetunejob("first"), finetunejob("second")]))
    with pytest.raises(ManifestError, match="holds 2 FineTuneJobs: use submit_all"):
        await asyncio.to_thread(client.submit, two)
    assert await asyncio.to_thread(client.submit_all, two, namespace="team-c") == ["first", "second"]
    assert await cluster.get_ftj("second", namespace="team-c") is not None
    one = tmp_path / "one.yaml"
    one.write_text(yaml.safe_dump(finetunejob("from-file")))
    assert await asyncio.to_thread(client.submit, one, gpus=0, spec_fields={"nodes": 1}) == "from-file"
    assert (await cluster.get_ftj("from-file"))["spec"]["resources"] == {"gpus": 0}

    with pytest.raises(KubeError, match="exists already"):
        await asyncio.to_thread(client.submit, one)


async def test_submit_refuses_before_creating_anything(cluster: FakeCluster, client: Client) -> None:
    with pytest.raises(NotForClusterError, match="train: a list lives in this Python process"):
        await asyncio.to_thread(client.submit, "org/base", [{"text": "good", "label": 1}], name="in-memory")
    with pytest.raises(NotForClusterError, match="is a path on this machine"):
        await asyncio.to_thread(client.submit, "org/base", "data/train.csv", output="s3://b/out")
    with pytest.raises(ManifestError, match=r"spec\.resources\.gpus"):
        await asyncio.to_thread(client.submit, "org/base", "s3://b/t.csv", gpus=-1)
    with pytest.raises(TypeError, match="need the training data"):
        await asyncio.to_thread(client.submit, "org/base", learning_rate=1e-4)
    assert not ((await cluster.request("GET", cluster.ftj_path("default"))) or {}).get("items")


async def test_wait_rides_out_an_api_server_restart(
    cluster: FakeCluster, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubetune_api.kube_http import KubeHttp, UnreachableError

    await asyncio.to_thread(client.submit, finetunejob("patient"))
    await set_status(cluster, "patient", {"phase": "Succeeded"})
    real = KubeHttp.request
    failures = iter([UnreachableError(0, "GET", b"connection refused"), KubeError(503, "GET", b"restarting")])

    def flaky(self: KubeHttp, *args: Any, **kwargs: Any) -> Any:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real(self, *args, **kwargs)

    monkeypatch.setattr(KubeHttp, "request", flaky)
    assert (await asyncio.to_thread(client.wait, "patient")).succeeded

    def forbidden(self: KubeHttp, *args: Any, **kwargs: Any) -> Any:
        raise KubeError(403, "GET", b'{"message": "forbidden: User cannot get finetunejobs"}')

    monkeypatch.setattr(KubeHttp, "request", forbidden)
    with pytest.raises(KubeError, match="forbidden"):  # an answer about the request: no retry
        await asyncio.to_thread(client.wait, "patient")
