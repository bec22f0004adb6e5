"""kubetune_operator.kube against a small aiohttp server: what each call sends, how each
answer is read, and logging in again when the token was rotated."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kubetune_operator.kube import MERGE_PATCH, USER_AGENT, ApiError, HttpKubeApi, NotFound

OK = b'{"metadata": {"resourceVersion": "1"}}'  # what a write answers by default


class Server:
    """Answers with the next queued (status, body) and records every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[tuple[int, bytes]] = []
        self.valid_token = "token-1"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "body": json.loads(body) if body else None,
            }
        )
        if request.headers.get("Authorization") != f"Bearer {self.valid_token}":
            return web.Response(status=401, body=b'{"message": "Unauthorized"}')
        status, payload = self.answers.pop(0) if self.answers else (200, OK)
        return web.Response(status=status, body=payload)


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    state = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", state.handle)
    test_server = TestServer(app)
    await test_server.start_server()
    try:
        yield state, str(test_server.make_url("")).rstrip("/")
    finally:
        await test_server.close()


def _api(url: str, tokens: list[str]) -> tuple[HttpKubeApi, list[str]]:
    """A client whose login hands out the given tokens in turn (and records each login)."""
    logins: list[str] = []

    def login() -> kopf.ConnectionInfo:
        token = tokens[min(len(logins), len(tokens) - 1)]
        logins.append(token)
        return kopf.ConnectionInfo(server=url, token=token)

    return HttpKubeApi(login=login), logins


async def test_create_job_posts_json_and_reads_conflict(server: tuple[Server, str]) -> None:
    state, url = server
    api, _ = _api(url, ["token-1"])
    try:
        job = {"metadata": {"name": "x-train"}, "spec": {"suspend": False}}
        assert await api.create_job("team-a", job) is True
        state.answers.append((409, b'{"message": "already exists"}'))
        assert await api.create_job("team-a", job) is False
        state.answers.append((422, b'{"message": "spec.template: Invalid value"}'))
        with pytest.raises(ApiError, match=r"HTTP 422: spec\.template: Invalid value"):
            await api.create_job("team-a", job)
    finally:
        await api.close()
    sent = state.requests[0]
    assert (sent["method"], sent["path"]) == ("POST", "/apis/batch/v1/namespaces/team-a/jobs")
    assert sent["body"] == job
    assert sent["headers"]["Content-Type"] == "application/json"
    assert sent["headers"]["User-Agent"] == USER_AGENT


async def test_status_patch_is_a_merge_patch_and_404_means_gone(server: tuple[Server, str]) -> None:
    state, url = server
    api, _ = _api(url, ["token-1"])
    try:
        state.answers.append((200, b'{"metadata": {"resourceVersion": "42"}}'))
        # The new version: how the operator tells its own write from someone else's.
        assert await api.patch_finetunejob_status("ns", "ftj", {"phase": "Running"}) == "42"
        state.answers.append((404, b"{}"))
        with pytest.raises(NotFound):
            await api.patch_finetunejob_status("ns", "ftj", {"phase": "Running"})
        state.answers.append((404, b"{}"))
        await api.patch_job("ns", "ftj-train", {"spec": {"suspend": True}})  # gone: nothing to suspend
        state.answers.append((500, b"boom"))
        with pytest.raises(ApiError, match="HTTP 500: boom"):
            await api.patch_job("ns", "ftj-train", {"spec": {"suspend": True}})
    finally:
        await api.close()
    status = state.requests[0]
    assert (status["method"], status["path"]) == (
        "PATCH",
        "/apis/kubetune.io/v1alpha1/namespaces/ns/finetunejobs/ftj/status",
    )
    assert status["body"] == {"status": {"phase": "Running"}}
    assert status["headers"]["Content-Type"] == MERGE_PATCH
    assert state.requests[2]["path"] == "/apis/batch/v1/namespaces/ns/jobs/ftj-train"
    assert state.requests[2]["headers"]["Content-Type"] == MERGE_PATCH


async def test_pod_log_tail(server: tuple[Server, str]) -> None:
    state, url = server
    api, _ = _api(url, ["token-1"])
    try:
        state.answers.append((200, b"line 1\nline 2\n"))
        assert await api.read_pod_log("ns", "pod-1", "trainer", 200, 4096) == "line 1\nline 2\n"
        state.answers.append((400, b'{"message": "container is waiting to start"}'))
        assert await api.read_pod_log("ns", "pod-1", "trainer", 200, 4096) == ""
    finally:
        await api.close()
    sent = state.requests[0]
    assert (sent["method"], sent["path"]) == ("GET", "/api/v1/namespaces/ns/pods/pod-1/log")
    assert sent["query"] == {"container": "trainer", "tailLines": "200", "limitBytes": "4096"}


