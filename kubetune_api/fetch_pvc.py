"""Copying an artifact off a PersistentVolumeClaim: a short-lived pod mounts the claim read-
only, `tar` in it writes the artifact to stdout through `pods/exec`, and the pod is deleted
afterwards, also when the copy fails.

The transport is one small function (`ExecStdout`: run a command in a pod's container,
yield its stdout): the real one speaks the exec websocket through the `kubernetes`
package, and tests pass a fake (the API emulator cannot exec). Everything around it (the
pod, waiting for it, extracting safely, cleaning up) is plain API calls and tested.
"""

from __future__ import annotations

import contextlib
import json
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from kubetune_api.kube_http import KubeHttp, NotFoundError, api_path
from kubetune_api.kubeconfig import Connection
from kubetune_api.output_layout import wanted
from kubetune_api.resource import API_VERSION_STRING, KIND
from kubetune_api.run_status import RunStatus
from kubetune_api.trainer_pod import LABEL_MANAGED_BY, LABEL_NAME, TRAINER_UID, dns_label, label_value
from kubetune_api.uris import PVC_SCHEME, check_pvc_uri

# Any image with sh, find and tar; busybox is small and pulled in seconds.
DEFAULT_FETCH_IMAGE = "busybox:1.36"
FETCH_APP = "kubetune-fetch"
# Not "kubetune": the operator watches pods managed by kubetune as trainer pods.
FETCH_MANAGER = "kubetune-client"
LABEL_FETCH_FOR = "kubetune.io/fetch-for"
CONTAINER = "fetch"
MOUNT = "/claim"
# The pod ends itself after this long, should the client die before it deletes it.
POD_LIFETIME_SECONDS = 3600
START_TIMEOUT = 300.0

# (connection, namespace, pod, container, command) -> stdout, chunk by chunk; raises
# FetchError when the command fails.
ExecStdout = Callable[[Connection, str, str, str, list[str]], Iterable[bytes]]


class FetchError(RuntimeError):
    """The artifact could not be copied; the message says why."""


def claim_and_path(uri: str) -> tuple[str, str]:
    """("CLAIM", "PATH") of pvc://CLAIM/PATH (PATH "" for the claim's root)."""
    check_pvc_uri(uri)
    claim, _, path = uri.removeprefix(f"{PVC_SCHEME}://").partition("/")
    return claim, path.strip("/")


def fetch_pod(run: RunStatus, claim: str, image: str) -> dict[str, Any]:
    """A pod that mounts `claim` read-only and sleeps until it is deleted (or its lifetime ends).

    Owned by the FineTuneJob, so deleting the run also removes a pod a crashed client left.
    Restricted Pod Security: non-root, no privilege escalation, no capabilities, no token.
    """
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            # 57 + the API server's 5 random characters: a name that is also a valid hostname.
            "generateName": dns_label(run.name, "-fetch-", limit=57, dots=True),
            "namespace": run.namespace,
            "labels": {LABEL_NAME: FETCH_APP, LABEL_MANAGED_BY: FETCH_MANAGER, LABEL_FETCH_FOR: label_value(run.name)},
            "ownerReferences": [{"apiVersion": API_VERSION_STRING, "kind": KIND, "name": run.name, "uid": run.uid}],
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "activeDeadlineSeconds": POD_LIFETIME_SECONDS,
            "terminationGracePeriodSeconds": 0,
            "securityContext": {
                "runAsNonRoot": True,
                # As the trainer that wrote the files: the owner reads them whatever their mode.
                "runAsUser": TRAINER_UID,
                "runAsGroup": TRAINER_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": CONTAINER,
                    "image": image,
                    "command": ["sleep", str(POD_LIFETIME_SECONDS)],
                    "volumeMounts": [{"name": "claim", "mountPath": MOUNT, "readOnly": True}],
                    "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
            "volumes": [{"name": "claim", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}],
        },
    }


def tar_command(path: str, checkpoints: bool) -> list[str]:
    """The command that writes the artifact folder as a tar stream to stdout. Without
    checkpoints, they are left out in the pod: they can be many times the model's size."""
    folder = f"{MOUNT}/{path}".rstrip("/")
    if checkpoints:
        return ["tar", "-cf", "-", "-C", folder, "."]
    script = 'cd "$1" && find . -mindepth 1 -maxdepth 1 ! -name "checkpoint-[0-9]*" -exec tar -cf - {} +'
    return ["sh", "-c", script, "fetch", folder]


