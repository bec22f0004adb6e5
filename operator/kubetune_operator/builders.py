"""The objects of a FineTuneJob's run: pure functions of the spec and the settings.

No API calls and no clock here: the same FineTuneJob always gives the same Job, which
is what makes creation idempotent (a deterministic name; on 409 the operator checks the
existing Job's owner) and the builder testable as a table. The pod itself is built by
`kubetune_operator.pod_template`.

Distributed runs (see kubetune_api.launch_command for the container command):

* one node, several GPUs: the same Job; the container command is torchrun's launcher in
  standalone mode, one process per GPU;
* several nodes: an Indexed Job (completions = parallelism = nodes; every index must
  succeed) plus a headless Service (`build_headless_service`) named in the pods'
  `subdomain`, so the pod with index 0 is reachable as `<job>-0.<service>` for torchrun's
  c10d rendezvous. The group shares one podFailurePolicy and one backoffLimit
  (`spec.backoffLimit` failed attempts of the whole group, see `group_backoff_limit`);
  Kueue admits the Job, and so the whole group, as one Workload;
* both: a NetworkPolicy (`build_network_policy`) lets only the run's own pods reach its
  pods: torch's rendezvous store unpickles what it reads, and NCCL listens on any port.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kubetune_api.finetunejob import FineTuneJobSpec
from kubetune_api.launch_command import RDZV_PORT, rendezvous_endpoint, torchrun_command
from kubetune_api.outcomes import EXIT_INVALID_CONFIG
from kubetune_api.protocol import DEFAULT_TERMINATION_LOG
from kubetune_api.resource import API_GROUP
from kubetune_api.trainer_pod import (
    ANNOTATION_FINETUNEJOB,
    CONTAINER_NAME,
    LABEL_RUN,
    selector_labels,
)
from kubetune_operator.names import job_name, run_object_name
from kubetune_operator.pod_template import (
    Owner,
    container_security_context,
    pod_security_context,
    resource_requirements,
    scratch_volumes,
    tolerations,
    trainer_env,
)
from kubetune_operator.settings import OperatorSettings
from kubetune_operator.volumes import mount_claims

# Kueue admits Jobs that carry this label (its value names the LocalQueue).
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
ANNOTATION_SPEC_HASH = f"{API_GROUP}/spec-hash"
# On the Job: how many pods (nodes) one attempt has, for the status (absent: 1).
ANNOTATION_NODES = f"{API_GROUP}/nodes"
RDZV_PORT_NAME = "c10d"

__all__ = ["CONTAINER_NAME", "Owner", "build_headless_service", "build_job", "build_network_policy"]


# The spec hash's scheme, written in front of it: a hash of another scheme (or none, from a
# release before schemes) is not comparable, and never makes a run look changed.
SPEC_HASH_SCHEME = "v2-"


def spec_hash(spec: FineTuneJobSpec) -> str:
    """A digest of everything but suspend: tells whether the spec changed after the Job was made."""
    # Fields at their defaults are left out: a field added by a later release (at its
    # default) does not change the hash of a run started before it.
    data = spec.model_dump(mode="json", by_alias=True, exclude={"suspend"}, exclude_defaults=True)
    return SPEC_HASH_SCHEME + hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def spec_changed(recorded: str | None, current: str | None) -> bool:
    """Whether the spec differs from the one a run was started with (unknown: no)."""
    if recorded is None or current is None or not recorded.startswith(SPEC_HASH_SCHEME):
        return False
    return recorded != current


def distributed(spec: FineTuneJobSpec) -> bool:
    """More than one training process: a rendezvous, and ranks that talk over the network."""
    return spec.nodes > 1 or spec.resources.gpus > 1


def trainer_command(owner: Owner, spec: FineTuneJobSpec) -> list[str] | None:
    """The container command, or None to keep the image's entrypoint (one process).

    One process keeps the image's own ENTRYPOINT (`python -m kubetune_trainer`), so a
    custom trainer image with its own entrypoint works as before.
    """
    if not distributed(spec):
        return None
    name = job_name(owner.name, spec.nodes)
    # Rank-0's pod through the headless Service: `<job>-0.<service>` resolves in the
    # pods' own namespace (their DNS search path holds it).
    service = run_object_name(owner.name, owner.uid)
    endpoint = rendezvous_endpoint(f"{name}-0.{service}") if spec.nodes > 1 else None
    # The uid is unique per FineTuneJob and stays the same across retries, so replaced
    # pods rejoin the same rendezvous.
    return torchrun_command(spec.resources.gpus, spec.nodes, endpoint, owner.uid)


def group_backoff_limit(spec: FineTuneJobSpec) -> int:
    """The Job's backoffLimit: spec.backoffLimit retries of the whole group.

    The Job controller counts failed pods, not attempts; when one rank fails, the other
    pods' ranks lose their peers and fail too, so one failed attempt of an n-node run
    costs up to n. backoffLimitPerIndex stays unset: a retry of one index alone cannot
    rejoin a run whose other ranks have exited.
    """
    return spec.backoff_limit * spec.nodes


def _owned(obj: dict[str, Any], owner: Owner) -> dict[str, Any]:
    # Garbage collection deletes the object (and a Job's pods) with the FineTuneJob;
    # blockOwnerDeletion keeps the FineTuneJob until they are gone (foreground deletion).
    obj["metadata"]["ownerReferences"] = [owner.reference()]
    return obj


def build_headless_service(owner: Owner, spec: FineTuneJobSpec) -> dict[str, Any]:
    """The headless Service that gives a multi-node run's pods DNS names (`<job>-<index>.<service>`)."""
    labels = selector_labels(owner.name)
    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": run_object_name(owner.name, owner.uid),
            "namespace": owner.namespace,
            "labels": dict(labels),
            "annotations": {ANNOTATION_FINETUNEJOB: owner.name},
        },
        "spec": {
            "clusterIP": "None",
            # The rendezvous happens before any pod is Ready (there is no readiness probe
            # to pass while the ranks wait for each other): publish addresses at once.
            "publishNotReadyAddresses": True,
            "selector": {**labels, LABEL_RUN: owner.uid},
            "ports": [{"name": RDZV_PORT_NAME, "port": RDZV_PORT, "targetPort": RDZV_PORT, "protocol": "TCP"}],
        },
    }
    return _owned(service, owner)


