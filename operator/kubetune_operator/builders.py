"""The batch/v1 Job for a FineTuneJob: a pure function of the spec and the settings.

No API calls and no clock here: the same FineTuneJob always gives the same Job, which
is what makes creation idempotent (a deterministic name; 409 means it exists) and the
builder testable as a table. Keep each piece of the pod in its own small function.

Distributed runs (see kubetune_trainer.distributed for the trainer's side):

* one node, several GPUs: the same Job; the container command is torchrun's launcher in
  standalone mode, one process per GPU;
* several nodes: an Indexed Job (completions = parallelism = nodes; every index must
  succeed) plus a headless Service (`build_headless_service`) named in the pods'
  `subdomain`, so the pod with index 0 is reachable as `<job>-0.<service>` for torchrun's
  c10d rendezvous. The group shares one podFailurePolicy and one backoffLimit
  (`spec.backoffLimit` failed attempts of the whole group, see `group_backoff_limit`);
  Kueue admits the Job, and so the whole group, as one Workload.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import kopf

from kubetune_api.finetunejob import MAX_NODES, FineTuneJobSpec
from kubetune_api.launch_command import RDZV_PORT, rendezvous_endpoint, torchrun_command
from kubetune_api.protocol import DEFAULT_TERMINATION_LOG, ENV_JOB, ENV_JOB_NAME, ENV_JOB_UID, EXIT_INVALID_CONFIG
from kubetune_api.resource import API_GROUP, API_VERSION, KIND
from kubetune_operator.settings import OperatorSettings
from kubetune_operator.volumes import mount_claims

CONTAINER_NAME = "trainer"
# Kueue admits Jobs that carry this label (its value names the LocalQueue).
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_FINETUNEJOB = f"{API_GROUP}/finetunejob"
TRAINER_APP = "kubetune-trainer"
MANAGER = "kubetune"
ANNOTATION_SPEC_HASH = f"{API_GROUP}/spec-hash"
ANNOTATION_FINETUNEJOB = f"{API_GROUP}/finetunejob"
# On the Job: how many pods (nodes) one attempt has, for the status (absent: 1).
ANNOTATION_NODES = f"{API_GROUP}/nodes"
# Set by the Job controller on each pod of an Indexed Job (also as a label since 1.28).
COMPLETION_INDEX_KEY = "batch.kubernetes.io/job-completion-index"
RDZV_PORT_NAME = "c10d"

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


def job_name(finetunejob: str, nodes: int = 1) -> str:
    """`<name>-train`, cut and suffixed with a hash when that exceeds 63 characters.

    Multi-node: the Job controller names each pod's host `<job>-<index>`, a DNS label, so
    the Job name must leave room for the index and hold no dots (FineTuneJob names may).
    """
    if nodes <= 1:
        name = f"{finetunejob}-train"
        if len(name) <= MAX_NAME:
            return name
        digest = hashlib.sha256(finetunejob.encode()).hexdigest()[:10]
        return f"{finetunejob[: MAX_NAME - len(digest) - 8].rstrip('-.')}-{digest}-train"
    return _dns_label(finetunejob, "-train", MAX_NAME - len(f"-{MAX_NODES - 1}"))


def service_name(owner: Owner) -> str:
    """The headless Service of a multi-node run: `<name>-<tag>`, a DNS-1035 label.

    The tag is a digest of the FineTuneJob's uid: a Service left behind by a deleted
    FineTuneJob of the same name (garbage collection takes a moment) has another name,
    so a 409 on creation always means our own Service, and nothing needs reading back.
    A name that starts with a digit gets a letter in front (DNS-1035).
    """
    tag = hashlib.sha256(owner.uid.encode()).hexdigest()[:8]
    base = owner.name.replace(".", "-")
    if not base[0].isalpha():
        base = f"t-{base}"
    return f"{base[: MAX_NAME - len(tag) - 1].rstrip('-')}-{tag}"


def _dns_label(base: str, suffix: str, limit: int) -> str:
    """`base + suffix` as a DNS label of at most `limit` characters: dots become dashes, and
    a name that is too long or was changed gets a hash of the original, so two FineTuneJobs
    never share one."""
    cleaned = base.replace(".", "-")
    name = f"{cleaned}{suffix}"
    if len(name) <= limit and cleaned == base:
        return name
    digest = hashlib.sha256(base.encode()).hexdigest()[:10]
    keep = limit - len(digest) - len(suffix) - 1
    return f"{cleaned[:keep].rstrip('-')}-{digest}{suffix}"


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
    # `nodes` at its default and an unset `uncheckedTrainingArgs` are left out: Jobs made
    # before the fields existed keep their hash, so an operator upgrade does not call every
    # running FineTuneJob changed.
    exclude = {"suspend"} | ({"nodes"} if spec.nodes == 1 else set())
    if spec.unchecked_training_args is None:
        exclude.add("unchecked_training_args")
    data = spec.model_dump(mode="json", by_alias=True, exclude=exclude)
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
        {"name": ENV_JOB_UID, "value": owner.uid},
        # Writable homes for libraries that cache under $HOME or $HF_HOME.
        {"name": "HOME", "value": CACHE_PATH},
        {"name": "HF_HOME", "value": f"{CACHE_PATH}/huggingface"},
    ]
    # The user's variables come last so they may override HF_HOME and friends, but not ours.
    ours = {ENV_JOB, ENV_JOB_NAME, ENV_JOB_UID}
    env += [e.model_dump(by_alias=True, exclude_none=True) for e in spec.env if e.name not in ours]
    return env


def trainer_command(owner: Owner, spec: FineTuneJobSpec) -> list[str] | None:
    """The container command, or None to keep the image's entrypoint (one process).

    One process keeps the image's own ENTRYPOINT (`python -m kubetune_trainer`), so a
    custom trainer image with its own entrypoint works as before.
    """
    nodes = spec.nodes
    if nodes == 1 and spec.resources.gpus <= 1:
        return None
    name = job_name(owner.name, nodes)
    # Rank-0's pod through the headless Service: `<job>-0.<service>` resolves in the
    # pods' own namespace (their DNS search path holds it).
    endpoint = rendezvous_endpoint(f"{name}-0.{service_name(owner)}") if nodes > 1 else None
    # The uid is unique per FineTuneJob and stays the same across retries, so replaced
    # pods rejoin the same rendezvous.
    return torchrun_command(spec.resources.gpus, nodes, endpoint, owner.uid)


def group_backoff_limit(spec: FineTuneJobSpec) -> int:
    """The Job's backoffLimit: spec.backoffLimit retries of the whole group.

    The Job controller counts failed pods, not attempts; when one rank fails, the other
    pods' ranks lose their peers and fail too, so one failed attempt of an n-node run
    costs up to n. backoffLimitPerIndex stays unset: a retry of one index alone cannot
    rejoin a run whose other ranks have exited.
    """
    return spec.backoff_limit * spec.nodes


def build_headless_service(owner: Owner, spec: FineTuneJobSpec) -> dict[str, Any]:
    """The headless Service that gives a multi-node run's pods DNS names (`<job>-<index>.<service>`).

    Owned by the FineTuneJob, so garbage collection removes it with the run.
    """
    labels = selector_labels(owner.name)
    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(owner),
            "namespace": owner.namespace,
            "labels": dict(labels),
            "annotations": {ANNOTATION_FINETUNEJOB: owner.name},
        },
        "spec": {
            "clusterIP": "None",
            # The rendezvous happens before any pod is Ready (there is no readiness probe
            # to pass while the ranks wait for each other): publish addresses at once.
            "publishNotReadyAddresses": True,
            "selector": dict(labels),
            "ports": [{"name": RDZV_PORT_NAME, "port": RDZV_PORT, "targetPort": RDZV_PORT, "protocol": "TCP"}],
        },
    }
    kopf.append_owner_reference(service, owner=owner.reference_body(), controller=True, block_owner_deletion=True)
    return service


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
    command = trainer_command(owner, spec)
    if command is not None:
        container["command"] = command
    if spec.nodes > 1:
        container["ports"] = [{"name": RDZV_PORT_NAME, "containerPort": RDZV_PORT, "protocol": "TCP"}]

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
    if spec.nodes > 1:
        pod_spec["subdomain"] = service_name(owner)

    pod_metadata: dict[str, Any] = {
        "labels": {**spec.pod_labels, **labels},
        "annotations": {**spec.pod_annotations, ANNOTATION_FINETUNEJOB: owner.name},
    }

    job_spec: dict[str, Any] = {
        "completions": spec.nodes,
        "parallelism": spec.nodes,
        "backoffLimit": group_backoff_limit(spec),
        # Kueue admits a queued Job by unsuspending it, so it must be created suspended.
        # Kueue makes one Workload of a Job, with one pod set of `parallelism` pods, and
        # admits it whole: a multi-node run never starts with part of its nodes.
        "suspend": spec.suspend or bool(queue),
        "podFailurePolicy": pod_failure_policy(),
        "template": {"metadata": pod_metadata, "spec": pod_spec},
    }
    if spec.nodes > 1:
        # Each pod gets JOB_COMPLETION_INDEX and the hostname `<job>-<index>`. Without a
        # successPolicy the Job succeeds only when every index has succeeded.
        job_spec["completionMode"] = "Indexed"
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds

    annotations = {ANNOTATION_SPEC_HASH: spec_hash(spec), ANNOTATION_FINETUNEJOB: owner.name}
    if spec.nodes > 1:
        annotations[ANNOTATION_NODES] = str(spec.nodes)
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(owner.name, spec.nodes),
            "namespace": owner.namespace,
            "labels": job_labels,
            "annotations": annotations,
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
                # (In a multi-node run the other pods then lose their peer and fail; those
                # failures count.)
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
        ]
    }
