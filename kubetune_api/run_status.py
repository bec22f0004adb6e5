"""A FineTuneJob as the client sees it: its name and its status, typed.

The status is read with the models the CRD schema is generated from
(`kubetune_api.status_model`), leniently: fields a newer operator writes and this release
does not know are dropped instead of failing the read, as the protocol's readers do.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from kubetune_api.outcomes import EXIT_FAILED, TERMINAL_PHASES, outcome_exit_code
from kubetune_api.status_model import ArtifactStatus, FineTuneJobStatus, ProgressStatus


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (directly, in a list or as an optional), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (list, Union, types.UnionType):
        for argument in get_args(annotation):
            found = _model_in(argument)
            if found is not None:
                return found
    return None


def known_fields(model: type[BaseModel], data: Any) -> Any:
    """`data` without the keys `model` (and the models inside it) does not declare."""
    if isinstance(data, list):
        return [known_fields(model, item) for item in data]
    if not isinstance(data, Mapping):
        return data
    kept: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key in data:
            inner = _model_in(info.annotation)
            kept[key] = data[key] if inner is None else known_fields(inner, data[key])
    return kept


@dataclass(frozen=True)
class RunStatus:
    """One FineTuneJob: which one, and what its status says."""

    name: str
    namespace: str
    uid: str
    created: str
    task: str | None
    base: str | None
    nodes: int  # pods per attempt, one per node rank
    status: FineTuneJobStatus
    insecure_registry: bool = False  # spec.output.insecureRegistry: fetch an oci:// artifact over plain HTTP

    @classmethod
    def from_object(cls, body: Mapping[str, Any]) -> RunStatus:
        meta = body.get("metadata") or {}
        spec = body.get("spec") or {}
        return cls(
            name=str(meta.get("name", "")),
            namespace=str(meta.get("namespace", "")),
            uid=str(meta.get("uid", "")),
            created=str(meta.get("creationTimestamp") or ""),
            task=spec.get("task"),
            base=(spec.get("base") or {}).get("model"),
            nodes=int(spec.get("nodes") or 1),
            status=FineTuneJobStatus.model_validate(known_fields(FineTuneJobStatus, body.get("status") or {})),
            insecure_registry=bool((spec.get("output") or {}).get("insecureRegistry")),
        )

    @property
    def phase(self) -> str | None:
        return self.status.phase

    @property
    def reason(self) -> str | None:
        return self.status.reason

    @property
    def message(self) -> str | None:
        return self.status.message

    @property
    def progress(self) -> ProgressStatus | None:
        return self.status.progress

    @property
    def artifact(self) -> ArtifactStatus | None:
        return self.status.artifact

    @property
    def metrics(self) -> dict[str, float]:
        return self.status.metrics

    @property
    def why(self) -> str:
        """ "REASON: MESSAGE" of the status, as far as it has them ("" for neither)."""
        return ": ".join(part for part in (self.reason, self.message) if part and part != self.phase)

    @property
    def state(self) -> str:
        """The phase, and why when there is a reason: "Failed (OOMKilled: ...)"."""
        phase = self.phase or "Submitted"  # created, not yet seen by the operator
        return f"{phase} ({self.why})" if self.why else phase

    @property
    def finished(self) -> bool:
        """Succeeded or Failed: the status will not change any more."""
        return self.phase in TERMINAL_PHASES

    @property
    def succeeded(self) -> bool:
        return self.phase == "Succeeded"

    @property
    def exit_code(self) -> int | None:
        """0, EXIT_INVALID_CONFIG (the run itself is wrong) or EXIT_FAILED; None until finished."""
        return outcome_exit_code(self.phase, self.reason)


class RunFailed(RuntimeError):
    """A run ended Failed; `run` holds its final status and `exit_code` the code to exit with."""

    def __init__(self, run: RunStatus) -> None:
        self.run = run
        self.exit_code = run.exit_code or EXIT_FAILED
        super().__init__(f"{run.namespace}/{run.name} failed: {run.why or 'Failed'}")
