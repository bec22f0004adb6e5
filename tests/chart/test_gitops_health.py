"""Health of FineTuneJobs as GitOps tools judge it, on statuses the operator builds.

* Argo CD: the Lua health check shipped in charts/kubetune/docs/, run by a real Lua 5.4
  interpreter in a sandbox like Argo CD's (no io, os, require).
* Flux: kstatus' generic rules (no configuration), which Flux's health checks use.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import CHART, REPO, find_tool
from health_samples import SAMPLES

LUA_SCRIPT = CHART / "docs" / "argocd-health-finetunejob.lua"
ARGOCD_CM = REPO / "examples" / "gitops" / "argocd-cm-health.yaml"
HEALTH_KEY = "resource.customizations.health.kubetune.io_FineTuneJob"


def to_lua(value: Any) -> str:
    """A Lua literal for a JSON-like value (null -> nil, as Argo CD converts objects)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        assert math.isfinite(value)
        return repr(value)
    if isinstance(value, str):
        return _lua_string(value)
    if isinstance(value, list):
        return "{" + ", ".join(to_lua(v) for v in value) + "}"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"[{_lua_string(str(k))}] = {to_lua(v)}" for k, v in value.items() if v is not None) + "}"
        )
    raise TypeError(type(value))


def _lua_string(text: str) -> str:
    return '"' + "".join(f"\\{byte}" for byte in text.encode()) + '"'


def run_health(objects: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Run the health check on each object; name -> (status, message)."""
    lines = [f"local script = {_lua_string(LUA_SCRIPT.read_text())}", "local samples = {}"]
    for name, obj in objects.items():
        lines.append(f"samples[{_lua_string(name)}] = {to_lua(obj)}")
    lines.append(
        """
for name, obj in pairs(samples) do
  -- Argo CD's sandbox: the object as the global `obj`, only safe libraries.
  local env = {obj = obj, ipairs = ipairs, pairs = pairs, tostring = tostring, tonumber = tonumber,
               type = type, string = string, table = table, math = math, next = next, select = select}
  local chunk = assert(load(script, "health.lua", "t", env))
  local hs = chunk()
  print(name .. "\\t" .. hs.status .. "\\t" .. (hs.message or ""))
end
"""
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write("\n".join(lines))
    proc = subprocess.run([find_tool("lua5.4"), handle.name], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    out = {}
    for line in proc.stdout.splitlines():
        name, status, message = line.split("\t", 2)
        out[name] = (status, message)
    assert set(out) == set(objects)
    return out


def kstatus(obj: dict[str, Any]) -> str:
    """kstatus' generic status for a custom resource (sigs.k8s.io/cli-utils/pkg/kstatus)."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "Terminating"
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if generation is not None and observed is not None and observed != generation:
        return "InProgress"
    for condition in status.get("conditions") or []:
        if condition["type"] == "Reconciling" and condition["status"] == "True":
            return "InProgress"
        if condition["type"] == "Stalled" and condition["status"] == "True":
            return "Failed"
    return "Current"


@pytest.fixture(scope="module")
def health() -> dict[str, tuple[str, str]]:
    return run_health({name: sample[0] for name, sample in SAMPLES.items()})


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_argocd_health(name: str, health: dict[str, tuple[str, str]]) -> None:
    obj, expected, _, phase = SAMPLES[name]
    assert (obj.get("status") or {}).get("phase") == phase
    status, message = health[name]
    assert status == expected, message
    assert message


def test_argocd_messages_say_why(health: dict[str, tuple[str, str]]) -> None:
    assert "step 30/120" in health["running"][1]
    assert "pvc://models/sentiment" in health["succeeded"][1] or "/mnt/pvc/models/sentiment" in health["succeeded"][1]
    assert "BackoffLimitExceeded" in health["failed-backoff"][1]
    assert "InvalidSpec" in health["invalid-spec"][1]
    assert "ImagePull" in health["image-pull-error"][1]
    assert "generation 2" in health["stale-after-spec-change"][1]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_flux_kstatus(name: str) -> None:
    obj, _, expected, _ = SAMPLES[name]
    assert kstatus(obj) == expected


def test_status_is_kstatus_shaped() -> None:
    """observedGeneration and conditions with the kstatus types, on every status written."""
    for name, (obj, *_rest) in SAMPLES.items():
        status = obj.get("status")
        if status is None:
            continue
        assert status["observedGeneration"] >= 1, name
        types = {c["type"] for c in status["conditions"]}
        assert {"Ready", "Reconciling", "Stalled"} <= types, name
        for condition in status["conditions"]:
            assert condition["status"] in ("True", "False", "Unknown")
            assert condition["reason"][0].isupper() and " " not in condition["reason"]
            assert condition["lastTransitionTime"] and condition["observedGeneration"] == status["observedGeneration"]


def test_argocd_configmap_example_carries_the_script() -> None:
    """examples/gitops/argocd-cm-health.yaml is what docs/gitops.md tells you to apply."""
    docs = [d for d in yaml.safe_load_all(ARGOCD_CM.read_text()) if d]
    [cm] = [d for d in docs if d["kind"] == "ConfigMap"]
    assert cm["metadata"]["name"] == "argocd-cm"
    assert cm["data"][HEALTH_KEY] == LUA_SCRIPT.read_text()


def test_script_in_docs_is_the_shipped_one() -> None:
    text = (REPO / "docs" / "gitops.md").read_text()
    assert Path(LUA_SCRIPT).name in text and "argocd-cm-health.yaml" in text
