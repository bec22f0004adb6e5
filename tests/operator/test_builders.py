"""The Job builder: a pure function, checked field by field and against the batch/v1 schema."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from kubetune_operator.builders import Owner, build_job, job_name
from kubetune_operator.settings import OperatorSettings
from kubetune_operator.validation import InvalidSpecError, validate_spec
from kubetune_trainer.protocol import EXIT_INVALID_CONFIG
from kubetune_trainer.spec import TrainingSpec

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
        owner, validate_spec(spec, namespace=owner.namespace, name=owner.name, settings=settings), settings
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
        "pvc-models": "/mnt/pvc/models",
        "pvc-datasets": "/mnt/pvc/datasets",
    }
    assert container["terminationMessagePath"] == "/dev/termination-log"


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
        validate_spec(spec, namespace="ml", name="x", settings=OperatorSettings())
    done = validate_spec(spec, namespace="ml", name="x", settings=OperatorSettings(default_output="s3://b/runs"))
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
        validate_spec({**BASE, **change}, namespace="ml", name="x", settings=OperatorSettings())
    assert str(raised.value).startswith(field)
