"""A pretend cluster for the operator: the kmock emulator plus a fixture that plays the
Job controller, the kubelet and the garbage collector, driven step by step by tests.

The emulator stores objects and streams watch events but runs no controllers, and it
leaves uid/resourceVersion/generation to the client: the fixture sets them on the
objects it creates (never the operator). Everything goes through HTTP so Kopf sees the
same watch events it would see from a real API server.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import itertools
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import aiohttp
import kmock

from kubetune_api.protocol import Artifact, Progress, Result, encode_result, format_progress
from kubetune_api.resource import API_GROUP, API_VERSION, KIND, PLURAL
from kubetune_api.trainer_pod import COMPLETION_INDEX_KEY, CONTAINER_NAME

FTJ_RESOURCE = f"{API_GROUP}/{API_VERSION}/{PLURAL}"
# The smallest FineTuneJob spec the operator runs: the operator's and the client's tests use it.
SPEC: dict[str, Any] = {
    "task": "text-classification",
    "base": {"model": "org/tiny-bert"},
    "data": {"train": "pvc://datasets/train.csv"},
    "output": {"uri": "pvc://models/out"},
    "resources": {"gpus": 1},
}
WORKLOAD_RESOURCE = "kueue.x-k8s.io/v1beta1/workloads"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# The request whose handler is running in the current task (see Emulator.__iter__).
_HANDLING: contextvars.ContextVar[kmock.Request | None] = contextvars.ContextVar("emulated_request", default=None)
_counter = itertools.count(1)


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _selected(selector: str, obj: Any) -> bool:
    """Whether `obj`'s labels satisfy a label selector (=, ==, !=, exists, !exists)."""
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    for requirement in filter(None, (part.strip() for part in selector.split(","))):
        if "!=" in requirement:
            key, value = requirement.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in requirement:
            key, value = requirement.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif requirement.startswith("!"):
            if requirement[1:] in labels:
                return False
        elif requirement not in labels:
            return False
    return True


