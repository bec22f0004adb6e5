"""A fake API server for driving the Reconciler directly: it keeps the objects the
operator's calls change, answers like the API server (409, 404, new resourceVersions),
fails on demand, and has a watch that shows its state only when the test delivers it."""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Callable
from typing import Any

from kubetune_api.protocol import Artifact, Result, encode_result
from kubetune_operator import merge_patch
from kubetune_operator.reconcile import Key
from tests.operator.cluster import SPEC

KEY: Key = ("ns", "ftj")
T0 = "2030-01-01T00:00:00Z"
OK = encode_result(
    Result(outcome="Succeeded", artifact=Artifact(uri="/mnt/pvc/models/out", kind="full"), metrics={"accuracy": 0.9})
)


class FakeServer:
    """The API server's objects, changed only through the KubeApi methods (and the test)."""

    def __init__(self, spec: dict[str, Any] | None = None, labels: dict[str, str] | None = None) -> None:
        self._versions = itertools.count(2)
        self.ftj: dict[str, Any] = {
            "metadata": {
                "name": "ftj",
                "namespace": "ns",
                "uid": "ftj-uid",
                "generation": 1,
                "resourceVersion": "1",
                "labels": labels or {},
                "creationTimestamp": T0,
            },
            "spec": copy.deepcopy(spec or SPEC),
            "status": {},
        }
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: list[dict[str, Any]] = []
        self.workloads: list[dict[str, Any]] = []
        self.nodes: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str]] = []  # (method, object name)
        self.errors: dict[str, list[Exception]] = {}  # method -> raised by its next calls
        self.log_text = ""
        self.read_log: Callable[[], Any] | None = None  # replaces the log read (hang, raise)

    def _call(self, method: str, name: str) -> None:
        self.calls.append((method, name))
        pending = self.errors.get(method)
        if pending:
            raise pending.pop(0)

    def called(self, method: str) -> list[str]:
        return [name for called, name in self.calls if called == method]

    def bump(self, obj: dict[str, Any]) -> str:
        version = str(next(self._versions))
        obj["metadata"]["resourceVersion"] = version
        return version

    # -- the KubeApi methods --------------------------------------------------------------

    async def create_job(self, namespace: str, body: dict[str, Any]) -> bool:
        name = body["metadata"]["name"]
        self._call("create_job", name)
        if name in self.jobs:
            return False
        job = copy.deepcopy(body)
        job["metadata"]["uid"] = f"job-{uuid.uuid4().hex[:6]}"
        job["status"] = {}
        self.jobs[name] = job
        return True

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._call("get_job", name)
        return copy.deepcopy(self.jobs.get(name))

    async def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self._call("patch_job", name)
        if name in self.jobs:
            self.jobs[name] = merge_patch.apply(self.jobs[name], patch)

    async def delete_job(self, namespace: str, name: str) -> None:
        self._call("delete_job", name)
        self.jobs.pop(name, None)

    async def create_service(self, namespace: str, body: dict[str, Any]) -> bool:
        self._call("create_service", body["metadata"]["name"])
        return True

    async def create_network_policy(self, namespace: str, body: dict[str, Any]) -> bool:
        self._call("create_network_policy", body["metadata"]["name"])
        return True

    async def patch_finetunejob_status(self, namespace: str, name: str, patch: dict[str, Any]) -> str:
        self._call("patch_status", name)
        self.ftj["status"] = merge_patch.apply(self.ftj["status"], patch)
        return self.bump(self.ftj)

    async def list_workloads(self, namespace: str, job_uid: str) -> list[dict[str, Any]]:
        self._call("list_workloads", job_uid)
        return copy.deepcopy(self.workloads)

    async def patch_workload(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self._call("patch_workload", name)
        self.workloads = [merge_patch.apply(w, patch) if w["metadata"]["name"] == name else w for w in self.workloads]

    async def read_pod_log(self, namespace: str, name: str, container: str, tail_lines: int, limit_bytes: int) -> str:
        self._call("read_pod_log", name)
        if self.read_log is not None:
            return await self.read_log()
        return self.log_text

    async def list_nodes(self, label_selector: str) -> list[dict[str, Any]]:
        self._call("list_nodes", label_selector)
        return copy.deepcopy(self.nodes)

    # -- what the test does to the cluster --------------------------------------------------

    @property
    def job(self) -> dict[str, Any]:
        (job,) = self.jobs.values()
        return job

    def job_status(self, **status: Any) -> None:
        self.job["status"] = {**self.job.get("status", {}), **status}

    def job_condition(self, kind: str, reason: str, message: str = "") -> None:
        condition = {"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": T0}
        self.job_status(conditions=[condition], **({"completionTime": T0} if kind == "Complete" else {}))

    def add_pod(self, phase: str, state: dict[str, Any], name: str | None = None, **status: Any) -> dict[str, Any]:
        pod = {
            "metadata": {
                "name": name or f"ftj-train-{len(self.pods)}",
                "uid": f"pod-{uuid.uuid4().hex[:6]}",
                "namespace": "ns",
                "creationTimestamp": f"2030-01-01T00:00:{len(self.pods):02d}Z",
                "ownerReferences": [{"uid": self.job["metadata"]["uid"], "controller": True}],
            },
            "status": {"phase": phase, "containerStatuses": [{"name": "trainer", "state": state}], **status},
        }
        self.pods.append(pod)
        return pod

    def edit_status(self, **fields: Any) -> None:
        """Someone else writes status (kubectl edit --subresource=status, a script)."""
        self.ftj["status"] = {**self.ftj["status"], **fields}
        self.bump(self.ftj)

    def edit_spec(self, **fields: Any) -> None:
        self.ftj["spec"] = {**self.ftj["spec"], **fields}
        self.ftj["metadata"]["generation"] += 1
        self.bump(self.ftj)


class LaggingIndices:
    """The operator's watch: it shows the server's objects as of the last `deliver()`."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.deliver()

    def deliver(self) -> None:
        self._ftj = copy.deepcopy(self.server.ftj) if self.server.ftj is not None else None
        self._jobs = copy.deepcopy(list(self.server.jobs.values()))
        self._pods = copy.deepcopy(self.server.pods)

    def finetunejob(self, key: Key) -> dict[str, Any] | None:
        return self._ftj

    def jobs(self, key: Key) -> list[dict[str, Any]]:
        return self._jobs

    def pods(self, key: Key) -> list[dict[str, Any]]:
        return self._pods


def running() -> dict[str, Any]:
    return {"running": {"startedAt": T0}}


def terminated(code: int, message: str = "", reason: str = "Error") -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "reason": reason, "message": message, "finishedAt": T0}}
