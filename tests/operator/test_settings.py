"""Operator settings from the environment: defaults, parsing, and errors naming the variable."""

from __future__ import annotations

import pytest

from kubetune_operator.permissions import REQUIRED_RULES
from kubetune_operator.settings import OperatorSettings, SettingsError


def test_defaults() -> None:
    settings = OperatorSettings.from_env({})
    assert settings.trainer_image.startswith("ghcr.io/kubetune/trainer:")
    assert (settings.gpu_resource, settings.gpu_toleration_key) == ("nvidia.com/gpu", "nvidia.com/gpu")
    assert settings.clusterwide and settings.kopf_namespace_args() == ["--all-namespaces"]
    assert (settings.progress_interval_seconds, settings.metrics_port, settings.max_gpus_per_node) == (30.0, 8080, 8)
    assert settings.default_output is None


def test_parsing() -> None:
    settings = OperatorSettings.from_env(
        {
            "KUBETUNE_NAMESPACES": " team-a, team-b ,team-a",
            "KUBETUNE_GPU_RESOURCE": "amd.com/gpu",
            "KUBETUNE_GPU_TOLERATION_KEY": "",
            "KUBETUNE_PROGRESS_INTERVAL_SECONDS": "2.5",
            "KUBETUNE_DEFAULT_OUTPUT": "s3://bucket/runs/",
            "KUBETUNE_METRICS_PORT": "0",
        }
    )
    assert settings.namespaces == ("team-a", "team-b")
    assert settings.kopf_namespace_args() == ["--namespace", "team-a", "--namespace", "team-b"]
    assert settings.serves("team-a") and not settings.serves("other")
    assert settings.gpu_toleration_key == ""
    assert settings.default_output == "s3://bucket/runs"
    assert settings.progress_interval_seconds == 2.5 and settings.metrics_port == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KUBETUNE_PROGRESS_INTERVAL_SECONDS", "0"),
        ("KUBETUNE_PROGRESS_INTERVAL_SECONDS", "soon"),
        ("KUBETUNE_DEFAULT_OUTPUT", "/tmp/models"),
        ("KUBETUNE_DEFAULT_OUTPUT", "pvc://"),
        ("KUBETUNE_METRICS_PORT", "70000"),
        ("KUBETUNE_NAMESPACES", "Team_A"),
        ("KUBETUNE_GPU_RESOURCE", "nvidia gpu"),
        ("KUBETUNE_MAX_GPUS_PER_NODE", "0"),
    ],
)
def test_errors_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        OperatorSettings.from_env({name: value})


def test_rbac_rules_cover_the_calls() -> None:
    namespaced = {
        (g, r): set(rule["verbs"])
        for rule in REQUIRED_RULES["namespaced"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert {"create", "patch", "watch"} <= namespaced[("batch", "jobs")]
    assert "patch" in namespaced[("kubetune.io", "finetunejobs/status")]
    assert "patch" not in namespaced[("kubetune.io", "finetunejobs")]  # spec is the user's
    assert namespaced[("", "pods/log")] == {"get"}
    assert "create" in namespaced[("", "events")]
    assert {r for rule in REQUIRED_RULES["peering"] for r in rule["resources"]} == {
        "clusterkopfpeerings",
        "kopfpeerings",
    }
