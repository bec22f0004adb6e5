"""The real pods/exec transport (`kubernetes_exec_stdout`) against a small websocket server
that speaks the API server's channel protocol (v4.channel.k8s.io): binary stdout arrives
byte for byte, the token is sent, and a failed command is an error carrying its stderr.
kmock has no exec; this server stands in for that one endpoint only."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from kubetune_api.fetch_pvc import FetchError, kubernetes_exec_stdout
from kubetune_api.kubeconfig import connect
from tests.operator.conftest import write_kubeconfig

PAYLOAD = bytes(range(256)) * 300  # every byte value: no text decoding on the way
SUCCESS = {"metadata": {}, "status": "Success"}
FAILURE = {
    "metadata": {},
    "status": "Failure",
    "message": "command terminated with non-zero exit code: error executing command [sh -c ...], exit code 2",
    "reason": "NonZeroExitCode",
    "details": {"causes": [{"reason": "ExitCode", "message": "2"}]},
}


class ExecServer:
    """One exec endpoint: records each request, answers as `self.reply` says."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.reply: tuple[bytes, bytes, dict[str, Any]] = (PAYLOAD, b"", SUCCESS)
        self.url = ""

    async def exec(self, request: web.Request) -> web.WebSocketResponse:
        self.requests.append(
            {
                "path": request.path,
                "command": request.query.getall("command"),
                "container": request.query.get("container"),
                "authorization": request.headers.get("Authorization"),
            }
        )
        socket = web.WebSocketResponse(protocols=("v4.channel.k8s.io",))
        await socket.prepare(request)
        stdout, stderr, status = self.reply
        for start in range(0, len(stdout), 16384):
            await socket.send_bytes(b"\x01" + stdout[start : start + 16384])
        if stderr:
            await socket.send_bytes(b"\x02" + stderr)
        await socket.send_bytes(b"\x03" + json.dumps(status).encode())
        await socket.close()
        async for message in socket:  # drain until the client has gone
            if message.type == WSMsgType.CLOSE:
                break
        return socket


@pytest.fixture
def exec_server() -> Iterator[ExecServer]:
    server = ExecServer()
    ready = threading.Event()
    stop: list[Any] = []

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/{namespace}/pods/{pod}/exec", server.exec)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        server.url = f"http://127.0.0.1:{port}"
        done = asyncio.Event()
        stop.append((asyncio.get_running_loop(), done))
        ready.set()
        await done.wait()
        await runner.cleanup()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield server
    loop, done = stop[0]
    loop.call_soon_threadsafe(done.set)
    thread.join(10)


def test_stdout_arrives_byte_for_byte(exec_server: ExecServer, tmp_path: Path) -> None:
    connection = connect(kubeconfig=str(write_kubeconfig(tmp_path / "config", exec_server.url)))
    command = ["tar", "-cf", "-", "-C", "/claim/out", "."]
    received = b"".join(kubernetes_exec_stdout(connection, "ml", "sentiment-fetch-x1", "fetch", command))
    assert received == PAYLOAD
    [request] = exec_server.requests
    assert request == {
        "path": "/api/v1/namespaces/ml/pods/sentiment-fetch-x1/exec",
        "command": command,
        "container": "fetch",
        "authorization": "Bearer test-token",
    }


def test_a_failed_command_is_an_error_with_its_stderr(exec_server: ExecServer, tmp_path: Path) -> None:
    exec_server.reply = (b"", b"sh: cd: can't cd to /claim/nothing: No such file or directory\n", FAILURE)
    connection = connect(kubeconfig=str(write_kubeconfig(tmp_path / "config", exec_server.url)))
    with pytest.raises(FetchError, match="sh -c in pod p failed: sh: cd: can't cd to /claim/nothing"):
        list(kubernetes_exec_stdout(connection, "ml", "p", "fetch", ["sh", "-c", "cd /claim/nothing"]))
