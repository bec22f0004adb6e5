"""Where a run writes: the `output` part of a training spec.

A persistent location (pvc://, an object store, a local path) holds the model, its
checkpoints and kubetune.json; a registry (oci://) receives the model as an OCI artifact
while the checkpoints live at checkpointUri.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from kubetune_api.spec_base import SpecModel
from kubetune_api.uris import MAX_URI, OCI_SCHEME, OUTPUT_SCHEMES, WORK_SCHEMES, check_scheme, uri_scheme


class OutputSpec(SpecModel):
    """Where the trained model, its checkpoints and its metadata are written."""

    uri: str = Field(
        min_length=1,
        max_length=MAX_URI,
        description=(
            "Persistent location for the model, checkpoints and kubetune.json metadata: a local "
            "path, file://, pvc://CLAIM/PATH, s3://, gs:// or az://. A retried run resumes from "
            "the latest checkpoint found here. Or a registry, oci://REGISTRY/REPOSITORY:TAG: the "
            "model is pushed there as an OCI artifact (KAITO's adapter image layout) and the "
            "checkpoints go to checkpointUri."
        ),
        examples=["pvc://models/sentiment", "s3://my-bucket/models/sentiment", "oci://ghcr.io/team/sentiment:v1"],
    )
    merge_adapter: bool = Field(
        default=False,
        description="With LoRA: also save the base model with the adapter merged in, under merged/.",
    )
    checkpoint_uri: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_URI,
        description=(
            "oci:// outputs only (and required for them on a cluster): where the run keeps its "
            "checkpoints, run marker and the model before the push, in the forms uri takes "
            "(pvc://, s3://, ...); a retried or preempted run resumes from here."
        ),
    )
    insecure_registry: bool = Field(
        default=False,
        description="oci:// outputs only: talk plain HTTP to the registry (a test or in-cluster registry).",
    )

    @field_validator("uri")
    @classmethod
    def _output_scheme(cls, uri: str) -> str:
        return check_scheme(uri, OUTPUT_SCHEMES, "output")

    @field_validator("checkpoint_uri")
    @classmethod
    def _checkpoint_scheme(cls, uri: str | None) -> str | None:
        return uri if uri is None else check_scheme(uri, WORK_SCHEMES, "output.checkpointUri")

    @model_validator(mode="after")
    def _registry_fields(self) -> OutputSpec:
        if uri_scheme(self.uri) != OCI_SCHEME:
            for name, value in (("checkpointUri", self.checkpoint_uri), ("insecureRegistry", self.insecure_registry)):
                if value:
                    raise ValueError(f"output.{name} is only used with an oci:// output.uri: remove it")
        elif self.merge_adapter:
            raise ValueError(
                "output.mergeAdapter cannot be pushed to a registry (one artifact per tag): set it to false, "
                "or use a pvc:// or object-store output.uri for the merged model"
            )
        return self

    @property
    def work_uri(self) -> str:
        """Where the run's files live: checkpointUri for a registry output (or the output itself:
        a local run without one stages in a temporary folder), else the output."""
        return self.checkpoint_uri or self.uri
