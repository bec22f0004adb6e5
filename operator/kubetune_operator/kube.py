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
        super().__init__(f"{what}: HTTP {status}: {str(detail)[:300]}")
        self.status = status


class KubeApi(Protocol):
    """What the reconciler needs from the API server."""

    async def create_job(self, namespace: str, body: dict[str, Any]) -> bool:
        """Create a Job; False when it already exists (409)."""

    async def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> None: ...

    async def create_service(self, namespace: str, body: dict[str, Any]) -> bool:
        """Create a Service (a multi-node run's headless one); False when it already exists (409)."""

    async def patch_finetunejob_status(self, namespace: str, name: str, patch: dict[str, Any]) -> bool:
        """Merge-patch the status subresource; False when the object is gone (404)."""

    async def read_pod_log(self, namespace: str, name: str, container: str, tail_lines: int, limit_bytes: int) -> str:
        """The log tail; "" when the pod or its log is gone."""


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
            data = json.dumps(body, separators=(",", ":")).encode()
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

    async def _create(self, path: str, kind: str, namespace: str, body: dict[str, Any]) -> bool:
        """POST `body`; False when it already exists (409: created before, by us)."""
        status, data = await self._run("POST", path, body=body)
        if status == 409:
            return False
        if status >= 300:
            raise ApiError(status, f"creating {kind} {namespace}/{body['metadata']['name']}", data)
        return True

    async def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        path = f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}"
        status, data = await self._run("PATCH", path, body=patch, content_type=MERGE_PATCH)
        if status >= 300 and status != 404:
            raise ApiError(status, f"patching Job {namespace}/{name}", data)

    async def patch_finetunejob_status(self, namespace: str, name: str, patch: dict[str, Any]) -> bool:
        path = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"
        status, data = await self._run("PATCH", path, body={"status": patch}, content_type=MERGE_PATCH)
        if status == 404:
            return False
        if status >= 300:
            raise ApiError(status, f"patching FineTuneJob {namespace}/{name} status", data)
        return True

    async def read_pod_log(self, namespace: str, name: str, container: str, tail_lines: int, limit_bytes: int) -> str:
        path = f"/api/v1/namespaces/{namespace}/pods/{name}/log"
        query = [("container", container), ("tailLines", tail_lines), ("limitBytes", limit_bytes)]
        status, data = await self._run("GET", path, query=query)
        if status in (400, 404):  # gone, or not started yet: no log to read
            return ""
        if status >= 300:
            raise ApiError(status, f"reading the log of pod {namespace}/{name}", data)
        return data.decode(errors="replace")
