"""Fixtures for the client: the kmock cluster and the real operator (from tests/operator),
a Client logged in through the cluster's kubeconfig, and stand-ins for what kmock cannot do
(a kubelet that starts fetch pods; pods/exec)."""

from __future__ import annotations

import asyncio
import copy
import io
import tarfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubetune_api.client import Client
from kubetune_api.fetch_pvc import FETCH_APP, MOUNT, FetchError
from kubetune_api.kube_http import KubeHttp, api_path
from kubetune_api.kubeconfig import Connection
from kubetune_api.resource import API_GROUP, API_VERSION, PLURAL
from kubetune_api.trainer_pod import LABEL_NAME
from tests.operator import conftest as operator_fixtures
from tests.operator.cluster import SPEC, FakeCluster, now

# The emulator, the fake cluster and the real operator, as the operator's tests have them.
cluster = operator_fixtures.cluster
operator = operator_fixtures.operator
operator_env = operator_fixtures.operator_env


def finetunejob(name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": copy.deepcopy(spec or SPEC),
    }


async def set_status(cluster: FakeCluster, name: str, status: dict[str, Any], namespace: str = "default") -> None:
    """Write the status as the operator would (the tests that do not run it)."""
    path = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"
    await cluster.request("PATCH", path, {"status": status}, merge=True)


@pytest.fixture
def client(cluster: FakeCluster) -> Client:
    # Through KUBECONFIG, as a user's machine has it (the cluster fixture writes and sets it).
    return Client(interval=0.05)


class ClaimExec:
    """pods/exec played for fetch pods: a folder per claim stands for the volume, and `tar`
    runs here on the folder the pod mounted. `fail` makes the copy break halfway."""

    def __init__(self, claims: Path, cluster: FakeCluster) -> None:
        self.claims = claims
        self.cluster = cluster
        self.fail: str | None = None
        self.calls: list[tuple[str, str, list[str]]] = []

    def __call__(
        self, connection: Connection, namespace: str, pod: str, container: str, command: list[str]
    ) -> Iterator[bytes]:
        self.calls.append((namespace, pod, command))
        folder = command[-1] if command[0] == "sh" else command[command.index("-C") + 1]
        claim = self.claim_of(connection, namespace, pod)
        source = self.claims / claim / folder.removeprefix(MOUNT).strip("/")
        if not source.is_dir():
            raise FetchError(f"sh: cd: can't cd to {folder}: No such file or directory")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for entry in sorted(source.iterdir()):
                if command[0] == "sh" and entry.name.startswith("checkpoint-"):
                    continue  # what the find filter leaves out in the pod
                archive.add(entry, arcname=f"./{entry.name}")
        data = buffer.getvalue()
        yield data[: len(data) // 2]
        if self.fail:
            raise FetchError(self.fail)
        yield data[len(data) // 2 :]

    @staticmethod
    def claim_of(connection: Connection, namespace: str, pod: str) -> str:
        """The claim the pod mounts, as the kubelet would know it."""
        body = KubeHttp(connection).request("GET", api_path("namespaces", namespace, "pods", pod))
        [volume] = body["spec"]["volumes"]
        return str(volume["persistentVolumeClaim"]["claimName"])


async def start_fetch_pods(cluster: FakeCluster, seen: list[dict[str, Any]]) -> None:
    """The kubelet for fetch pods: each one runs as soon as it appears."""
    while True:
        for pod in await cluster.pods():
            labels = pod["metadata"].get("labels") or {}
            if labels.get(LABEL_NAME) == FETCH_APP and pod.get("status", {}).get("phase") != "Running":
                seen.append(pod)
                await cluster.pod_status(pod, {"phase": "Running", "startTime": now()})
        await asyncio.sleep(0.02)


@pytest.fixture
async def fetch_kubelet(cluster: FakeCluster) -> AsyncIterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    task = asyncio.create_task(start_fetch_pods(cluster, seen))
    yield seen
    task.cancel()
