"""The cluster commands of `kubetune` (kubetune_api.cli.main in-process) against the kmock
emulator: output and exit codes, with the real operator where it decides the outcome."""

from __future__ import annotations

import asyncio
import io
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from kubetune_api.cli import main
from kubetune_api.outcomes import EXIT_FAILED, EXIT_INVALID_CONFIG, EXIT_SUCCEEDED
from kubetune_api.protocol import Progress
from tests.client.conftest import SPEC, finetunejob, set_status
from tests.operator.cluster import FakeCluster, succeeded_result
from tests.operator.conftest import RunningOperator

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def quick_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands look at a run every 50 ms instead of every 2 s."""
    monkeypatch.setattr("kubetune_api.cluster_cli.POLL_INTERVAL", 0.05)


async def kubetune(*argv: str) -> tuple[int, str, str]:
    """Run `kubetune ARGV` in a thread (the fake cluster keeps playing meanwhile): (code, stdout, stderr)."""

    def run() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as exit:  # kubetune validate exits from inside
                code = int(exit.code or 0)
        return code, out.getvalue(), err.getvalue()

    # One command at a time: redirect_stdout swaps the process-wide sys.stdout.
    return await asyncio.to_thread(run)


async def submit(cluster: FakeCluster, name: str, spec: dict[str, Any] | None = None) -> None:
    await cluster.create_ftj(name, spec or SPEC)


async def test_submit_wait_follows_the_operator_to_succeeded(cluster: FakeCluster, operator: RunningOperator) -> None:
    command = asyncio.create_task(kubetune("submit", str(REPO / "examples/question-answering.yaml"), "--wait"))
    job = await cluster.wait_job("faq-qa-train")
    pod = await cluster.create_pod(job)
    await cluster.run(job, pod)
    cluster.log(pod, Progress(step=10, max_steps=40, loss=2.25, epoch=0.25, elapsed_seconds=20, eval={"f1": 0.5}))
    await cluster.wait_status("faq-qa", lambda s: (s.get("progress") or {}).get("step") == 10)
    await asyncio.sleep(0.3)
    await cluster.terminate(pod, 0, succeeded_result("/mnt/pvc/models/faq-qa"))
    await cluster.job_condition(job, "Complete", "CompletionsReached")

    code, out, err = await asyncio.wait_for(command, 30)
    assert code == EXIT_SUCCEEDED, err
    lines = out.splitlines()
    assert lines[0] == "finetunejobs.kubetune.io/faq-qa created"
    progress = next(line for line in lines if "step 10/40" in line)
    assert "faq-qa: Running, step 10/40 (25%), epoch 0.25, loss 2.2500, eval f1 0.5000, ETA in " in progress
    assert lines[-1] == "faq-qa: Succeeded, model at pvc://models/faq-qa"


async def test_wait_exits_78_when_the_operator_refuses_the_spec(
    cluster: FakeCluster, operator: RunningOperator, tmp_path: Path
) -> None:
    # 64 GPUs on one node: the cluster's limit is the operator's to check (InvalidSpec).
    manifest = write_manifest(tmp_path, finetunejob("too-big", {**SPEC, "resources": {"gpus": 64}}))
    code, out, err = await kubetune("submit", str(manifest), "--wait", "--timeout", "20")
    assert code == EXIT_INVALID_CONFIG, (out, err)
    assert "too-big: Failed (InvalidSpec: spec.resources.gpus: 64 GPUs per node" in out.splitlines()[-1]


async def test_wait_exit_codes(cluster: FakeCluster) -> None:
    outcomes = {
        "trained": ({"phase": "Succeeded"}, EXIT_SUCCEEDED),
        "bad-data": ({"phase": "Failed", "reason": "InvalidData", "message": "no rows"}, EXIT_INVALID_CONFIG),
        "refused": ({"phase": "Failed", "reason": "JobCreateFailed", "message": "quota"}, EXIT_INVALID_CONFIG),
        "oom": ({"phase": "Failed", "reason": "BackoffLimitExceeded", "message": "OOMKilled"}, EXIT_FAILED),
    }
    for name, (status, _) in outcomes.items():
        await submit(cluster, name)
        await set_status(cluster, name, status)
    for name, (status, expected) in outcomes.items():
        code, out, _ = await kubetune("wait", name)
        assert code == expected, name
        assert out.splitlines()[-1].startswith(f"{name}: {status['phase']}")


async def test_wait_gives_up_after_its_timeout(cluster: FakeCluster) -> None:
    await submit(cluster, "queued")
    await set_status(cluster, "queued", {"phase": "Pending", "reason": "WaitingForAdmission"})
    code, out, err = await kubetune("wait", "queued", "--timeout", "0.2")
    assert code == EXIT_FAILED
    assert "queued: Pending (WaitingForAdmission)" in out
    assert "default/queued is still Pending after 0.2s" in err


async def test_submit_of_a_missing_file(cluster: FakeCluster, tmp_path: Path) -> None:
    code, _, err = await kubetune("submit", str(tmp_path / "nope.yaml"))
    assert code == EXIT_INVALID_CONFIG and "No such file or directory" in err


async def test_wait_prints_each_change_until_the_end(cluster: FakeCluster) -> None:
    await submit(cluster, "steps")
    command = asyncio.create_task(kubetune("wait", "steps"))
    for step in (0, 5, 10):
        progress = {"step": step, "maxSteps": 10, "percent": step * 10, "loss": 1.0 / (step + 1)}
        await set_status(cluster, "steps", {"phase": "Running", "progress": progress})
        await asyncio.sleep(0.3)
    await set_status(cluster, "steps", {"phase": "Succeeded", "artifact": {"uri": "s3://b/steps", "kind": "full"}})
    code, out, _ = await asyncio.wait_for(command, 10)
    assert code == 0
    steps = re.findall(r"step (\d+)/10", out)
    assert steps == ["0", "5", "10"]
    assert out.splitlines()[-1] == "steps: Succeeded, model at s3://b/steps"


async def test_get_and_status_show_progress_eta_loss_eval_and_reason(cluster: FakeCluster) -> None:
    await submit(cluster, "running")
    await submit(cluster, "stuck")
    progress = {
        "step": 30,
        "maxSteps": 120,
        "percent": 25,
        "epoch": 0.75,
        "loss": 0.51274,
        "eval": {"accuracy": 0.875},
        "eta": "2999-01-01T12:30:00Z",
    }
    await set_status(cluster, "running", {"phase": "Running", "progress": progress, "podName": "running-train-1"})
    await set_status(cluster, "stuck", {"phase": "Pending", "reason": "Unschedulable", "message": "0/3 nodes: GPU"})

    code, out, _ = await kubetune("get")
    assert code == 0
    header, running, stuck = out.splitlines()
    assert header.split() == ["NAME", "PHASE", "PROGRESS", "LOSS", "ETA", "REASON"]
    assert running.split()[:5] == ["running", "Running", "25%", "0.5127", "in"]
    assert stuck.split() == ["stuck", "Pending", "Unschedulable"]

    code, out, _ = await kubetune("status", "running")
    assert code == 0
    assert "Phase:    Running" in out
    assert "step 30/120 (25%), epoch 0.75, loss 0.5127, eval accuracy 0.8750, ETA in " in out
    assert "(12:30 UTC)" in out and "Pod:      running-train-1" in out
    code, out, _ = await kubetune("status", "stuck")
    assert "Phase: Pending (Unschedulable: 0/3 nodes: GPU)" in out

    code, _, err = await kubetune("status", "nobody", "-n", "team-a")
    assert code == EXIT_FAILED and "no FineTuneJob 'nobody' in namespace team-a" in err


async def test_logs_rank_and_follow(cluster: FakeCluster) -> None:
    from tests.client.test_client_integration import fake_job

    created = await cluster.create_ftj("pair", {**SPEC, "nodes": 2, "output": {"uri": "s3://b/pair"}})
    job = await fake_job(cluster, "pair", created["metadata"]["uid"])
    pods = [await cluster.create_pod(job, index=index) for index in range(2)]
    for index, pod in enumerate(pods):
        await cluster.run(job, pod)
        cluster.append_log(pod, f"rank {index} line")
    code, out, _ = await kubetune("logs", "pair", "--rank", "1")
    assert (code, out) == (0, "rank 1 line\n")

    command = asyncio.create_task(kubetune("logs", "pair", "-f"))
    await asyncio.sleep(0.5)
    cluster.append_log(pods[0], "rank 0 later")
    await cluster.terminate(pods[0], 0)
    await set_status(cluster, "pair", {"phase": "Succeeded"})
    code, out, _ = await asyncio.wait_for(command, 10)
    assert (code, out) == (0, "rank 0 line\nrank 0 later\n")


async def test_submit_refuses_local_data_naming_the_uris_that_work(cluster: FakeCluster) -> None:
    code, _, err = await kubetune("submit", str(REPO / "examples/quickstart.yaml"))
    assert code == EXIT_INVALID_CONFIG
    assert "spec.data.train: 'data/sentiment-train.csv' is a path on this machine, which the cluster cannot read" in err
    for form in ("pvc://", "s3://", "gs://", "az://", "hf://", "https://"):
        assert form in err
    assert not (await cluster.request("GET", cluster.ftj_path("default")) or {}).get("items")


async def test_submit_gives_kubetune_validates_message(cluster: FakeCluster, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, finetunejob("typo", {**SPEC, "trainingArgs": {"learning_rat": 1e-4}}))
    validated = await kubetune("validate", str(manifest))
    submitted = await kubetune("submit", str(manifest))
    assert validated[0] == submitted[0] == EXIT_INVALID_CONFIG
    assert submitted[2] == validated[2].splitlines()[0] + "\n"  # validate adds a line on its policy
    assert "learning_rat" in submitted[2] and "learning_rate" in submitted[2]


async def test_submit_into_a_namespace_and_delete(cluster: FakeCluster, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, finetunejob("elsewhere"))
    code, out, _ = await kubetune("submit", str(manifest), "-n", "team-b")
    assert (code, out) == (0, "finetunejobs.kubetune.io/elsewhere created\n")
    assert await cluster.get_ftj("elsewhere", namespace="team-b") is not None
    code, out, _ = await kubetune("submit", str(manifest), "-n", "team-b")
    assert code == EXIT_FAILED
    code, out, _ = await kubetune("delete", "elsewhere", "-n", "team-b")
    assert (code, out) == (0, 'finetunejobs.kubetune.io "elsewhere" deleted\n')


async def test_no_kube_config_says_where_it_looked(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    code, _, err = await kubetune("get")
    assert code == EXIT_FAILED
    assert f"no kube config found (looked at KUBECONFIG={tmp_path / 'missing'})" in err


async def test_an_api_server_that_does_not_answer(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import socket

    from tests.operator.conftest import write_kubeconfig

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "config", f"http://127.0.0.1:{port}")))
    code, _, err = await kubetune("get")
    assert code == EXIT_FAILED
    assert f"cannot reach the API server at http://127.0.0.1:{port}" in err


async def test_a_cluster_without_the_crd(cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubetune_api.kube_http import NotFoundError

    def no_crd(*_: Any, **__: Any) -> Any:
        raise NotFoundError(
            404,
            "GET /apis/kubetune.io/v1alpha1/...",
            b'{"message": "the server could not find the requested resource"}',
        )

    monkeypatch.setattr("kubetune_api.kube_http.KubeHttp.request", no_crd)
    code, _, err = await kubetune("status", "sentiment")
    assert code == EXIT_FAILED
    assert "could not find the requested resource: is kubetune installed in this cluster" in err


def write_manifest(folder: Path, *documents: dict[str, Any]) -> Path:
    import yaml

    path = folder / "finetunejob.yaml"
    path.write_text(yaml.safe_dump_all(list(documents)))
    return path
