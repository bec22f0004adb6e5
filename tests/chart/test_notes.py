"""NOTES.txt: the next steps after `helm install`, for the mode that was installed."""

from __future__ import annotations

import yaml
from chartlib import REPO, VALUE_SETS, render_notes


def _notes(name: str) -> str:
    out = render_notes(VALUE_SETS[name])
    assert "NOTES:" in out
    return out.split("NOTES:", 1)[1]


def test_default_notes() -> None:
    notes = _notes("defaults")
    assert "watches FineTuneJobs in all namespaces" in notes
    assert "rollout status deployment/kt-kubetune" in notes
    assert "examples/text-classification.yaml" in notes
    assert "kubectl get ftj -n default -w" in notes
    example = yaml.safe_load((REPO / "examples" / "text-classification.yaml").read_text())
    assert f"kubectl describe ftj -n default {example['metadata']['name']}" in notes
    assert "No defaultOutput is set" in notes
    assert "Service kt-kubetune-metrics, port 8080" in notes


def test_namespaced_ha_notes() -> None:
    notes = _notes("ha-namespaced")
    assert "the namespaces ml" in notes
    assert "2 replicas, one active through Kopf peering" in notes
    assert "kubectl get ftj -n ml -w" in notes


def test_notes_with_everything() -> None:
    notes = _notes("everything")
    assert "as amd.com/gpu." in notes and "taint" not in notes
    assert "pvc://models/runs/NAMESPACE/NAME" in notes
    assert "ServiceMonitor tune" in notes
