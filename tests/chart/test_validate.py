"""Every object the chart renders validates offline against the Kubernetes schemas."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from chartlib import VALUE_SETS, kinds, render

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas.
K8S_VERSIONS = ["1.31.0", kubernetes_validate.latest_version()]

# Kinds from other projects' CRDs: kubernetes-validate has no schema for them, so their
# required fields are checked by hand below.
FOREIGN_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("kopf.dev/v1", "KopfPeering"),
    ("kopf.dev/v1", "ClusterKopfPeering"),
}


def _check_foreign(obj: dict[str, Any]) -> None:
    assert obj["metadata"]["name"]
    if obj["kind"] == "ServiceMonitor":
        spec = obj["spec"]
        assert spec["selector"]["matchLabels"]
        for endpoint in spec["endpoints"]:
            assert endpoint["port"] and endpoint["path"] == "/metrics"
    else:
        assert "spec" not in obj  # Kopf keeps peers in .status only


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rendered_objects_validate(name: str, version: str) -> None:
    objects = render(VALUE_SETS[name])
    assert objects
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        if key in FOREIGN_KINDS:
            _check_foreign(obj)
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            what = f"{obj['kind']}/{obj['metadata']['name']} ({name}, Kubernetes {version})"
            pytest.fail(f"{what}: {error.message} at {list(error.path)}")


def test_every_value_set_renders_expected_kinds() -> None:
    defaults = {o["kind"] for o in render()}
    assert defaults == {
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "Deployment",
    }
    ha = render(VALUE_SETS["ha-clusterwide"])
    assert {o["metadata"]["name"] for o in kinds(ha, "CustomResourceDefinition")} == {
        "finetunejobs.kubetune.io",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }
    assert len(kinds(ha, "ClusterKopfPeering")) == 1
    assert len(kinds(ha, "PodDisruptionBudget")) == 1
