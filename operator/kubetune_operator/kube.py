"""The few Kubernetes API calls the operator makes itself (Kopf does the watching).

Every call is listed in `kubetune_operator.permissions`; add a rule there when adding
a call here (tests/chart/test_rbac.py derives the calls from this module).

Why aiohttp in the operator's own event loop and not the `kubernetes` client: that
client is synchronous, so every call went through a thread pool, and its request path
(parameter sanitising, urllib3, the GIL handed between threads) cost ~1 ms of CPU per
call against ~0.4 ms here (measured with 500 Job creations; see bench/operator_scale.py).
Bodies are plain dicts sent as JSON and responses are never turned into model objects.

Credentials come from Kopf's own `login_via_client` (in-cluster service account, else
the kubeconfig), so the operator's calls and Kopf's watches authenticate the same way.
On a 401 (a rotated service-account token) the client logs in again and retries once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
import kopf

from kubetune_api import __version__
from kubetune_api.resource import API_GROUP, API_VERSION, PLURAL

logger = logging.getLogger("kubetune.kube")

MERGE_PATCH = "application/merge-patch+json"
MAX_DETAIL = 600  # characters of the API server's message kept (it goes into status.message)
KUEUE_WORKLOADS = "/apis/kueue.x-k8s.io/v1beta1/namespaces/{namespace}/workloads"
KUEUE_JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"  # on each Workload: the uid of its Job
REQUEST_TIMEOUT = 30.0
# Concurrent requests to the API server; more only queue there (and in its priority and
# fairness limits) instead of finishing sooner.
MAX_CONNECTIONS = 16
USER_AGENT = f"kubetune-operator/{__version__}"

Login = Callable[[], kopf.ConnectionInfo]


class ApiError(RuntimeError):
    """A Kubernetes API call failed with an HTTP status other than the expected ones."""

    def __init__(self, status: int, what: str, body: bytes | str = b"") -> None:
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        try:
            detail = json.loads(text).get("message", text)
        except (ValueError, AttributeError):
            detail = text
        self.status = status
        self.detail = str(detail)[:MAX_DETAIL]  # the API server's own message
        super().__init__(f"{what}: HTTP {status}: {self.detail}")

    @property
    def retryable(self) -> bool:
        """Throttling (429) or the server's trouble (5xx): the same request may pass later.
        Any other refusal (400/422 invalid, 403 forbidden by RBAC, quota or a webhook) is
        an answer about the request, to be shown to the user."""
        return self.status == 429 or self.status >= 500


class NotFound(ApiError):
    """404: the object is gone."""


class KubeApi(Protocol):
    """What the reconciler needs from the API server."""

    async def create_job(self, namespace: str, body: dict[str, Any]) -> bool:
        """Create a Job; False when one of that name exists (409). ApiError for a refusal."""

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Job, or None when there is none (after a 409: whose is it?)."""

    async def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> None: ...

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and, in the background, its pods; nothing when it is gone already."""

    async def create_service(self, namespace: str, body: dict[str, Any]) -> bool:
        """Create a Service (a multi-node run's headless one); False when it already exists (409)."""

    async def create_network_policy(self, namespace: str, body: dict[str, Any]) -> bool:
        """Create a NetworkPolicy (a distributed run's); False when it already exists (409)."""

    async def patch_finetunejob_status(self, namespace: str, name: str, patch: dict[str, Any]) -> str:
        """Merge-patch the status subresource; the object's new resourceVersion. NotFound when gone."""

    async def list_workloads(self, namespace: str, job_uid: str) -> list[dict[str, Any]]:
        """Kueue's Workloads of a Job (by Kueue's job-uid label)."""

    async def patch_workload(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Merge-patch a Kueue Workload (spec.active: the suspend of Kueue-managed runs)."""

    async def read_pod_log(self, namespace: str, name: str, container: str, tail_lines: int, limit_bytes: int) -> str:
        """The log tail; "" when the pod or its log is gone."""

    async def list_nodes(self, label_selector: str) -> list[dict[str, Any]]:
        """The cluster's nodes with a label (cluster-scoped). ApiError 403 without the RBAC."""


def login_like_kopf() -> kopf.ConnectionInfo:
    """The credentials Kopf's default login finds (service account, else kubeconfig)."""
    info = kopf.login_via_client(logger=logger, settings=kopf.OperatorSettings())
    if info is None:  # only when the `kubernetes` package is missing
        raise kopf.LoginError("the kubernetes package is needed to find the API server's credentials")
    return info


class HttpKubeApi:
    """`KubeApi` over one aiohttp session, created on first use in the running loop."""

    def __init__(self, login: Login = login_like_kopf) -> None:
        self._login = login
        self._session: aiohttp.ClientSession | None = None
        self._retired: list[aiohttp.ClientSession] = []  # refused credentials, closed once idle
        self._server = ""
        self.requests: dict[str, int] = {}  # method -> count, for the bench and debugging

    async def close(self) -> None:
        sessions = [self._session, *self._retired]
        self._session, self._retired = None, []
        for session in sessions:
            if session is not None:
                await session.close()

    def _connect(self) -> aiohttp.ClientSession:
        info = self._login()
        self._server = info.server.rstrip("/")  # may carry a path prefix (behind a proxy)
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, ssl=info.as_ssl_context()),
            headers={**info.as_http_headers(), "User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            proxy=info.proxy_url,
            trust_env=info.trust_env,
        )

    def _current(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = self._connect()
        return self._session

    def _log_in_again(self, refused: aiohttp.ClientSession) -> None:
        """A new session with fresh credentials, unless a concurrent call made one already.
        The refused session is closed later: other calls may still be using it."""
        if refused is not self._session:
            return
        logger.info("the API server refused the credentials (401); logging in again")
        self._session = self._connect()
        self._retired.append(refused)
        asyncio.get_running_loop().call_later(REQUEST_TIMEOUT, lambda: asyncio.ensure_future(self._retire(refused)))

    async def _retire(self, session: aiohttp.ClientSession) -> None:
        if session in self._retired:  # not closed by close() meanwhile
            self._retired.remove(session)
            await session.close()

    async def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        query: list[tuple[str, Any]] | None,
        data: bytes | None,
        content_type: str | None,
    ) -> tuple[int, bytes]:
        headers = {"Content-Type": content_type} if content_type else None
        params = [(key, str(value)) for key, value in query] if query else None
        url = self._server + path
        async with session.request(method, url, params=params, data=data, headers=headers) as rsp:
            return rsp.status, await rsp.read()

    async def _run(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> tuple[int, bytes]:
        self.requests[method] = self.requests.get(method, 0) + 1
        data = None
        if body is not None:
            # allow_nan=False: NaN is not JSON; the API server would refuse the whole request.
            data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
            content_type = content_type or "application/json"
        session = self._current()
        status, payload = await self._send(session, method, path, query, data, content_type)
        if status == 401:  # a rotated token: log in again (re-reads the token file), retry once
            self._log_in_again(session)
            status, payload = await self._send(self._current(), method, path, query, data, content_type)
        return status, payload

    async def create_job(self, namespace: str, body: dict[str, Any]) -> bool:
        return await self._create(f"/apis/batch/v1/namespaces/{namespace}/jobs", "Job", namespace, body)

    async def create_service(self, namespace: str, body: dict[str, Any]) -> bool:
        return await self._create(f"/api/v1/namespaces/{namespace}/services", "Service", namespace, body)

    async def create_network_policy(self, namespace: str, body: dict[str, Any]) -> bool:
        path = f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies"
        return await self._create(path, "NetworkPolicy", namespace, body)

    async def _create(self, path: str, kind: str, namespace: str, body: dict[str, Any]) -> bool:
        """POST `body`; False when one of that name exists (409)."""
        status, data = await self._run("POST", path, body=body)
        if status == 409:
            return False
        if status >= 300:
            raise ApiError(status, f"creating {kind} {namespace}/{body['metadata']['name']}", data)
        return True

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        status, data = await self._run("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")
        if status == 404:
            return None
        if status >= 300:
            raise ApiError(status, f"reading Job {namespace}/{name}", data)
        found: dict[str, Any] = json.loads(data)
        return found

    async def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        path = f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}"
        status, data = await self._run("PATCH", path, body=patch, content_type=MERGE_PATCH)
        if status >= 300 and status != 404:
            raise ApiError(status, f"patching Job {namespace}/{name}", data)

    async def delete_job(self, namespace: str, name: str) -> None:
        path = f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}"
        # Background: the Job goes at once, the garbage collector removes its pods after.
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        status, data = await self._run("DELETE", path, body=body)
        if status >= 300 and status != 404:
            raise ApiError(status, f"deleting Job {namespace}/{name}", data)

    async def patch_finetunejob_status(self, namespace: str, name: str, patch: dict[str, Any]) -> str:
        path = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"
        status, data = await self._run("PATCH", path, body={"status": patch}, content_type=MERGE_PATCH)
        what = f"patching FineTuneJob {namespace}/{name} status"
        if status == 404:
            raise NotFound(status, what, data)
        if status >= 300:
            raise ApiError(status, what, data)
        try:
            return str(json.loads(data).get("metadata", {}).get("resourceVersion") or "")
        except (ValueError, AttributeError):
            return ""

    async def list_workloads(self, namespace: str, job_uid: str) -> list[dict[str, Any]]:
        path = KUEUE_WORKLOADS.format(namespace=namespace)
        status, data = await self._run("GET", path, query=[("labelSelector", f"{KUEUE_JOB_UID_LABEL}={job_uid}")])
        if status == 404:  # Kueue is not installed
            return []
        if status >= 300:
            raise ApiError(status, f"listing the Kueue Workloads of Job uid {job_uid}", data)
        items: list[dict[str, Any]] = json.loads(data).get("items") or []
        return items

    async def patch_workload(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        path = f"{KUEUE_WORKLOADS.format(namespace=namespace)}/{name}"
        status, data = await self._run("PATCH", path, body=patch, content_type=MERGE_PATCH)
        if status >= 300 and status != 404:
            raise ApiError(status, f"patching Kueue Workload {namespace}/{name}", data)

    async def read_pod_log(self, namespace: str, name: str, container: str, tail_lines: int, limit_bytes: int) -> str:
        path = f"/api/v1/namespaces/{namespace}/pods/{name}/log"
        query = [("container", container), ("tailLines", tail_lines), ("limitBytes", limit_bytes)]
        status, data = await self._run("GET", path, query=query)
        if status in (400, 404):  # gone, or not started yet: no log to read
            return ""
        if status >= 300:
            raise ApiError(status, f"reading the log of pod {namespace}/{name}", data)
        return data.decode(errors="replace")

    async def list_nodes(self, label_selector: str) -> list[dict[str, Any]]:
        status, data = await self._run("GET", "/api/v1/nodes", query=[("labelSelector", label_selector)])
        if status >= 300:
            raise ApiError(status, "listing nodes", data)
        items: list[dict[str, Any]] = json.loads(data).get("items") or []
        return items
