"""Helpers for the chart tests: find helm, render the chart, pick objects out of it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kubetune"
TOOLS_BIN = REPO / ".tools" / "bin"
RELEASE = "kt"
NAMESPACE = "kubetune-system"

# Value sets every whole-chart test renders: the defaults and the non-default modes.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watch": {"clusterWide": False, "namespaces": ["team-a", "team-b"]}},
    "namespaced-release-ns": {"watch": {"clusterWide": False}},
    "ha-clusterwide": {
        "replicaCount": 3,
        "peering": {"enabled": True},
        "podDisruptionBudget": {"enabled": True},
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "kubetune"}},
            }
        ],
    },
    "ha-namespaced": {
        "replicaCount": 2,
        "peering": {"enabled": True, "name": "ml-peering"},
        "watch": {"clusterWide": False, "namespaces": ["ml"]},
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
    },
    "everything": {
        "fullnameOverride": "tune",
        "commonLabels": {"team": "ml-platform"},
        "crds": {"keep": False},
        "image": {"repository": "registry.example.com/kubetune/operator", "digest": "sha256:" + "a" * 64},
        "imagePullSecrets": [{"name": "regcred"}],
        "logFormat": "json",
        "logLevel": "debug",
        "extraArgs": ["--log-refkey=kubetune"],
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
        "trainer": {
            "image": {"repository": "registry.example.com/kubetune/trainer", "tag": "0.1.0-cu128"},
            "gpuResource": "amd.com/gpu",
            "gpuTolerationKey": "",
            "maxGpusPerNode": 4,
            "progressIntervalSeconds": 10,
        },
        "defaultOutput": "pvc://models/runs",
        "metrics": {
            "port": 9090,
            "service": {"annotations": {"prometheus.io/scrape": "true"}},
            "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}, "interval": "30s"},
        },
        "healthPort": 9091,
        "readinessProbe": {"enabled": False},
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
        "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}],
        "serviceAccount": {"name": "kubetune-operator", "annotations": {"iam.example.com/role": "x"}},
        "podAnnotations": {"example.com/a": "b"},
    },
    "no-crds-no-metrics-service": {"crds": {"enabled": False}, "metrics": {"service": {"enabled": False}}},
}


# The chart-testing (ct) values files under ci/, e.g. the GPU cluster values docs/install.md shows.
for _path in sorted((CHART / "ci").glob("*-values.yaml")):
    VALUE_SETS[f"ci/{_path.name}"] = yaml.safe_load(_path.read_text())


class HelmError(RuntimeError):
    """helm exited non-zero; the message is its stderr."""


def find_tool(name: str) -> str:
    """A tool from .tools/bin or PATH; fails (never skips) when it is not installed."""
    local = TOOLS_BIN / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} not found in .tools/bin or PATH: run scripts/install_tools.sh")
    return found


_HELM_HOME = tempfile.mkdtemp(prefix="kubetune-helm-")


def helm(*args: str) -> str:
    """Run helm offline with private cache/config/data folders; its stdout."""
    env = dict(os.environ)
    for key in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[key] = str(Path(_HELM_HOME) / key.lower())
    env["KUBECONFIG"] = str(Path(_HELM_HOME) / "no-cluster")  # never talk to a real cluster
    proc = subprocess.run([find_tool("helm"), *args], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise HelmError(proc.stderr.strip() or proc.stdout.strip())
    return proc.stdout


def values_file(values: Mapping[str, Any]) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False, prefix="values-") as handle:
        json.dump(values, handle)
    return handle.name


def render(values: Mapping[str, Any] | None = None, *extra: str) -> list[dict[str, Any]]:
    """`helm template` the chart (hooks included) into a list of objects."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, *extra]
    if values:
        args += ["--values", values_file(values)]
    return [doc for doc in yaml.safe_load_all(helm(*args)) if doc]


def render_notes(values: Mapping[str, Any] | None = None) -> str:
    args = ["install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client"]
    if values:
        args += ["--values", values_file(values)]
    return helm(*args)


def kinds(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj.get("kind") == kind]


def one(objects: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = kinds(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(objects: Iterable[dict[str, Any]]) -> dict[str, Any]:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["operator"]
    return pod["containers"][0]


def env_of(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
