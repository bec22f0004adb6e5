"""The few Kubernetes API calls the operator makes itself (Kopf does the watching).

Every call is listed in `kubetune_operator.permissions`; add a rule there when adding
a call here. The `kubernetes` client is synchronous, so calls run in a small thread
pool; responses are not turned into client model objects (raw JSON is all we need and
deserialising a Job into models costs more CPU than the request).
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from kubetune_operator.spec import API_GROUP, API_VERSION, PLURAL

MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT = 30.0


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

    async def patch_finetunejob_status(self, namespace: str, name: str, patch: dict[str, Any]) -> bool:
        """Merge-patch the status subresource; False when the object is gone (404)."""

    async def read_pod_log(self, namespace: str, name: str, container: str, tail_lines: int, limit_bytes: int) -> str:
        """The log tail; "" when the pod or its log is gone."""


def load_client_configuration() -> Any:
    """In-cluster service account if there is one, else the kubeconfig (like Kopf's login)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    return configuration


class KubernetesClientApi:
    """`KubeApi` over the official `kubernetes` client."""

    def __init__(self, configuration: Any | None = None, workers: int = 8) -> None:
        from kubernetes import client

        configuration = configuration or load_client_configuration()
        # One pooled connection per worker thread: no thread waits for a connection.
        configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, workers)
        self._client = client.ApiClient(configuration)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kubetune-api")
        self.requests: dict[str, int] = {}  # method -> count, for the bench and debugging

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> tuple[int, bytes]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        method, url, headers, body, post = self._client.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._client.call_api(
            method, url, header_params=headers, body=body, post_params=post, _request_timeout=REQUEST_TIMEOUT
        )
        return response.status, response.read() or b""

    async def _run(self, method: str, path: str, **kwargs: Any) -> tuple[int, bytes]:
        self.requests[method] = self.requests.get(method, 0) + 1
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self._call(method, path, **kwargs))

    async def create_job(self, namespace: str, body: dict[str, Any]) -> bool:
        status, data = await self._run("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", body=body)
        if status == 409:
            return False
        if status >= 300:
            raise ApiError(status, f"creating Job {namespace}/{body['metadata']['name']}", data)
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