class Emulator(kmock.KubernetesEmulator):
    """The emulator plus what an API server does and kmock does not: a uid, a creation time
    and a name for `generateName` (Kopf's Events) on creation, a new resourceVersion on every
    write, and server-side label selectors on lists and watches."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # Every request as (METHOD, path?query, user agent, monotonic time), for counting.
        self.log: list[tuple[str, str, str, float]] = []
        self._in_flight: set[int] = set()
        self.job_posts: dict[float, str] = {}  # time -> name of each Job created
        # (METHOD, path, body) of every write, when a caller sets a list here (the bench's floor).
        self.bodies: list[tuple[str, str, Any]] | None = None
        self.logs: dict[tuple[str, str], str] = {}  # (namespace, pod) -> what its log holds
        self.log_reads: dict[tuple[str, str], int] = {}
        self.ended_logs: set[tuple[str, str]] = set()  # pods whose trainer container ended
        self._versions = itertools.count(100)
        self["get", kmock.subresource("log")] << self._serve_log

    async def _serve_list(self, request: kmock.Request) -> Any:
        listing = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector:
            listing["items"] = [obj for obj in listing["items"] if _selected(selector, obj)]
        return listing

    async def _serve_watch(self, request: kmock.Request) -> Any:
        selector = request.params.get("labelSelector")
        async for event in super()._serve_watch(request):
            if selector and isinstance(event, dict) and not _selected(selector, event.get("object")):
                continue
            yield event

    def _serve_log(self, request: kmock.Request) -> bytes | AsyncIterator[bytes]:
        key = (request.namespace or "", request.name or "")
        self.log_reads[key] = self.log_reads.get(key, 0) + 1
        text = self.logs.get(key, "")
        tail = request.params.get("tailLines")
        if tail is not None:
            # As the API server: the last N lines, none for 0 (a follow from now on).
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(tail) :] if int(tail) > 0 else [])
        if request.params.get("follow") == "true":
            return self._follow_log(key, text, len(self.logs.get(key, "")))
        return text.encode()

    async def _follow_log(self, key: tuple[str, str], first: str, sent: int) -> AsyncIterator[bytes]:
        """A followed log, as the API server streams it: what is there, then what is added,
        until the container ends (`ended_logs`, set when the fixture terminates or deletes
        the pod)."""
        yield first.encode()  # kmock needs a first chunk to start the stream, even an empty one
        while True:
            text = self.logs.get(key, "")
            if len(text) > sent:
                yield text[sent:].encode()
                sent = len(text)
            if key in self.ended_logs:
                return
            await asyncio.sleep(0.02)

    def __iter__(self) -> Iterator[kmock.Request]:
        # kmock decides whether a reaction applies to a request by iterating the requests
        # the reaction's filter sees and looking for this one by identity. Inside a request's
        # handler only that request can match, so that is all it needs to see; otherwise
        # every request in flight (and every open watch) was checked against every reaction.
        current = _HANDLING.get()
        if current is not None:
            yield current
        else:
            yield from super().__iter__()

    async def _handle(self, request: kmock.Request) -> Any:
        # kmock matches each request by scanning every request it ever served (quadratic:
        # ~45 ms per request after a few thousand). Only requests in flight need matching;
        # our own `log` keeps the history instead.
        self._in_flight.add(id(request))
        self._requests[:] = [r for r in self._requests if id(r) in self._in_flight]
        token = _HANDLING.set(request)  # aiohttp runs each request in a task (context) of its own
        try:
            return await self._handle_logged(request)
        finally:
            _HANDLING.reset(token)
            self._in_flight.discard(id(request))

    def _KubernetesEmulator__get_objs(self, request: kmock.Request, strict: bool) -> list[Any]:
        # kmock finds the object of a named request (get, create, patch) by scanning every
        # stored object: quadratic over a 500-job bench, where it was a third of the
        # emulator's CPU. Its own create/patch/delete bookkeeping (`_handle`) keys objects by
        # (resource, namespace, name); look up the same key. Lists still scan.
        if strict and request.name is not None and request.resource is not None:
            key = (request.resource, request.namespace, request.name)
            return [self._objects[key]] if key in self._objects else []
        found: list[Any] = super()._KubernetesEmulator__get_objs(request, strict)  # type: ignore[misc]
        return found

    async def _handle_logged(self, request: kmock.Request) -> Any:
        at = time.monotonic()
        method = str(request.method.value if request.method else "").upper()
        self.log.append((method, request.url.path_qs, request.headers.get("User-Agent", ""), at))
        if method == "POST" and request.url.path.endswith("/jobs") and isinstance(request.data, dict):
            self.job_posts[at] = request.data.get("metadata", {}).get("name", "")
        if self.bodies is not None and method != "GET":
            self.bodies.append((method, request.url.path, copy.deepcopy(request.data)))
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:8]}"
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now())
        if request.action in (kmock.action.CREATE, kmock.action.UPDATE) and isinstance(request.data, dict):
            # Every write makes a new version of the object, whatever the client sent.
            request.data.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
        return await super()._handle(request)


class EmulatorThread:
    """The emulator served from its own thread and event loop.

    Kopf, on stopping, waits for every task created after it started; in one loop the
    emulator's never-ending watch-stream tasks would hold each stop for 5 s. A thread of
    its own also keeps the emulator's work out of the operator's loop, as in a cluster.
    """

    def __init__(self) -> None:
        self.emulator = Emulator()
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.emulator, kmock.Server(self.emulator) as server:
            register_resources(self.emulator)
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    @property
    def logs(self) -> dict[tuple[str, str], str]:
        return self.emulator.logs

    def __enter__(self) -> EmulatorThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the kmock emulator did not start")
        return self

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def register_resources(emulator: kmock.KubernetesEmulator) -> None:
    emulator.resources.load_bundled()
    emulator.resources[FTJ_RESOURCE] = kmock.ResourceInfo(
        kind=KIND,
        singular="finetunejob",
        namespaced=True,
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
        shortnames={"ftj"},
        subresources={"status"},
    )
    emulator.resources[WORKLOAD_RESOURCE] = kmock.ResourceInfo(
        kind="Workload",
        singular="workload",
        namespaced=True,
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
    )


class FakeCluster:
    """HTTP client for the emulator with the controllers' moves as methods."""

    def __init__(self, emulator: Emulator, url: str) -> None:
        self.emulator = emulator
        self.url = url.rstrip("/")
        self.logs = emulator.logs
        self.log_reads = emulator.log_reads
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> FakeCluster:
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.session is not None
        await self.session.close()

    # -- raw HTTP ------------------------------------------------------------------------------

    async def request(self, method: str, path: str, body: Any = None, merge: bool = False) -> Any:
        assert self.session is not None
        headers = {"Content-Type": "application/merge-patch+json"} if merge else {}
        async with self.session.request(method, self.url + path, json=body, headers=headers) as response:
            if response.status == 404:
                return None
            response.raise_for_status()
            return await response.json()

    @staticmethod
    def ftj_path(namespace: str, name: str = "") -> str:
        path = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{PLURAL}"
        return f"{path}/{name}" if name else path

    # -- the user ------------------------------------------------------------------------------

    async def create_ftj(
        self, name: str, spec: dict[str, Any], namespace: str = "default", labels: dict[str, str] | None = None
    ) -> dict[str, Any]:
        body = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "resourceVersion": "1",
                "generation": 1,
                "creationTimestamp": now(),
                "labels": labels or {},
            },
            "spec": spec,
        }
        return await self.request("POST", self.ftj_path(namespace), body)

    async def get_ftj(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return await self.request("GET", self.ftj_path(namespace, name))

    async def patch_ftj(self, name: str, patch: dict[str, Any], namespace: str = "default") -> None:
        await self.request("PATCH", self.ftj_path(namespace, name), patch, merge=True)

    async def delete_ftj(self, name: str, namespace: str = "default") -> None:
        await self.request("DELETE", self.ftj_path(namespace, name))

    # -- reading -------------------------------------------------------------------------------

    async def jobs(self, namespace: str = "default") -> list[dict[str, Any]]:
        listing = await self.request("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs")
        return list((listing or {}).get("items") or [])

    async def pods(self, namespace: str = "default") -> list[dict[str, Any]]:
        listing = await self.request("GET", f"/api/v1/namespaces/{namespace}/pods")
        return list((listing or {}).get("items") or [])

    async def events(self, namespace: str = "default") -> list[dict[str, Any]]:
        listing = await self.request("GET", f"/api/v1/namespaces/{namespace}/events")
        return list((listing or {}).get("items") or [])

    async def wait_for(self, what: Callable[[], Any], timeout: float = 10.0, message: str = "condition") -> Any:
        """Poll an async getter until it returns something truthy."""
        deadline = asyncio.get_running_loop().time() + timeout
        last: Any = None
        while asyncio.get_running_loop().time() < deadline:
            last = await what()
            if last:
                return last
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {message}; last seen: {last!r}")

    async def wait_status(
        self, name: str, check: Callable[[dict[str, Any]], bool], timeout: float = 10.0, namespace: str = "default"
    ) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            ftj = await self.get_ftj(name, namespace)
            status = (ftj or {}).get("status") or {}
            return status if check(status) else None

        return await self.wait_for(probe, timeout, f"status of {name}")

    async def wait_job(self, name: str, namespace: str = "default", timeout: float = 10.0) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            return next((j for j in await self.jobs(namespace) if j["metadata"]["name"] == name), None)

        return await self.wait_for(probe, timeout, f"Job {name}")

    # -- the Job controller --------------------------------------------------------------------

    async def job_status(self, job: dict[str, Any], status: dict[str, Any]) -> None:
        meta = job["metadata"]
        path = f"/apis/batch/v1/namespaces/{meta['namespace']}/jobs/{meta['name']}/status"
        await self.request("PATCH", path, {"status": status}, merge=True)

    async def job_condition(self, job: dict[str, Any], kind: str, reason: str, message: str = "") -> None:
        await self.job_status(
            job,
            {
                "conditions": [
                    {"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": now()}
                ],
                "completionTime" if kind == "Complete" else "failedTime": now(),
            },
        )

    async def create_pod(self, job: dict[str, Any], index: int | None = None) -> dict[str, Any]:
        """A pod from the Job's template, Pending and unscheduled.

        With `index`: what the Job controller makes for that index of an Indexed Job
        (completion-index label and annotation, hostname `<job>-<index>`).
        """
        meta = job["metadata"]
        template = job["spec"]["template"]
        labels = {**template["metadata"]["labels"], "batch.kubernetes.io/job-name": meta["name"]}
        annotations = dict(template["metadata"].get("annotations") or {})
        spec = template["spec"]
        if index is None:
            name = f"{meta['name']}-{next(_counter):05d}"
        else:
            name = f"{meta['name']}-{index}-{uuid.uuid4().hex[:5]}"
            labels[COMPLETION_INDEX_KEY] = annotations[COMPLETION_INDEX_KEY] = str(index)
            spec = {**spec, "hostname": f"{meta['name']}-{index}"}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "uid": str(uuid.uuid4()),
                "resourceVersion": "1",
                "creationTimestamp": now(),
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": spec,
            "status": {"phase": "Pending"},
        }
        return await self.request("POST", f"/api/v1/namespaces/{meta['namespace']}/pods", pod)

    # -- the kubelet / scheduler ---------------------------------------------------------------

    async def pod_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        meta = pod["metadata"]
        await self.request(
            "PATCH",
            f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
            {"status": status},
            merge=True,
        )

    async def unschedulable(self, pod: dict[str, Any], message: str) -> None:
        await self.pod_status(
            pod,
            {
                "phase": "Pending",
                "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
                ],
            },
        )

    async def waiting(self, pod: dict[str, Any], reason: str, message: str) -> None:
        await self.pod_status(
            pod,
            {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [
                    {
                        "name": CONTAINER_NAME,
                        "image": "trainer:x",
                        "state": {"waiting": {"reason": reason, "message": message}},
                    }
                ],
            },
        )

    async def run(self, job: dict[str, Any], pod: dict[str, Any]) -> None:
        await self.job_status(job, {"startTime": job.get("status", {}).get("startTime") or now(), "active": 1})
        await self.pod_status(
            pod,
            {
                "phase": "Running",
                "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": CONTAINER_NAME, "ready": True, "state": {"running": {"startedAt": now()}}}
                ],
            },
        )

    def log(self, pod: dict[str, Any], *progress: Progress, noise: str = "Some library warning") -> None:
        lines = [noise]
        for report in progress:
            lines += [format_progress(report), "tqdm 42%|####"]
        self.logs[(pod["metadata"]["namespace"], pod["metadata"]["name"])] = "\n".join(lines) + "\n"

    def append_log(self, pod: dict[str, Any], *lines: str) -> None:
        """The trainer writes more lines (a followed log gets them as they come)."""
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        self.logs[key] = self.logs.get(key, "") + "".join(f"{line}\n" for line in lines)

    def _end_log(self, pod: dict[str, Any]) -> None:
        self.emulator.ended_logs.add((pod["metadata"]["namespace"], pod["metadata"]["name"]))

    async def terminate(
        self, pod: dict[str, Any], exit_code: int, message: str = "", reason: str | None = None
    ) -> None:
        reason = reason or ("Completed" if exit_code == 0 else "Error")
        self._end_log(pod)
        await self.pod_status(
            pod,
            {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "containerStatuses": [
                    {
                        "name": CONTAINER_NAME,
                        "ready": False,
                        "state": {
                            "terminated": {
                                "exitCode": exit_code,
                                "reason": reason,
                                "message": message,
                                "finishedAt": now(),
                            }
                        },
                    }
                ],
            },
        )

    async def delete_pod(self, pod: dict[str, Any]) -> None:
        self._end_log(pod)
        meta = pod["metadata"]
        await self.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}")

    async def delete_job(self, name: str, namespace: str = "default") -> None:
        await self.request("DELETE", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")

    # -- Kueue (a stand-in: one Workload per queued Job; admission unsuspends the Job) ---------

    @staticmethod
    def workloads_path(namespace: str) -> str:
        return f"/apis/kueue.x-k8s.io/v1beta1/namespaces/{namespace}/workloads"

    async def kueue_queue(self, job: dict[str, Any]) -> dict[str, Any]:
        """What Kueue does when a Job with its queue label appears: a Workload for it."""
        meta = job["metadata"]
        workload = {
            "apiVersion": "kueue.x-k8s.io/v1beta1",
            "kind": "Workload",
            "metadata": {
                "name": f"job-{meta['name']}-{meta['uid'][:5]}",
                "namespace": meta["namespace"],
                "labels": {"kueue.x-k8s.io/job-uid": meta["uid"]},
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {"active": True, "queueName": meta["labels"][KUEUE_QUEUE_LABEL]},
        }
        return await self.request("POST", self.workloads_path(meta["namespace"]), workload)

    async def workload(self, job: dict[str, Any]) -> dict[str, Any]:
        listing = await self.request("GET", self.workloads_path(job["metadata"]["namespace"]))
        uid = job["metadata"]["uid"]
        return next(w for w in listing["items"] if w["metadata"]["labels"]["kueue.x-k8s.io/job-uid"] == uid)

    async def kueue_reconcile(self, job: dict[str, Any]) -> None:
        """Kueue's move: an active Workload is admitted (the Job unsuspended), an inactive one
        evicted (the Job suspended)."""
        active = bool((await self.workload(job))["spec"].get("active", True))
        meta = job["metadata"]
        path = f"/apis/batch/v1/namespaces/{meta['namespace']}/jobs/{meta['name']}"
        await self.request("PATCH", path, {"spec": {"suspend": not active}}, merge=True)

    # -- the garbage collector -----------------------------------------------------------------

    async def collect_garbage(self, namespace: str = "default") -> None:
        """Delete Jobs whose owner is gone, then pods whose Job is gone (like the real GC)."""
        alive = {
            f["metadata"]["uid"] for f in ((await self.request("GET", self.ftj_path(namespace))) or {}).get("items", [])
        }
        for job in await self.jobs(namespace):
            owners = {
                ref["uid"] for ref in job["metadata"].get("ownerReferences") or [] if ref.get("blockOwnerDeletion")
            }
            if owners and not owners & alive:
                await self.request("DELETE", f"/apis/batch/v1/namespaces/{namespace}/jobs/{job['metadata']['name']}")
        jobs = {j["metadata"]["uid"] for j in await self.jobs(namespace)}
        for pod in await self.pods(namespace):
            owners = {ref["uid"] for ref in pod["metadata"].get("ownerReferences") or []}
            if owners and not owners & jobs:
                await self.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}")


def succeeded_result(uri: str = "/mnt/pvc/models/out", kind: str = "full") -> str:
    return encode_result(
        Result(
            outcome="Succeeded",
            artifact=Artifact(uri=uri, kind=kind),
            metrics={"eval_accuracy": 0.91, "train_loss": 0.2},
        )
    )


def failed_result(reason: str, message: str) -> str:
    return encode_result(Result(outcome="Failed", reason=reason, message=message))


NAME_RE = re.compile(r"^[a-z0-9-]+$")
