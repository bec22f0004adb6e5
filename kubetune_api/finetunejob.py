"""The whole FineTuneJob spec: the training part plus where and how to run it.

`FineTuneJobSpec` extends `TrainingSpec` (what the trainer reads) with scheduling fields.
The CRD schema is generated from it (see `kubetune_operator.crd`), so every field's description
here is what `kubectl explain finetunejob.spec.<field>` prints.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from kubetune_api.oci_reference import OCI_SCHEME
from kubetune_api.resource import API_GROUP
from kubetune_api.spec_base import SpecModel, explain_pattern
from kubetune_api.training import TrainingSpec
from kubetune_api.uris import uri_scheme

# More pods than this in one run is beyond what one c10d rendezvous and one Job are meant
# for here; it also bounds the "-<index>" suffix of the pods' hostnames (see builders).
MAX_NODES = 128

# Kubernetes resource.Quantity, e.g. 500m, 2, 16Gi, 1.5G, 1e3.
QUANTITY_PATTERN = explain_pattern(
    r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$",
    "a Kubernetes quantity such as 4, 3500m, 32Gi or 1.5G",
)

# Bounded strings keep the CRD's CEL immutability rules within the API server's cost
# budget (an unbounded string is costed as if it were megabytes long).
# Label values and keys as the API server checks them (apimachinery's validation:
# IsValidLabelValue, IsQualifiedName). RE2 syntax: the CRD's CEL rules use the same patterns.
LABEL_VALUE_PATTERN = explain_pattern(
    r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
    "a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
)
QUALIFIED_NAME_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_QUALIFIED_NAME = re.compile(QUALIFIED_NAME_PATTERN)
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]
AnnotationValue = Annotated[str, Field(max_length=8192)]
AFFINITY_KINDS = ("nodeAffinity", "podAffinity", "podAntiAffinity")
# Between SIGTERM and SIGKILL the trainer finishes its step, saves a checkpoint and uploads
# it: minutes for a large model. Kubernetes' own default (30 s) is too short for that.
DEFAULT_GRACE_PERIOD_S = 300
MIN_GRACE_PERIOD_S = 30
MAX_GRACE_PERIOD_S = 3600
# A Secret name (a DNS subdomain), as the API server checks it.
SECRET_NAME_PATTERN = explain_pattern(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    "a Secret name: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
)


def check_qualified_keys(keys: Any, field: str) -> None:
    """ValueError naming the keys that are no label/annotation key (prefix/name, name <= 63)."""
    bad = [key for key in keys if len(key) > 316 or not _QUALIFIED_NAME.match(key)]
    if bad:
        raise ValueError(
            f"{field}: {bad} not valid keys: use NAME or PREFIX/NAME, NAME at most 63 letters, "
            "digits, '-', '_' or '.', starting and ending with a letter or digit, PREFIX a DNS name"
        )


# Env names that hold credentials: their values must come from a Secret, never inline.
# Plain RE2-compatible syntax: the CRD's CEL rule uses the same pattern.
# Connection strings (Azure's AZURE_STORAGE_CONNECTION_STRING, database DSNs) carry keys too.
SECRET_ENV_PATTERN = r"(TOKEN|SECRET|PASSWORD|PASSWD|ACCESS_KEY|CREDENTIAL|CONNECTION_STRING|CONN_STR|_DSN$|_KEY$)"
_SECRET_ENV = re.compile(SECRET_ENV_PATTERN, re.IGNORECASE)


class Resources(SpecModel):
    """What one trainer pod asks for."""

    gpus: int = Field(
        default=1,
        ge=0,
        le=64,
        description=(
            "GPUs for each trainer pod (per node), requested as the operator's GPU resource "
            "(nvidia.com/gpu by default). 0 runs on CPU. More than 1 runs one training process "
            "per GPU under torchrun. At most the operator's maxGpusPerNode."
        ),
    )
    cpu: str | None = Field(
        default=None, pattern=QUANTITY_PATTERN, description="CPU request and limit, e.g. 4 or 3500m."
    )
    memory: str | None = Field(
        default=None, pattern=QUANTITY_PATTERN, description="Memory request and limit, e.g. 32Gi."
    )
    ephemeral_storage: str | None = Field(
        default=None,
        pattern=QUANTITY_PATTERN,
        description="Local scratch disk request and limit (hub cache, temp files), e.g. 50Gi.",
    )
    shm_size: str = Field(
        default="1Gi",
        pattern=QUANTITY_PATTERN,
        description="Size of the memory-backed /dev/shm (data loader workers and NCCL need it).",
    )


class Toleration(SpecModel):
    """A core/v1 Toleration."""

    key: str | None = Field(
        default=None, max_length=317, description="Taint key to tolerate; empty with Exists matches all."
    )
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Exists or Equal (default).")
    value: str | None = Field(default=None, max_length=63, description="Taint value to match with operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all."
    )
    toleration_seconds: int | None = Field(
        default=None, description="For NoExecute: how long the pod stays bound after the taint appears."
    )


class SecretKeySelector(SpecModel):
    """A key of a Secret in the FineTuneJob's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Secret name.")
    key: str = Field(min_length=1, max_length=253, description="Key within the Secret.")
    optional: bool | None = Field(default=None, description="Start even if the Secret or key is missing.")


