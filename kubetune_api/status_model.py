"""The shape of FineTuneJob `status`, for the CRD schema and for `kubectl explain`.

The operator writes plain dicts (see `kubetune_operator.status`); a test checks that
they validate against these models, so the schema and the writer cannot drift. The
client (`kubetune_api.client`) reads the status back through the same models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kubetune_api.outcomes import Phase
from kubetune_api.spec_base import SpecModel


class Condition(SpecModel):
    """One aspect of the run's state, following Kubernetes API conventions."""

    type: str = Field(max_length=64, description="Ready, Reconciling, Stalled, Suspended or Failed.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(max_length=128, description="CamelCase reason for the last transition.")
    message: str = Field(default="", max_length=4096, description="Human-readable details.")
    last_transition_time: str = Field(
        description="When the condition last changed status (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the condition was computed for."
    )


class ProgressStatus(SpecModel):
    """The newest training progress the trainer reported."""

    step: int = Field(ge=0, description="Optimizer steps done.")
    max_steps: int = Field(ge=0, description="Optimizer steps the run will take in all.")
    percent: int = Field(ge=0, le=100, description="step / maxSteps in percent.")
    epoch: float | None = Field(default=None, description="Fractional epoch reached.")
    loss: float | None = Field(default=None, description="Training loss at the last logging step.")
    learning_rate: float | None = Field(default=None, description="Current learning rate.")
    eval: dict[str, float] = Field(
        default_factory=dict, description="Latest evaluation metrics, keys without the eval_ prefix."
    )
    eta: str | None = Field(
        default=None,
        description="Estimated completion time (RFC 3339), from the pace so far.",
        json_schema_extra={"format": "date-time"},
    )
    update_time: str | None = Field(
        default=None,
        description="When this progress was read from the trainer (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )


class ArtifactStatus(SpecModel):
    """Where the trained model was saved."""

    uri: str = Field(
        description="Location of the saved model or adapter, as given in spec.output (pvc:// stays pvc://)."
    )
    kind: Literal["full", "adapter"] = Field(description="full: a whole model; adapter: a LoRA adapter only.")
    merged_uri: str | None = Field(
        default=None, description="Location of the base model with the adapter merged in, when saved."
    )


class FineTuneJobStatus(SpecModel):
    """What the operator observed; written only by the operator."""

    phase: Phase | None = Field(default=None, description="Pending, Running, Succeeded, Failed or Suspended.")
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="Ready, Reconciling, Stalled, Suspended and Failed, as kstatus reads them.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this status was computed for."
    )
    reason: str | None = Field(default=None, description="Why the run is failed or stuck, CamelCase.")
    message: str | None = Field(default=None, description="What went wrong, in one line.")
    job_name: str | None = Field(default=None, description="The batch/v1 Job running this FineTuneJob.")
    pod_name: str | None = Field(
        default=None,
        description=(
            "The newest trainer pod; in a multi-node run the newest pod with completion index 0 "
            "(it holds global rank 0: progress, the model and the result come from it)."
        ),
    )
    failed_index: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Multi-node runs: the completion index (pod number, 0 to nodes-1) of the pod whose "
            "failure status.reason and status.message describe."
        ),
    )
    attempts: int | None = Field(
        default=None, ge=0, description="Attempts started so far (one trainer pod per node each)."
    )
    start_time: str | None = Field(
        default=None, description="When training started (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    completion_time: str | None = Field(
        default=None, description="When the run ended (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    progress: ProgressStatus | None = Field(default=None, description="Training progress.")
    artifact: ArtifactStatus | None = Field(default=None, description="The trained model, once saved.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Final metrics the trainer reported.")
