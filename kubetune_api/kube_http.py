"""Plain HTTP calls to the Kubernetes API for the client: JSON in, JSON (or text) out.

No generated model classes: FineTuneJobs, pods and logs travel as the dicts and text the
API server sends, the way the operator's own client works (`kubetune_operator.kube`).
urllib3 comes with the `kubernetes` package that finds the credentials
(`kubetune_api.kubeconfig`), and it streams: a followed log arrives line by line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from kubetune_api import __version__
from kubetune_api.kubeconfig import Connection

REQUEST_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0
MAX_DETAIL = 600  # characters of the API server's message kept in an error
USER_AGENT = f"kubetune-client/{__version__}"
Query = Mapping[str, str | int | bool | None]


class KubeError(RuntimeError):
    """The API server refused a request; `detail` is its own message."""

    def __init__(self, status: int, what: str, body: bytes = b"") -> None:
        text = body.decode(errors="replace")
        try:
            detail = json.loads(text).get("message", text)
        except (ValueError, AttributeError):
            detail = text
        self.status = status
        self.detail = str(detail)[:MAX_DETAIL]
        super().__init__(f"{what}: HTTP {status}: {self.detail}" if status else f"{what}: {self.detail}")

    @property
    def transient(self) -> bool:
        """Throttling or the server's trouble: the same request may pass later."""
        return self.status == 429 or self.status >= 500


class NotFoundError(KubeError):
    """404: no such object (or no such resource: the CRD is not installed)."""


class UnreachableError(KubeError):
    """No answer from the API server (connection refused, TLS, timeout): status 0."""

    @property
    def transient(self) -> bool:
        return True


def api_path(*segments: str, group: str = "", version: str = "v1") -> str:
    """/api/v1/... for the core group, /apis/GROUP/VERSION/... otherwise; segments quoted."""
    root = f"/apis/{group}/{version}" if group else f"/api/{version}"
    return "/".join([root, *(quote(segment, safe="") for segment in segments)])


def _query(query: Query | None) -> str:
    if not query:
        return ""
    pairs = {
        key: ("true" if value else "false") if isinstance(value, bool) else str(value)
        for key, value in query.items()
        if value is not None
    }
    return "?" + urlencode(pairs) if pairs else ""


class KubeHttp:
    """One connection pool to one API server."""

    def __init__(self, connection: Connection, timeout: float = REQUEST_TIMEOUT) -> None:
        import urllib3  # the kubernetes package's own HTTP library

        self.connection = connection
        self._timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT, read=timeout)
        self._stream_timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT, read=None)  # a followed log may be quiet
        tls: dict[str, Any] = {
            "cert_reqs": "CERT_REQUIRED" if connection.verify else "CERT_NONE",
            "ca_certs": connection.ca_file,
            "cert_file": connection.cert_file,
            "key_file": connection.key_file,
        }
        if connection.tls_server_name:
            tls["server_hostname"] = connection.tls_server_name
        self._pool: urllib3.PoolManager = (
            urllib3.ProxyManager(connection.proxy, **tls) if connection.proxy else urllib3.PoolManager(**tls)
        )

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        authorization = self.connection.authorization()
        if authorization:
            headers["Authorization"] = authorization
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _send(self, method: str, path: str, query: Query | None, body: Any, content_type: str, stream: bool) -> Any:
        import urllib3

        url = self.connection.server + path + _query(query)
        data = None if body is None else json.dumps(body).encode()
        try:
            response = self._pool.request(
                method,
                url,
                body=data,
                headers=self._headers(content_type if data is not None else None),
                timeout=self._stream_timeout if stream else self._timeout,
                preload_content=not stream,
                retries=False,
            )
        except urllib3.exceptions.HTTPError as failure:
            why = f"cannot reach the API server at {self.connection.server}: {failure}"
            raise UnreachableError(0, f"{method} {path}", why.encode()) from None
        if response.status >= 400:
            detail = response.data if not stream else response.read()
            response.release_conn()
            refusal = NotFoundError if response.status == 404 else KubeError
            raise refusal(response.status, f"{method} {path}", detail)
        return response

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """The decoded JSON answer (None for an empty one); KubeError for a refusal."""
        response = self._send(method, path, query, body, content_type, stream=False)
        return json.loads(response.data) if response.data else None

    def text(self, path: str, query: Query | None = None) -> str:
        """A GET whose answer is plain text (a pod log)."""
        return str(self._send("GET", path, query, None, "", stream=False).data.decode(errors="replace"))

    def lines(self, path: str, query: Query | None = None) -> Iterator[str]:
        """A GET's answer line by line, as the server sends it (a followed log); the
        connection closes when the server ends the answer or the reader stops."""
        response = self._send("GET", path, query, None, "", stream=True)
        pending = b""
        try:
            for chunk in response.stream(8192, decode_content=True):
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield line.decode(errors="replace")
            if pending:
                yield pending.decode(errors="replace")
        finally:
            response.release_conn()
            response.close()