async def test_a_rotated_token_logs_in_again_once(server: tuple[Server, str]) -> None:
    state, url = server
    api, logins = _api(url, ["token-1", "token-2", "token-3"])
    try:
        assert await api.patch_finetunejob_status("ns", "ftj", {"phase": "Pending"})
        state.valid_token = "token-2"  # the service-account token was rotated
        assert await api.patch_finetunejob_status("ns", "ftj", {"phase": "Running"})
        assert logins == ["token-1", "token-2"]
        assert [r["headers"]["Authorization"] for r in state.requests] == [
            "Bearer token-1",
            "Bearer token-1",
            "Bearer token-2",
        ]
        # Still refused after logging in again: an error, not a loop.
        state.valid_token = "nobody's"
        with pytest.raises(ApiError, match="HTTP 401"):
            await api.patch_finetunejob_status("ns", "ftj", {"phase": "Running"})
        assert logins == ["token-1", "token-2", "token-3"]
    finally:
        await api.close()


async def test_concurrent_refusals_log_in_again_once(server: tuple[Server, str]) -> None:
    state, url = server
    api, logins = _api(url, ["token-1", "token-2", "token-3"])
    try:
        assert await api.patch_finetunejob_status("ns", "ftj", {"phase": "Pending"})
        state.valid_token = "token-2"
        # Three calls in flight on the old session: one new login, and none is cut off.
        results = await asyncio.gather(*(api.patch_finetunejob_status("ns", f"ftj-{i}", {}) for i in range(3)))
        assert results == ["1", "1", "1"]
        assert logins == ["token-1", "token-2"]
    finally:
        await api.close()


async def test_job_reads_deletes_and_refusals_say_whether_to_retry(server: tuple[Server, str]) -> None:
    state, url = server
    api, _ = _api(url, ["token-1"])
    try:
        state.answers.append((200, b'{"metadata": {"name": "x-train", "uid": "u1"}}'))
        assert (await api.get_job("ns", "x-train"))["metadata"]["uid"] == "u1"  # type: ignore[index]
        state.answers.append((404, b"{}"))
        assert await api.get_job("ns", "x-train") is None
        await api.delete_job("ns", "x-train")
        state.answers.append((404, b"{}"))
        await api.delete_job("ns", "x-train")  # gone already: fine
        for code, retryable in ((403, False), (422, False), (429, True), (503, True)):
            state.answers.append((code, b'{"message": "exceeded quota: gpus"}'))
            with pytest.raises(ApiError) as raised:
                await api.create_job("ns", {"metadata": {"name": "x-train"}})
            assert raised.value.retryable is retryable and raised.value.detail == "exceeded quota: gpus"
        with pytest.raises(ValueError):  # NaN is not JSON: refused before anything is sent
            await api.patch_finetunejob_status("ns", "ftj", {"progress": {"loss": float("nan")}})
    finally:
        await api.close()
    delete = state.requests[2]
    assert (delete["method"], delete["path"]) == ("DELETE", "/apis/batch/v1/namespaces/ns/jobs/x-train")
    assert delete["body"]["propagationPolicy"] == "Background"


async def test_kueue_workloads_by_job_uid(server: tuple[Server, str]) -> None:
    state, url = server
    api, _ = _api(url, ["token-1"])
    try:
        state.answers.append((200, b'{"items": [{"metadata": {"name": "job-x-1"}, "spec": {"active": true}}]}'))
        assert [w["metadata"]["name"] for w in await api.list_workloads("ns", "u1")] == ["job-x-1"]
        state.answers.append((404, b"{}"))
        assert await api.list_workloads("ns", "u1") == []  # Kueue is not installed
        await api.patch_workload("ns", "job-x-1", {"spec": {"active": False}})
    finally:
        await api.close()
    listing, _, patch = state.requests
    assert listing["path"] == "/apis/kueue.x-k8s.io/v1beta1/namespaces/ns/workloads"
    assert listing["query"] == {"labelSelector": "kueue.x-k8s.io/job-uid=u1"}
    assert (patch["method"], patch["path"], patch["body"]) == (
        "PATCH",
        "/apis/kueue.x-k8s.io/v1beta1/namespaces/ns/workloads/job-x-1",
        {"spec": {"active": False}},
    )
