"""Flux's `healthCheckExprs` for FineTuneJob, evaluated on statuses the operator builds.

The expressions come from examples/gitops/flux-kustomization.yaml and run in CEL
(cel-expr-python, the C++ implementation) the way Flux's StatusEvaluator runs them
(fluxcd/pkg runtime/cel): parsed, not type-checked, optional syntax enabled, the
object's top-level fields as variables; a status.observedGeneration that differs from
metadata.generation is InProgress before any expression runs; then inProgress, failed,
current in that order, and InProgress when none is true. An evaluation error (an
expression naming a variable the object lacks) makes Flux report the error and keep
waiting, never Current.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from cel_expr_python import cel
from cel_expr_python.ext.ext_optional import ExtOptional
from chartlib import REPO
from health_samples import SAMPLES

FLUX_KUSTOMIZATION = REPO / "examples" / "gitops" / "flux-kustomization.yaml"
ENV = cel.NewEnv(extensions=[ExtOptional()])
ERROR = "Error"

# Flux's verdict for each sample: Succeeded and (as docs/gitops.md says, like kstatus)
# Suspended are Current; Failed, or stuck (Stalled), is Failed; the rest InProgress; no
# status yet is an evaluation error, so Flux waits instead of calling it Current.
EXPECTED = {
    "no-status-yet": ERROR,
    "pending-no-job": "InProgress",
    "pending-pod-scheduling": "InProgress",
    "unschedulable": "InProgress",
    "queued-in-kueue": "InProgress",
    "running": "InProgress",
    "retrying": "InProgress",
    "image-pull-error": "Failed",
    "succeeded": "Current",
    "failed-backoff": "Failed",
    "invalid-spec": "Failed",
    "suspended": "Current",
    "stale-after-spec-change": "InProgress",
}


def health_check_exprs() -> dict[str, str]:
    for doc in yaml.safe_load_all(FLUX_KUSTOMIZATION.read_text()):
        if doc and doc.get("kind") == "Kustomization":
            for entry in doc["spec"].get("healthCheckExprs", []):
                if entry["apiVersion"] == "kubetune.io/v1alpha1" and entry["kind"] == "FineTuneJob":
                    return {key: entry[key] for key in ("inProgress", "failed", "current") if key in entry}
    raise AssertionError(f"{FLUX_KUSTOMIZATION}: no healthCheckExprs for FineTuneJob")


@pytest.fixture(scope="module")
def programs() -> dict[str, Any]:
    exprs = health_check_exprs()
    assert "current" in exprs, "Flux requires the current expression"
    # Flux parses without a type check (CRDs differ in their top-level fields).
    return {key: ENV.compile(expr, disable_check=True) for key, expr in exprs.items()}


def flux_status(obj: dict[str, Any], programs: dict[str, Any]) -> str:
    observed = obj.get("status", {}).get("observedGeneration")
    generation = obj.get("metadata", {}).get("generation")
    if observed is not None and generation is not None and observed != generation:
        return "InProgress"
    for key, verdict in (("inProgress", "InProgress"), ("failed", "Failed"), ("current", "Current")):
        if key not in programs:
            continue
        result = programs[key].eval(data=obj)
        if result.type() != cel.Type.BOOL:
            return ERROR
        if result.value():
            return verdict
    return "InProgress"


def test_every_sample_has_an_expectation() -> None:
    assert set(EXPECTED) == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_flux_health(name: str, programs: dict[str, Any]) -> None:
    obj, _argocd, _kstatus, phase = SAMPLES[name]
    assert obj.get("status", {}).get("phase") == phase
    assert flux_status(obj, programs) == EXPECTED[name]


def test_expressions_type_check_on_a_typed_object() -> None:
    # Flux does not type-check, so a typo in a field name would only show as a health
    # check that never matches. Checking against declared variables catches misuse of
    # functions and operators (fields of dyn values stay unchecked).
    env = cel.NewEnv(variables={"status": cel.Type.DYN, "metadata": cel.Type.DYN}, extensions=[ExtOptional()])
    for key, expr in health_check_exprs().items():
        program = env.compile(expr)
        assert program.return_type() == cel.Type.BOOL, key