def build_network_policy(owner: Owner, spec: FineTuneJobSpec) -> dict[str, Any]:
    """Ingress to the run's pods only from the run's own pods, on any port.

    Any port: NCCL and gloo pick theirs at run time; the rendezvous is on RDZV_PORT. The
    pods serve nothing else, so nothing else needs in. Egress is left alone (the hub,
    object stores and the registry are outside).
    """
    run = {LABEL_RUN: owner.uid}
    policy: dict[str, Any] = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": run_object_name(owner.name, owner.uid),
            "namespace": owner.namespace,
            "labels": selector_labels(owner.name),
            "annotations": {ANNOTATION_FINETUNEJOB: owner.name},
        },
        "spec": {
            "podSelector": {"matchLabels": dict(run)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": dict(run)}}]}],
        },
    }
    return _owned(policy, owner)


def build_job(owner: Owner, spec: FineTuneJobSpec, settings: OperatorSettings) -> dict[str, Any]:
    """The batch/v1 Job manifest for a validated spec (output already defaulted)."""
    training, claims = mount_claims(spec.training_part())
    labels = selector_labels(owner.name)
    job_labels = dict(labels)
    queue = owner.labels.get(KUEUE_QUEUE_LABEL)
    if queue:
        job_labels[KUEUE_QUEUE_LABEL] = queue

    scratch = scratch_volumes(spec, settings)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.image or settings.trainer_image,
        "env": trainer_env(owner, spec, training.to_job_json()),
        "resources": resource_requirements(spec, settings),
        "volumeMounts": [mount for _, mount in scratch] + [claim.volume_mount() for claim in claims],
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
        # SIGTERM to SIGKILL: time for the trainer to checkpoint at its next step boundary.
        "terminationGracePeriodSeconds": spec.termination_grace_period_seconds,
        "automountServiceAccountToken": False,  # the trainer never calls the API
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": [volume for volume, _ in scratch] + [claim.volume() for claim in claims],
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
        pod_spec["subdomain"] = run_object_name(owner.name, owner.uid)

    pod_metadata: dict[str, Any] = {
        "labels": {**spec.pod_labels, **labels, LABEL_RUN: owner.uid},
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
    return _owned(job, owner)


def pod_failure_policy() -> dict[str, Any]:
    return {
        "rules": [
            {
                # Bad config or data: the same pod would fail the same way; fail the Job now.
                "action": "FailJob",
                "onExitCodes": {"containerName": CONTAINER_NAME, "operator": "In", "values": [EXIT_INVALID_CONFIG]},
            },
            {
                # Preemption, eviction, node drain or pressure: not the trainer's fault; retry
                # without using up backoffLimit. The operator bounds how often
                # (spec.maxDisruptions), which this policy cannot: it matches no reasons.
                # (In a multi-node run the other pods then lose their peer and fail; those
                # failures count.)
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
        ]
    }