def wait_running(http: KubeHttp, namespace: str, name: str, timeout: float, interval: float) -> None:
    """Return once the pod runs; FetchError saying why when it does not start in time."""
    path = api_path("namespaces", namespace, "pods", name)
    deadline = time.monotonic() + timeout
    why = "it is Pending"
    while time.monotonic() < deadline:
        pod = http.request("GET", path)
        status = pod.get("status") or {}
        phase = status.get("phase")
        if phase == "Running":
            return
        if phase in ("Succeeded", "Failed"):
            raise FetchError(f"fetch pod {name} ended ({phase}) before the copy: {status.get('message', '')}")
        why = _pending_reason(status) or why
        time.sleep(interval)
    raise FetchError(f"fetch pod {name} did not start within {timeout:.0f}s: {why}")


def _pending_reason(status: dict[str, Any]) -> str | None:
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            return f"{waiting['reason']}: {waiting.get('message', '')}".rstrip(": ")
    for condition in status.get("conditions") or []:
        if condition.get("status") == "False" and condition.get("message"):
            return str(condition["message"])
    return None


class _ChunkReader:
    """A file-like object over an iterator of byte chunks, for tarfile's stream mode."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def extract(chunks: Iterable[bytes], destination: Path, checkpoints: bool) -> list[Path]:
    """Unpack a tar stream into `destination`: plain files and folders only, none outside it."""
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    written: list[Path] = []
    # ignore_zeros: find -exec ... + may run tar more than once, concatenating archives.
    stream: IO[bytes] = _ChunkReader(chunks)  # type: ignore[assignment]
    with tarfile.open(fileobj=stream, mode="r|", ignore_zeros=True) as archive:
        for member in archive:
            relative = PurePosixPath(member.name.removeprefix("./"))
            if member.name in (".", "./") or not relative.parts:
                continue
            target = (root / relative).resolve()
            if relative.is_absolute() or ".." in relative.parts or not target.is_relative_to(root):
                raise FetchError(f"the archive names {member.name!r}, outside the destination")
            if not (member.isfile() or member.isdir()) or not wanted(relative, checkpoints):
                continue  # links and devices have no place in a model folder
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None  # a regular file always has content
            with target.open("wb") as sink:
                while block := source.read(1 << 20):
                    sink.write(block)
            written.append(target)
    if not written:
        raise FetchError("the artifact folder holds no files")
    return written


def fetch_from_claim(
    http: KubeHttp,
    exec_stdout: ExecStdout,
    run: RunStatus,
    uri: str,
    destination: Path,
    *,
    image: str = DEFAULT_FETCH_IMAGE,
    checkpoints: bool = False,
    start_timeout: float = START_TIMEOUT,
    interval: float = 1.0,
) -> list[Path]:
    """Copy the artifact at pvc://CLAIM/PATH into `destination` through a fetch pod."""
    claim, path = claim_and_path(uri)
    created = http.request("POST", api_path("namespaces", run.namespace, "pods"), body=fetch_pod(run, claim, image))
    name = created["metadata"]["name"]
    try:
        wait_running(http, run.namespace, name, start_timeout, interval)
        output = exec_stdout(http.connection, run.namespace, name, CONTAINER, tar_command(path, checkpoints))
        return extract(output, destination, checkpoints)
    finally:
        with contextlib.suppress(NotFoundError):  # gone already: what deleting it was for
            http.request("DELETE", api_path("namespaces", run.namespace, "pods", name), query={"gracePeriodSeconds": 0})


def kubernetes_exec_stdout(
    connection: Connection, namespace: str, pod: str, container: str, command: list[str]
) -> Iterator[bytes]:
    """The real transport: pods/exec over the `kubernetes` package's websocket client, binary
    stdout. FetchError with the command's stderr when it fails."""
    from kubernetes import client as k8s_client
    from kubernetes.stream import stream

    api = k8s_client.CoreV1Api(k8s_client.ApiClient(connection.configuration))
    socket = stream(
        api.connect_get_namespaced_pod_exec,
        pod,
        namespace,
        container=container,
        command=command,
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        binary=True,
        _preload_content=False,
    )
    errors = b""
    try:
        while socket.is_open():
            socket.update(timeout=1)
            if socket.peek_stdout():
                yield socket.read_stdout()
            if socket.peek_stderr():
                errors += socket.read_stderr()
        yield socket.read_stdout()
        errors += socket.read_stderr()
        outcome = socket.read_channel(3)  # the exec status: a metav1.Status as JSON
    finally:
        socket.close()
    status = json.loads(outcome or b"{}")
    if status.get("status", "Success") != "Success":
        detail = errors.decode(errors="replace").strip() or status.get("message", "")
        raise FetchError(f"{' '.join(command[:2])} in pod {pod} failed: {detail}")
