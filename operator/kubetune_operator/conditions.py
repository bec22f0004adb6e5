"""Status conditions per Kubernetes API conventions, kstatus-compatible (pure).

``status.conditions`` always holds these five types, each with status, a CamelCase
reason, message, lastTransitionTime and observedGeneration:

============ ========== =========== ========= ============ =========
phase        Ready      Reconciling Stalled   Suspended    Failed
============ ========== =========== ========= ============ =========
Pending      False      True*       False*    False        False
Running      False      True        False     False        False
Succeeded    True       False       False     False        False
Failed       False      False       True      False        True
Suspended    False      False       False     True         False
============ ========== =========== ========= ============ =========

(*) Stalled is True while Pending when the run cannot go on without someone acting
(image pull errors, container config errors, a Job the API server refuses or a foreign
Job holding its name); Reconciling is then False: kstatus reads the first True of the
two, and a stalled run is not making progress.

A sixth type, ``SpecChangeIgnored``, is there only while the spec differs from the one the
run was started with (only spec.suspend may change; CEL refuses most other edits, and the
operator notices the rest). A seventh, ``GPUMemoryTooSmall``, is there when the preflight
memory estimate exceeded the largest GPU the run could land on (`kubetune_operator.gpu_fit`);
it stays for the run's life, since the spec it judged cannot change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubetune_api.outcomes import Reason

CONDITION_TYPES = ("Ready", "Reconciling", "Stalled", "Suspended", "Failed")
SPEC_CHANGE_IGNORED = Reason.SPEC_CHANGE_IGNORED
GPU_MEMORY_TOO_SMALL = Reason.GPU_MEMORY_TOO_SMALL
SPEC_CHANGE_MESSAGE = (
    "the spec changed after the run started; only spec.suspend takes effect. To run the new "
    "spec, create it under a new name or with another spec.output.uri (a different spec in this "
    "run's output fails with OutputInUse)"
)

Json = Mapping[str, Any]


def truth_table(phase: str, stalled: bool) -> dict[str, bool]:
    """Each condition type's truth for a phase (the table in the module docstring)."""
    return {
        "Ready": phase == "Succeeded",
        "Reconciling": phase in {"Pending", "Running"} and not stalled,
        "Stalled": phase == "Failed" or stalled,
        "Suspended": phase == "Suspended",
        "Failed": phase == "Failed",
    }


def phase_of(conditions: Sequence[Json]) -> str:
    """The phase the conditions say: Failed, Succeeded, Suspended, Running or Pending."""
    true = {c["type"]: c for c in conditions if c.get("status") == "True"}
    if "Failed" in true:
        return "Failed"
    if "Ready" in true:
        return "Succeeded"
    if "Suspended" in true:
        return "Suspended"
    if "Reconciling" in true and true["Reconciling"].get("reason") == Reason.RUNNING:
        return "Running"
    return "Pending"


def build_conditions(
    phase: str,
    stalled: bool,
    reason: str,
    message: str,
    previous: Sequence[Json],
    generation: int | None,
    now: str,
    spec_change_ignored: bool = False,
    memory_warning: str | None = None,
) -> list[dict[str, Any]]:
    """Conditions for the state; lastTransitionTime kept where a condition did not change."""
    before = {c.get("type"): c for c in previous}
    wanted: list[tuple[str, bool, str, str]] = [
        (kind, truth, reason, message) for kind, truth in truth_table(phase, stalled).items()
    ]
    if spec_change_ignored:
        wanted.append((SPEC_CHANGE_IGNORED, True, SPEC_CHANGE_IGNORED, SPEC_CHANGE_MESSAGE))
    if memory_warning:
        wanted.append((GPU_MEMORY_TOO_SMALL, True, GPU_MEMORY_TOO_SMALL, memory_warning))
    built = []
    for kind, truth, why, text in wanted:
        status = "True" if truth else "False"
        old = before.get(kind)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else None
        condition: dict[str, Any] = {
            "type": kind,
            "status": status,
            "reason": why,
            "message": text,
            "lastTransitionTime": since or now,
        }
        if generation is not None:
            condition["observedGeneration"] = generation
        built.append(condition)
    return built


def current_reason(status: Json | None) -> str | None:
    """The reason of the state a status describes (every standard condition carries it)."""
    for condition in (status or {}).get("conditions") or []:
        if condition.get("type") in CONDITION_TYPES:
            return condition.get("reason")
    return None


def is_true(status: Json | None, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in (status or {}).get("conditions") or [])


def memory_warning_of(status: Json | None) -> str | None:
    """The GPUMemoryTooSmall message a status holds (written when the Job was created)."""
    conditions = (status or {}).get("conditions") or []
    return next((c.get("message") for c in conditions if c.get("type") == GPU_MEMORY_TOO_SMALL), None)
