"""The pod of a registry output (credentials, checkpoint claim) and the grace period a stopped pod gets."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from kubetune_api.training import TrainingSpec
from kubetune_api.validation import InvalidSpecError, validate_spec
from kubetune_operator.builders import Owner, build_job
from kubetune_operator.settings import OperatorSettings, SettingsError

OWNER = Owner(name="sentiment", namespace="ml", uid="1234-abcd")
REGISTRY_SPEC: dict[str, Any] = {
    "base": {"model": "org/tiny-llama"},
    "data": {"train": "s3://bucket/train.csv"},
    "lora": True,
    "output": {"uri": "oci://ghcr.io/team/sentiment:v1", "checkpointUri": "pvc://runs/sentiment"},
    "registrySecret": "ghcr-push",
}


def build(spec: dict[str, Any]) -> dict[str, Any]:
    settings = OperatorSettings(trainer_image="trainer:1")
    return build_job(OWNER, validate_spec(spec, namespace="ml", name="sentiment", policy=settings.policy), settings)


def env_of(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return {entry["name"]: entry for entry in container["env"]}


def test_registry_credentials_reach_the_trainer_by_reference_only() -> None:
    job = build(REGISTRY_SPEC)
    kubernetes_validate.validate(job, "1.30", strict=True)
    env = env_of(job)
    assert env["KUBETUNE_REGISTRY_AUTH"] == {
        "name": "KUBETUNE_REGISTRY_AUTH",
        "valueFrom": {"secretKeyRef": {"name": "ghcr-push", "key": ".dockerconfigjson"}},
    }
    # The checkpoint claim is mounted writable and the trainer sees its path; the registry stays a URI.
    training = TrainingSpec.model_validate_json(env["KUBETUNE_JOB"]["value"])
    assert training.output is not None
    assert training.output.uri == "oci://ghcr.io/team/sentiment:v1"
    assert training.output.checkpoint_uri == "/mnt/pvc/runs/sentiment"
    pod = job["spec"]["template"]["spec"]
    assert {"name": "pvc-runs", "persistentVolumeClaim": {"claimName": "runs", "readOnly": False}} in pod["volumes"]


def test_a_user_variable_cannot_replace_the_credentials() -> None:
    spec = {**REGISTRY_SPEC, "env": [{"name": "KUBETUNE_REGISTRY_AUTH", "value": "{}"}]}
    assert env_of(build(spec))["KUBETUNE_REGISTRY_AUTH"]["valueFrom"]["secretKeyRef"]["name"] == "ghcr-push"


def test_no_secret_no_credentials_variable() -> None:
    spec = {key: value for key, value in REGISTRY_SPEC.items() if key != "registrySecret"}
    assert "KUBETUNE_REGISTRY_AUTH" not in env_of(build(spec))


@pytest.mark.parametrize(("given", "expected"), [(None, 300), (45, 45), (3600, 3600)])
def test_grace_period_goes_on_the_pod_and_to_the_trainer(given: int | None, expected: int) -> None:
    spec = dict(REGISTRY_SPEC)
    if given is not None:
        spec["terminationGracePeriodSeconds"] = given
    job = build(spec)
    assert job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == expected
    assert env_of(job)["KUBETUNE_TERMINATION_GRACE_SECONDS"]["value"] == str(expected)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"terminationGracePeriodSeconds": 5}, "spec.terminationGracePeriodSeconds: Input should be greater than"),
        ({"terminationGracePeriodSeconds": 7200}, "spec.terminationGracePeriodSeconds: Input should be less than"),
        ({"output": {"uri": "oci://ghcr.io/team/sentiment:v1"}}, "spec.output.checkpointUri: an oci:// output needs"),
        (
            {"output": {"uri": "oci://ghcr.io/team/sentiment", "checkpointUri": "s3://b/c"}},
            "names no tag: add one",
        ),
        (
            {"output": {"uri": "oci://sentiment:v1", "checkpointUri": "s3://b/c"}},
            "names no repository",
        ),
        (
            {"output": {"uri": "oci://team/sentiment:v1", "checkpointUri": "s3://b/c"}},
            "'team' is not a registry host",
        ),
        (
            {"output": {"uri": "oci://ghcr.io/team/m:v1", "checkpointUri": "s3://b/c", "mergeAdapter": True}},
            "output.mergeAdapter cannot be pushed to a registry",
        ),
        ({"output": {"uri": "s3://b/m"}}, "spec: registrySecret is only used with an oci:// spec.output.uri"),
        ({"registrySecret": "Not_A_Name"}, "spec.registrySecret: 'Not_A_Name' is not a Secret name"),
    ],
)
def test_registry_and_grace_mistakes_name_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpecError) as raised:
        validate_spec({**REGISTRY_SPEC, **change}, namespace="ml", name="x", policy=OperatorSettings().policy)
    assert message in str(raised.value)


def test_a_registry_cannot_be_the_default_output() -> None:
    with pytest.raises(SettingsError, match=r"KUBETUNE_DEFAULT_OUTPUT='oci://ghcr\.io/team'"):
        OperatorSettings.from_env({"KUBETUNE_DEFAULT_OUTPUT": "oci://ghcr.io/team"})
