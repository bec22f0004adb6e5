"""The batch/v1 Job for a FineTuneJob: a pure function of the spec and the settings.

No API calls and no clock here: the same FineTuneJob always gives the same Job, which
is what makes creation idempotent (a deterministic name; 409 means it exists) and the
builder testable as a table. Multi-node training will add `nodes` by turning this into
an Indexed Job; keep each piece of the pod in its own small function.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import kopf

from kubetune_operator.settings import OperatorSettings
from kubetune_operator.spec import API_GROUP, API_VERSION, KIND, KUEUE_QUEUE_LABEL, FineTuneJobSpec
from kubetune_operator.volumes import mount_claims
from kubetune_trainer.protocol import (
    DEFAULT_TERMINATION_LOG,
    ENV_JOB,
    ENV_JOB_NAME,
    EXIT_INVALID_CONFIG,
)

CONTAINER_NAME = "trainer"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_FINETUNEJOB = f"{API_GROUP}/finetunejob"
TRAINER_APP = "kubetune-trainer"
MANAGER = "kubetune"
ANNOTATION_SPEC_HASH = f"{API_GROUP}/spec-hash"
ANNOTATION_FINETUNEJOB = f"{API_GROUP}/finetunejob"

# Where the trainer may write besides its output: the pod's root filesystem belongs to
# the image, so caches (hub downloads, torch/triton compile caches) get their own volume.
CACHE_PATH = "/cache"
SHM_PATH = "/dev/shm"
# A non-root identity for the trainer; fsGroup makes mounted claims writable by it.
TRAINER_UID = 1000

MAX_NAME = 63  # Job names become the batch.kubernetes.io/job-name label value (a DNS label)


@dataclass(frozen=True)
class Owner:
    """The FineTuneJob a Job is built for: only what the Job needs from its metadata."""

    name: str
    namespace: str
    uid: str
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_body(cls, body: Any) -> Owner:
        meta = body["metadata"]
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            labels=dict(meta.get("labels") or {}),
        )

    def reference_body(self) -> dict[str, Any]:
        """The minimal body kopf.append_owner_reference reads."""
        return {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid},
        }


def job_name(finetunejob: str) -> str:
    """`<name>-train`, cut and suffixed with a hash when that exceeds 63 characters."""
    name = f"{finetunejob}-train"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(finetunejob.encode()).hexdigest()[:10]
    return f"{finetunejob[: MAX_NAME - len(digest) - 8].rstrip('-.')}-{digest}-train"


def selector_labels(finetunejob: str) -> dict[str, str]:
    """Labels on the Job and its pods that the operator watches and selects by."""
    return {
        LABEL_NAME: TRAINER_APP,
        LABEL_MANAGED_BY: MANAGER,
        LABEL_FINETUNEJOB: label_value(finetunejob),
    }


def label_value(name: str) -> str:
    """Label values are at most 63 characters; object names may be 253. The exact name
    is also kept in the ANNOTATION_FINETUNEJOB annotation, which has no such limit."""
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: MAX_NAME - len(digest) - 1].rstrip('-.')}-{digest}"


def spec_hash(spec: FineTuneJobSpec) -> str:
    """A digest of everything but suspend: tells whether the spec changed after the Job was made."""
    data = spec.model_dump(mode="json", by_alias=True, exclude={"suspend"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def resource_requirements(spec: FineTuneJobSpec, settings: OperatorSettings) -> dict[str, Any]:
    amounts: dict[str, str] = {}
    wanted = spec.resources
    for key, value in (("cpu", wanted.cpu), ("memory", wanted.memory), ("ephemeral-storage", wanted.ephemeral_storage)):
        if value is not None:
            amounts[key] = value
    limits = dict(amounts)
    if wanted.gpus > 0:
        # Extended resources are limits-only (the request defaults to the limit).
        limits[settings.gpu_resource] = str(wanted.gpus)
    result: dict[str, Any] = {}
    if amounts:
        result["requests"] = amounts
    if limits:
        result["limits"] = limits
    return result


def tolerations(spec: FineTuneJobSpec, settings: OperatorSettings) -> list[dict[str, Any]]:
    listed = [t.model_dump(by_alias=True, exclude_none=True) for t in spec.tolerations]
    key = settings.gpu_toleration_key
    if spec.resources.gpus > 0 and key and not any(t.get("key") == key for t in listed):
        listed.append({"key": key, "operator": "Exists", "effect": "NoSchedule"})
    return listed


def container_security_context() -> dict[str, Any]:
    """The restricted Pod Security Standard, container part."""
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": TRAINER_UID,
        "runAsGroup": TRAINER_UID,
        "fsGroup": TRAINER_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def trainer_env(owner: Owner, spec: FineTuneJobSpec, job_json: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": ENV_JOB, "value": job_json},
        {"name": ENV_JOB_NAME, "value": f"{owner.namespace}/{owner.name}"},
        # Writable homes for libraries that cache under $HOME or $HF_HOME.
        {"name": "HOME", "value": CACHE_PATH},
        {"name": "HF_HOME", "value": f"{CACHE_PATH}/huggingface"},
    ]
    # The user's variables come last so they may override HF_HOME and friends, but not ours.
    ours = {item["name"] for item in env[:2]}
    env += [e.model_dump(by_alias=True, exclude_none=True) for e in spec.env if e.name not in ours]
    return env


def build_job(owner: Owner, spec: FineTuneJobSpec, settings: OperatorSettings) -> dict[str, Any]:
    """The batch/v1 Job manifest for a validated spec (output already defaulted)."""
    training, claims = mount_claims(spec.training_part())
    labels = selector_labels(owner.name)
    job_labels = dict(labels)
    queue = owner.labels.get(KUEUE_QUEUE_LABEL)
    if queue:
        job_labels[KUEUE_QUEUE_LABEL] = queue

    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.resources.shm_size}},
        {"name": "cache", "emptyDir": {}},
        *(claim.volume() for claim in claims),
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "dshm", "mountPath": SHM_PATH},
        {"name": "cache", "mountPath": CACHE_PATH},
        *(claim.volume_mount() for claim in claims),
    ]

    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.image or settings.trainer_image,
        "env": trainer_env(owner, spec, training.to_job_json()),
        "resources": resource_requirements(spec, settings),
        "volumeMounts": mounts,
        "securityContext": container_security_context(),
        "terminationMessagePath": DEFAULT_TERMINATION_LOG,
        # A crash before the trainer writes its result still leaves the log's last lines.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if spec.env_from:
        container["envFrom"] = [e.model_dump(by_alias=True, exclude_none=True) for e in spec.env_from]

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",  # retries are the Job's business (backoffLimit, podFailurePolicy)
        "automountServiceAccountToken": False,  # the trainer never calls the API
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": volumes,
    }
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    tolerated = tolerations(spec, settings)
    if tolerated:
        pod_spec["tolerations"] = tolerated
    if spec.affinity:
        pod_spec["affinity"] = spec.affinity
    if spec.priority_class_name:
        pod_spec["priorityClassName"] = spec.priority_class_name
    if spec.service_account_name:
        pod_spec["serviceAccountName"] = spec.service_account_name

    pod_metadata: dict[str, Any] = {
        "labels": {**spec.pod_labels, **labels},
        "annotations": {**spec.pod_annotations, ANNOTATION_FINETUNEJOB: owner.name},
    }

    job_spec: dict[str, Any] = {
        "completions": 1,
        "parallelism": 1,
        "backoffLimit": spec.backoff_limit,
        # Kueue admits a queued Job by unsuspending it, so it must be created suspended.
        "suspend": spec.suspend or bool(queue),
        "podFailurePolicy": pod_failure_policy(),
        "template": {"metadata": pod_metadata, "spec": pod_spec},
    }
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds

    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(owner.name),
            "namespace": owner.namespace,
            "labels": job_labels,
            "annotations": {ANNOTATION_SPEC_HASH: spec_hash(spec), ANNOTATION_FINETUNEJOB: owner.name},
        },
        "spec": job_spec,
    }
    # Garbage collection deletes the Job (and through it the pods) with the FineTuneJob.
    kopf.append_owner_reference(job, owner=owner.reference_body(), controller=True, block_owner_deletion=True)
    return job


def pod_failure_policy() -> dict[str, Any]:
    return {
        "rules": [
            {
                # Bad config or data: the same pod would fail the same way; fail the Job now.
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": CONTAINER_NAME,
                    "operator": "In",
                    "values": [EXIT_INVALID_CONFIG],
                },
            },
            {
                # Preemption, eviction, node drain: not the trainer's fault; retry for free.
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
        ]
    }
