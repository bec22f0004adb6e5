"""The trainer pod of a FineTuneJob's Job: pure functions of the spec and the settings.

Each piece of the pod has its own small function, so the builder reads as a list and each
rule is testable alone. The pod follows the restricted Pod Security Standard, gets no API
credentials, and has a read-only root filesystem: it writes only to its output, `/cache`
(hub downloads, compile caches, staging of object-store outputs; size-limited), `/tmp`
(size-limited) and `/dev/shm`. A dataset that would fill the node's disk then fills a
limited volume instead, and the kubelet evicts the pod (see spec.maxDisruptions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubetune_api.finetunejob import FineTuneJobSpec
from kubetune_api.protocol import (
    ENV_GRACE_PERIOD,
    ENV_JOB,
    ENV_JOB_NAME,
    ENV_JOB_UID,
    ENV_REGISTRY_AUTH,
    ENV_STAGING_DIR,
)
from kubetune_api.resource import API_VERSION_STRING, KIND
from kubetune_api.trainer_pod import TRAINER_UID  # fsGroup makes mounted claims writable by it
from kubetune_operator.settings import OperatorSettings

CACHE_PATH = "/cache"
TMP_PATH = "/tmp"
SHM_PATH = "/dev/shm"
# Object-store outputs are staged locally before upload: on the cache volume, not /tmp, so a
# model's worth of checkpoints fits where the cache's size limit says.
STAGING_PATH = f"{CACHE_PATH}/staging"
# The key kubectl create secret docker-registry writes (type kubernetes.io/dockerconfigjson).
DOCKER_CONFIG_KEY = ".dockerconfigjson"


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
            name=meta["name"], namespace=meta["namespace"], uid=meta["uid"], labels=dict(meta.get("labels") or {})
        )

    def reference(self) -> dict[str, Any]:
        """The ownerReference of an object this FineTuneJob controls."""
        return {
            "apiVersion": API_VERSION_STRING,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


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
    """The restricted Pod Security Standard, container part, and a read-only root filesystem."""
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
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
        {"name": ENV_JOB_UID, "value": owner.uid},
        # Writable homes for libraries that cache under $HOME, $HF_HOME or $TMPDIR.
        {"name": "HOME", "value": CACHE_PATH},
        {"name": "HF_HOME", "value": f"{CACHE_PATH}/huggingface"},
        {"name": "TMPDIR", "value": TMP_PATH},
        {"name": ENV_STAGING_DIR, "value": STAGING_PATH},
        {"name": ENV_GRACE_PERIOD, "value": str(spec.termination_grace_period_seconds)},
    ]
    if spec.registry_secret:
        # An env reference, not a volume: a missing Secret or key then stops the container with
        # CreateContainerConfigError, which the status shows, instead of a silent FailedMount.
        secret = {"name": spec.registry_secret, "key": DOCKER_CONFIG_KEY}
        env.append({"name": ENV_REGISTRY_AUTH, "valueFrom": {"secretKeyRef": secret}})
    # The user's variables come last so they may override HF_HOME and friends, but not ours.
    ours = {ENV_JOB, ENV_JOB_NAME, ENV_JOB_UID, ENV_GRACE_PERIOD, ENV_REGISTRY_AUTH}
    env += [e.model_dump(by_alias=True, exclude_none=True) for e in spec.env if e.name not in ours]
    return env


def scratch_volumes(spec: FineTuneJobSpec, settings: OperatorSettings) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(volume, mount) for /dev/shm, /cache and /tmp: the only writable places besides the output."""
    return [
        (
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.resources.shm_size}},
            {"name": "dshm", "mountPath": SHM_PATH},
        ),
        (
            {"name": "cache", "emptyDir": {"sizeLimit": spec.resources.ephemeral_storage or settings.cache_size_limit}},
            {"name": "cache", "mountPath": CACHE_PATH},
        ),
        ({"name": "tmp", "emptyDir": {"sizeLimit": settings.tmp_size_limit}}, {"name": "tmp", "mountPath": TMP_PATH}),
    ]
