"""A real OCI registry for the oci:// tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1.

Plain HTTP (the specs set output.insecureRegistry) with htpasswd basic auth, filesystem
storage in a temporary folder, a free port. scripts/install_tools.sh installs it (CI runs
that); a machine without it fails here with the command to run, it is never skipped.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

BINARY = "docker-registry"
INSTALL = "apt-get install -y docker-registry (or: bash scripts/install_tools.sh)"
USER, PASSWORD = "kubetune", "push-secret"


@dataclass(frozen=True)
class Registry:
    """A running registry: its host:port and the one account it knows."""

    host: str
    user: str = USER
    password: str = PASSWORD

    def uri(self, repository: str, tag: str) -> str:
        return f"oci://{self.host}/{repository}:{tag}"

    def docker_config(self, user: str | None = None, password: str | None = None) -> str:
        """A .dockerconfigjson for this registry (what spec.registrySecret holds)."""
        auth = base64.b64encode(f"{user or self.user}:{password or self.password}".encode()).decode()
        return json.dumps({"auths": {self.host: {"auth": auth}}})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _htpasswd(user: str, password: str) -> str:
    import bcrypt

    # Cost 4, the lowest bcrypt takes: a test registry checks the password on every request.
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"


@contextmanager
def registry_server(root: Path) -> Iterator[Registry]:
    """Start docker-registry with its storage and config under `root`; stop it after."""
    binary = shutil.which(BINARY)
    if binary is None:
        pytest.fail(f"{BINARY} is not installed; the oci:// tests need a real registry: {INSTALL}")
    port = _free_port()
    (root / "htpasswd").write_text(_htpasswd(USER, PASSWORD))
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
        f"auth: {{htpasswd: {{realm: kubetune-tests, path: {root / 'htpasswd'}}}}}\n"
    )
    log = (root / "registry.log").open("w")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            except urllib.error.HTTPError as answer:
                if answer.code == 401:  # up, and asking for credentials as configured
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{BINARY} did not start: {(root / 'registry.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield Registry(host=f"127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
