"""Build the operator image without a Docker engine and start its entrypoint.

Runs scripts/build_operator_image.sh (buildah with vfs storage and chroot isolation, a
debootstrapped Debian base, wheels from the host): the script fails unless the image
prints the package version, its entrypoint starts the operator, it runs as non-root
and has no torch. On two cores: 1.5-3.5 minutes with the base image cached (it varies with
the machine's load), plus 1-2 minutes to debootstrap the base on a fresh machine.
"""

from __future__ import annotations

import subprocess
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.image_build
def test_build_operator_image_without_docker() -> None:
    version = installed_version("kubetune")
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "build_operator_image.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert f"version:    kubetune {version}" in output
    assert '["kopf", "run", "-m", "kubetune_operator"]' in output
    assert "torch installed: False" in output
    assert "started:    " in output and "kopf." in output.split("started:    ", 1)[1]
