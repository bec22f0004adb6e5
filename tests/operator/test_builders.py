"""The Job builder: a pure function, checked field by field and against the batch/v1 schema."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import kubernetes_validate
import pytest

from kubetune_api.finetunejob import MAX_NODES
from kubetune_api.protocol import EXIT_INVALID_CONFIG
from kubetune_api.training import TrainingSpec
from kubetune_api.validation import InvalidSpecError, validate_spec
from kubetune_operator.builders import (
    Owner,
    build_headless_service,
    build_job,
    build_network_policy,
    distributed,
    spec_changed,
    spec_hash,
)
from kubetune_operator.names import job_name, run_object_name
from kubetune_operator.settings import OperatorSettings

OWNER = Owner(name="sentiment", namespace="ml", uid="1234-abcd", labels={"kueue.x-k8s.io/queue-name": "gpu"})
BASE: dict[str, Any] = {
    "task": "language-generation",
    "base": {"model": "pvc://models/llama"},
    "data": {"train": "pvc://datasets/chat.jsonl", "validation": "pvc://datasets/val.jsonl"},
    "output": {"uri": "pvc://models/out"},
    "quantize": True,
    "lora": True,
    "resources": {"gpus": 2, "memory": "32Gi", "cpu": "8"},
    "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}],
    "envFrom": [{"secretRef": {"name": "s3"}}],
    "activeDeadlineSeconds": 3600,
    "podLabels": {"team": "nlp"},
}


def build(
    spec: dict[str, Any] = BASE, settings: OperatorSettings | None = None, owner: Owner = OWNER
) -> dict[str, Any]:
    settings = settings or OperatorSettings(gpu_resource="amd.com/gpu", trainer_image="trainer:1")
    return build_job(
        owner, validate_spec(spec, namespace=owner.namespace, name=owner.name, policy=settings.policy), settings
    )


def test_job_is_a_valid_batch_v1_job() -> None:
    kubernetes_validate.validate(build(), "1.30", strict=True)


def test_job_is_deterministic() -> None:
    assert build() == build()


def test_metadata_labels_and_owner() -> None:
    meta = build()["metadata"]
    assert meta["name"] == "sentiment-train"
    assert meta["namespace"] == "ml"
    assert meta["labels"] == {
        "app.kubernetes.io/name": "kubetune-trainer",
        "app.kubernetes.io/managed-by": "kubetune",
        "kubetune.io/finetunejob": "sentiment",
        "kueue.x-k8s.io/queue-name": "gpu",
    }
    (ref,) = meta["ownerReferences"]
    assert ref == {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "name": "sentiment",
        "uid": "1234-abcd",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_job_spec_retries_and_failure_policy() -> None:
    spec = build()["spec"]
    assert spec["backoffLimit"] == 3
    assert spec["activeDeadlineSeconds"] == 3600
    assert spec["suspend"] is True  # queued in Kueue: created suspended
    fail, ignore = spec["podFailurePolicy"]["rules"]
    assert fail["action"] == "FailJob" and fail["onExitCodes"]["values"] == [EXIT_INVALID_CONFIG]
    assert ignore == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    assert spec["template"]["spec"]["restartPolicy"] == "Never"


def test_pod_security_and_volumes() -> None:
    pod = build()["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert "emptyDir" in volumes["cache"]
    # One volume per distinct claim; read-write only where the output goes.
    assert volumes["pvc-models"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": False}
    assert volumes["pvc-datasets"]["persistentVolumeClaim"] == {"claimName": "datasets", "readOnly": True}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {
        "dshm": "/dev/shm",
        "cache": "/cache",
        "tmp": "/tmp",
        "pvc-models": "/mnt/pvc/models",
        "pvc-datasets": "/mnt/pvc/datasets",
    }
    assert container["terminationMessagePath"] == "/dev/termination-log"


def test_a_full_disk_fills_a_bounded_volume_not_the_node() -> None:
    """Read-only root; /cache and /tmp bounded (settings, or the pod's own ephemeral-storage);
    object-store outputs staged on /cache, temporary files on /tmp."""
    settings = OperatorSettings(default_output="s3://b/runs", cache_size_limit="300Gi", tmp_size_limit="5Gi")
    pod = build(settings=settings)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["cache"]["emptyDir"] == {"sizeLimit": "300Gi"}
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "5Gi"}
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["TMPDIR"] == "/tmp" and env["KUBETUNE_STAGING_DIR"] == "/cache/staging"
    sized = build({**BASE, "resources": {**BASE["resources"], "ephemeralStorage": "80Gi"}}, settings=settings)
    cache = next(v for v in sized["spec"]["template"]["spec"]["volumes"] if v["name"] == "cache")
    assert cache["emptyDir"] == {"sizeLimit": "80Gi"}


def test_resources_gpu_and_toleration() -> None:
    pod = build()["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["limits"] == {"cpu": "8", "memory": "32Gi", "amd.com/gpu": "2"}
    assert resources["requests"] == {"cpu": "8", "memory": "32Gi"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_cpu_only_has_no_gpu_limit_or_toleration() -> None:
    pod = build({**BASE, "resources": {"gpus": 0}})["spec"]["template"]["spec"]
    assert "tolerations" not in pod
    assert "amd.com/gpu" not in pod["containers"][0].get("resources", {}).get("limits", {})


def test_trainer_sees_local_paths_and_secrets_by_reference() -> None:
    container = build()["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    training = TrainingSpec.model_validate_json(env["KUBETUNE_JOB"]["value"])
    assert training.base.model == "/mnt/pvc/models/llama"
    assert training.data.train == "/mnt/pvc/datasets/chat.jsonl"
    assert training.output is not None and training.output.uri == "/mnt/pvc/models/out"
    assert training.quantize is True and training.lora is True
    assert env["KUBETUNE_JOB_NAME"]["value"] == "ml/sentiment"
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
    assert container["envFrom"] == [{"secretRef": {"name": "s3"}}]
    assert container["image"] == "trainer:1"


def test_pod_labels_cannot_replace_ours() -> None:
    labels = build({**BASE, "podLabels": {"app.kubernetes.io/name": "mine", "team": "nlp"}})["spec"]["template"][
        "metadata"
    ]["labels"]
    assert labels["app.kubernetes.io/name"] == "kubetune-trainer" and labels["team"] == "nlp"


@pytest.mark.parametrize("name", ["a", "x" * 57, "x" * 58, "y" * 253])
def test_job_name_fits_a_label(name: str) -> None:
    result = job_name(name)
    assert len(result) <= 63 and result.endswith("-train")
    assert job_name(name) == result
    assert job_name(name + "z") != result


def test_default_output_and_its_absence() -> None:
    spec = {k: v for k, v in BASE.items() if k != "output"}
    with pytest.raises(InvalidSpecError, match="KUBETUNE_DEFAULT_OUTPUT"):
        validate_spec(spec, namespace="ml", name="x", policy=OperatorSettings().policy)
    done = validate_spec(spec, namespace="ml", name="x", policy=OperatorSettings(default_output="s3://b/runs").policy)
    assert done.output is not None and done.output.uri == "s3://b/runs/ml/x"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"output": {"uri": "/tmp/model"}}, "spec.output.uri"),
        ({"resources": {"gpus": 9}}, "spec.resources.gpus"),
        ({"task": "poetry"}, "spec.task"),
        ({"env": [{"name": "HF_TOKEN", "value": "hf_abc"}]}, "spec.env"),
    ],
)
def test_invalid_specs_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpecError) as raised:
        validate_spec({**BASE, **change}, namespace="ml", name="x", policy=OperatorSettings().policy)
    assert str(raised.value).startswith(field)


# -- distributed runs -----------------------------------------------------------------------------

CPU_SPEC: dict[str, Any] = {
    "base": {"model": "org/tiny-bert"},
    "data": {"train": "s3://bucket/train.csv"},
    "output": {"uri": "s3://bucket/out"},
}


def container_of(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize(
    ("gpus", "nodes", "command"),
    [
        # One process keeps the image's own entrypoint (python -m kubetune_trainer).
        (0, 1, None),
        (1, 1, None),
        (4, 1, ["python", "-m", "kubetune_trainer.launch", "--standalone", "--nnodes=1", "--nproc-per-node=4"]),
        (
            8,
            2,
            [
                "python",
                "-m",
                "kubetune_trainer.launch",
                "--nnodes=2",
                "--nproc-per-node=8",
                "--rdzv-backend=c10d",
                "--rdzv-endpoint=sentiment-train-0.sentiment-568c85bf:29400",
                "--rdzv-id=1234-abcd",
                "--rdzv-conf=join_timeout=1800",
                "--max-restarts=0",
            ],
        ),
        # CPU nodes: one process each (gloo).
        (0, 3, None),
    ],
)
def test_container_command_per_shape(gpus: int, nodes: int, command: list[str] | None) -> None:
    job = build({**CPU_SPEC, "resources": {"gpus": gpus}, "nodes": nodes})
    container = container_of(job)
    if command is None and nodes == 1:
        assert "command" not in container
    elif command is None:
        assert container["command"][:3] == ["python", "-m", "kubetune_trainer.launch"]
        assert "--nnodes=3" in container["command"] and "--nproc-per-node=1" in container["command"]
    else:
        assert container["command"] == command
    kubernetes_validate.validate(job, "1.30", strict=True)


@pytest.mark.parametrize(
    ("nodes", "indexed", "backoff"),
    [(1, False, 3), (2, True, 6), (4, True, 12)],
)
def test_job_shape_per_node_count(nodes: int, indexed: bool, backoff: int) -> None:
    job = build({**BASE, "nodes": nodes})
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert spec["completions"] == spec["parallelism"] == nodes
    assert spec["backoffLimit"] == backoff  # spec.backoffLimit (3) failed attempts of the whole group
    assert "backoffLimitPerIndex" not in spec and "successPolicy" not in spec  # every index must succeed
    # One failure policy for the group: a bad config fails the Job at once, disruptions are free.
    assert spec["podFailurePolicy"] == build(BASE)["spec"]["podFailurePolicy"]
    assert spec["suspend"] is True  # queued in Kueue: the whole group is one Workload, admitted at once
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu"
    if indexed:
        assert spec["completionMode"] == "Indexed"
        assert pod["subdomain"] == "sentiment-568c85bf"
        assert container_of(job)["ports"] == [{"name": "c10d", "containerPort": 29400, "protocol": "TCP"}]
        assert job["metadata"]["annotations"]["kubetune.io/nodes"] == str(nodes)
    else:
        assert "completionMode" not in spec and "subdomain" not in pod and "ports" not in container_of(job)
        assert "kubetune.io/nodes" not in job["metadata"]["annotations"]
    kubernetes_validate.validate(job, "1.30", strict=True)


def test_single_node_job_is_unchanged_by_an_explicit_default() -> None:
    assert build({**BASE, "nodes": 1}) == build(BASE)


def test_headless_service() -> None:
    spec = validate_spec({**BASE, "nodes": 2}, namespace="ml", name="sentiment", policy=OperatorSettings().policy)
    service = build_headless_service(OWNER, spec)
    kubernetes_validate.validate(service, "1.30", strict=True)
    assert service["metadata"]["name"] == "sentiment-568c85bf"
    assert service["metadata"]["namespace"] == "ml"
    (ref,) = service["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("FineTuneJob", "1234-abcd", True)
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["ports"] == [{"name": "c10d", "port": 29400, "targetPort": 29400, "protocol": "TCP"}]
    # It selects exactly the Job's pods.
    job = build({**BASE, "nodes": 2})
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert job["spec"]["template"]["spec"]["subdomain"] == service["metadata"]["name"]
    assert build_headless_service(OWNER, spec) == service


@pytest.mark.parametrize("name", ["sentiment", "a.b.c", "7b-chat", "x" * 63, "y" * 253, "1" + "z" * 100])
def test_multi_node_names_fit_dns(name: str) -> None:
    """Pod hostnames are `<job>-<index>` (DNS labels), the Service name a DNS-1035 label."""
    label = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    job = job_name(name, 2)
    assert label.match(job) and len(f"{job}-{MAX_NODES - 1}") <= 63
    assert job_name(name + "q", 2) != job
    owner = Owner(name=name, namespace="ml", uid="u-1")
    service = run_object_name(owner.name, owner.uid)
    assert label.match(service) and len(service) <= 63 and service[0].isalpha()
    # Another FineTuneJob of the same name (a new uid) never meets the old one's Service.
    assert run_object_name(name, "u-2") != service
    # The rendezvous host the pods are given is the index-0 pod's name under the Service.
    spec = validate_spec({**CPU_SPEC, "nodes": 2}, namespace="ml", name=name, policy=OperatorSettings().policy)
    built = build_job(owner, spec, OperatorSettings())
    endpoint = next(a for a in container_of(built)["command"] if "endpoint" in a)
    assert endpoint == f"--rdzv-endpoint={job}-0.{service}:29400"
    assert built["spec"]["template"]["spec"]["subdomain"] == service


def test_spec_hash_ignores_defaults_and_hashes_of_older_releases() -> None:
    """No SpecChangeIgnored on an operator upgrade: a field added at its default keeps the hash,
    and a Job annotated by a release before hash schemes is never called changed."""
    settings = OperatorSettings()
    one = validate_spec(BASE, namespace="ml", name="x", policy=settings.policy)
    assert spec_hash(one) == spec_hash(one.model_copy(update={"nodes": 1, "max_disruptions": 5}))
    assert spec_hash(one) != spec_hash(one.model_copy(update={"nodes": 2}))
    assert spec_changed(spec_hash(one), spec_hash(one.model_copy(update={"nodes": 2})))
    assert not spec_changed(spec_hash(one), spec_hash(one.model_copy(update={"suspend": True})))
    legacy = hashlib.sha256(b"{}").hexdigest()[:16]  # what 0.1.0 wrote: no scheme
    assert not spec_changed(legacy, spec_hash(one)) and not spec_changed(None, spec_hash(one))


def test_spec_hash_sees_unchecked_training_args() -> None:
    """Unset, the escape hatch leaves old hashes alone; set, it is part of the spec like any field."""
    settings = OperatorSettings()
    plain = validate_spec(BASE, namespace="ml", name="x", policy=settings.policy)
    hatch = validate_spec(
        {**BASE, "uncheckedTrainingArgs": {"new_arg": 1}}, namespace="ml", name="x", policy=settings.policy
    )
    assert spec_hash(plain) != spec_hash(hatch)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"nodes": 0}, "spec.nodes: Input should be greater than or equal to 1"),
        ({"nodes": MAX_NODES + 1}, f"spec.nodes: Input should be less than or equal to {MAX_NODES}"),
        ({"resources": {"gpus": 9}}, "spec.resources.gpus: 9 GPUs per node do not fit on one node"),
    ],
)
def test_shapes_that_cannot_work_are_rejected(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidSpecError) as raised:
        validate_spec({**BASE, **change}, namespace="ml", name="x", policy=OperatorSettings(max_gpus_per_node=8).policy)
    assert str(raised.value).startswith(expected)
    if "gpus" in change:
        assert "at most 8 per node" in str(raised.value) and "spec.nodes" in str(raised.value)


def test_nodes_bounds_in_the_crd() -> None:
    from kubetune_operator.crd import build_crd

    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    nodes = schema["properties"]["nodes"]
    assert (nodes["minimum"], nodes["maximum"], nodes["default"]) == (1, MAX_NODES, 1)


@pytest.mark.parametrize(("nodes", "gpus", "guarded"), [(1, 1, False), (1, 0, False), (1, 4, True), (2, 1, True)])
def test_distributed_runs_get_a_network_policy(nodes: int, gpus: int, guarded: bool) -> None:
    spec = validate_spec(
        {**BASE, "nodes": nodes, "resources": {"gpus": gpus}},
        namespace="ml",
        name="x",
        policy=OperatorSettings().policy,
    )
    assert distributed(spec) is guarded
    policy = build_network_policy(OWNER, spec)
    run = {"kubetune.io/run": OWNER.uid}
    assert policy["spec"] == {
        "podSelector": {"matchLabels": run},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": run}}]}],
    }
    assert (
        build_job(OWNER, spec, OperatorSettings())["spec"]["template"]["metadata"]["labels"]["kubetune.io/run"]
        == OWNER.uid
    )