class ConfigMapKeySelector(SpecModel):
    """A key of a ConfigMap in the FineTuneJob's namespace."""

    name: str = Field(min_length=1, max_length=253, description="ConfigMap name.")
    key: str = Field(min_length=1, max_length=253, description="Key within the ConfigMap.")
    optional: bool | None = Field(default=None, description="Start even if the ConfigMap or key is missing.")


class EnvVarSource(SpecModel):
    """A reference to a value held elsewhere."""

    secret_key_ref: SecretKeySelector | None = Field(default=None, description="A Secret key.")
    config_map_key_ref: ConfigMapKeySelector | None = Field(default=None, description="A ConfigMap key.")

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvVarSource:
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise ValueError("valueFrom needs exactly one of secretKeyRef or configMapKeyRef")
        return self


class EnvVar(SpecModel):
    """An environment variable for the trainer. Credentials only by reference."""

    name: str = Field(
        min_length=1, max_length=256, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", description="Variable name."
    )
    value: str | None = Field(default=None, max_length=32768, description="A plain, non-secret value.")
    value_from: EnvVarSource | None = Field(
        default=None, description="Take the value from a Secret or ConfigMap key (use this for credentials)."
    )

    @model_validator(mode="after")
    def _secrets_by_reference(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError(f"env {self.name}: set value or valueFrom, not both")
        if self.value and _SECRET_ENV.search(self.name):
            raise ValueError(
                f"env {self.name} looks like a credential: put it in a Secret and use "
                f"valueFrom.secretKeyRef instead of an inline value"
            )
        return self


class LocalObjectReference(SpecModel):
    """A Secret or ConfigMap in the FineTuneJob's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Object name.")
    optional: bool | None = Field(default=None, description="Start even if it is missing.")


class EnvFromSource(SpecModel):
    """Every key of a Secret or ConfigMap as environment variables."""

    prefix: str | None = Field(default=None, max_length=256, description="Prepended to every variable name.")
    secret_ref: LocalObjectReference | None = Field(default=None, description="A Secret to import.")
    config_map_ref: LocalObjectReference | None = Field(default=None, description="A ConfigMap to import.")

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvFromSource:
        if (self.secret_ref is None) == (self.config_map_ref is None):
            raise ValueError("envFrom entries need exactly one of secretRef or configMapRef")
        return self


class FineTuneJobSpec(TrainingSpec):
    """A fine-tuning run: what to train (task, base, data, ...) and where to run it."""

    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="Trainer image. Default: the operator's configured image.",
    )
    resources: Resources = Field(default_factory=Resources, description="GPUs, CPU, memory and disk per pod.")
    nodes: int = Field(
        default=1,
        ge=1,
        le=MAX_NODES,
        description=(
            "Trainer pods, one per node, training together under torchrun (PyTorch distributed). "
            "More than 1 runs an Indexed Job with a headless Service for the rendezvous; "
            "spec.output must then be storage every node can reach (an object store, or a "
            "ReadWriteMany claim)."
        ),
    )
    node_selector: dict[str, LabelValue] = Field(
        default_factory=dict, max_length=64, description="Node labels the trainer pod must run on."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=32,
        description="Extra tolerations. A toleration for the GPU taint is added when gpus > 0.",
    )
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="A core/v1 Affinity for the trainer pod.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    priority_class_name: str | None = Field(
        default=None, max_length=253, description="PriorityClass of the trainer pod."
    )
    service_account_name: str | None = Field(
        default=None,
        max_length=253,
        description=(
            "ServiceAccount of the trainer pod (e.g. for workload identity to an object store). "
            "Its API token is never mounted."
        ),
    )
    pod_labels: dict[str, LabelValue] = Field(
        default_factory=dict, max_length=64, description="Extra labels on the trainer pod."
    )
    pod_annotations: dict[str, AnnotationValue] = Field(
        default_factory=dict, max_length=64, description="Extra annotations on the trainer pod."
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=128,
        description="Environment for the trainer; credentials via valueFrom.secretKeyRef.",
    )
    env_from: list[EnvFromSource] = Field(
        default_factory=list, max_length=32, description="Secrets or ConfigMaps imported whole as environment."
    )
    max_disruptions: int = Field(
        default=5,
        ge=0,
        le=1000,
        description=(
            "Times the cluster may stop the run's pods (preemption, eviction, node drain, node "
            "pressure such as a full disk) without it counting against backoffLimit. One more "
            "fails the run with reason TooManyDisruptions."
        ),
    )
    backoff_limit: int = Field(
        default=3,
        ge=0,
        le=100,
        description="Retries after a failed attempt. Config errors and preemptions do not use it up.",
    )
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, description="Fail the run when it has not finished after this many seconds."
    )
    termination_grace_period_seconds: int = Field(
        default=DEFAULT_GRACE_PERIOD_S,
        ge=MIN_GRACE_PERIOD_S,
        le=MAX_GRACE_PERIOD_S,
        description=(
            "Seconds the trainer pod has between SIGTERM (preemption, eviction, node drain, suspend) "
            "and SIGKILL: it finishes the current step, saves and uploads a checkpoint, and the next "
            "pod resumes from that step. Allow the time of one step plus one checkpoint upload."
        ),
    )
    registry_secret: str | None = Field(
        default=None,
        max_length=253,
        pattern=SECRET_NAME_PATTERN,
        description=(
            "oci:// outputs: a kubernetes.io/dockerconfigjson Secret in this namespace (like an "
            "imagePullSecret: kubectl create secret docker-registry NAME ...) with credentials "
            "that may push to the registry of spec.output.uri. Unset: push anonymously."
        ),
    )
    suspend: bool = Field(
        default=False,
        description=(
            "true stops the run's pods (or keeps it from starting); false lets it run. "
            "The only field that may change after creation."
        ),
    )

    @field_validator("pod_labels")
    @classmethod
    def _no_reserved_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        check_qualified_keys(labels, "podLabels")
        reserved = [key for key in labels if key.startswith(f"{API_GROUP}/")]
        if reserved:
            raise ValueError(f"labels under {API_GROUP}/ are set by kubetune: remove {reserved}")
        return labels

    @field_validator("node_selector", "pod_annotations")
    @classmethod
    def _qualified_keys(cls, values: dict[str, str], info: Any) -> dict[str, str]:
        check_qualified_keys(values, to_camel(info.field_name))
        return values

    @field_validator("affinity")
    @classmethod
    def _affinity_kinds(cls, affinity: dict[str, Any] | None) -> dict[str, Any] | None:
        unknown = sorted(set(affinity or {}) - set(AFFINITY_KINDS))
        if unknown:
            raise ValueError(f"affinity: unknown {unknown}; a core/v1 Affinity has {', '.join(AFFINITY_KINDS)}")
        return affinity

    @model_validator(mode="after")
    def _registry_secret_needs_a_registry(self) -> FineTuneJobSpec:
        if self.registry_secret and (self.output is None or uri_scheme(self.output.uri) != OCI_SCHEME):
            raise ValueError("registrySecret is only used with an oci:// spec.output.uri: remove it")
        return self

    def training_part(self) -> TrainingSpec:
        """Only the fields the trainer reads (what goes into the container)."""
        fields = set(TrainingSpec.model_fields)
        return TrainingSpec.model_validate(self.model_dump(include=fields, exclude_none=True))
