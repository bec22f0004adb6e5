"""`helm lint --strict` with every value set, and the schema rejecting bad values."""

from __future__ import annotations

import tarfile
import tempfile
from typing import Any

import pytest
import yaml
from chartlib import CHART, VALUE_SETS, HelmError, helm, render, values_file


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint_strict(name: str) -> None:
    values = values_file(VALUE_SETS[name])
    out = helm("lint", "--strict", str(CHART), "--namespace", "kubetune-system", "--values", values)
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # Mistyped keys, at the top and nested: additionalProperties false everywhere.
        ({"replicaCounts": 2}, "replicaCounts"),
        ({"image": {"tags": "1.0"}}, "tags"),
        ({"trainer": {"gpuResorce": "amd.com/gpu"}}, "gpuResorce"),
        ({"metrics": {"serviceMonitor": {"enable": True}}}, "enable"),
        ({"peering": {"enabled": True, "nmae": "x"}}, "nmae"),
        # Wrong types and values.
        ({"replicaCount": "2"}, "replicaCount"),
        ({"logFormat": "yaml"}, "logFormat"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"watch": {"namespaces": ["Team_A"]}}, "namespaces"),
        ({"defaultOutput": "/local/path"}, "defaultOutput"),
        ({"trainer": {"maxGpusPerNode": 0}}, "maxGpusPerNode"),
        ({"image": {"digest": "latest"}}, "digest"),
        # More than one replica only with Kopf peering.
        ({"replicaCount": 2}, "peering"),
    ],
)
def test_schema_rejects(values: dict[str, Any], expected: str) -> None:
    with pytest.raises(HelmError, match=expected):
        render(values)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"watch": {"clusterWide": True, "namespaces": ["a"]}}, "watch.namespaces is only used"),
        ({"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}}, "needs metrics.service"),
        ({"serviceAccount": {"create": False}}, "serviceAccount.name is required"),
    ],
)
def test_template_rejects_inconsistent_values(values: dict[str, Any], expected: str) -> None:
    with pytest.raises(HelmError, match=expected):
        render(values)


def test_package() -> None:
    """The chart packages (what a release publishes), CRD file included."""
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    out_dir = tempfile.mkdtemp()
    helm("package", str(CHART), "--destination", out_dir)
    with tarfile.open(f"{out_dir}/kubetune-{version}.tgz") as tar:
        names = tar.getnames()
    assert "kubetune/files/crds/finetunejobs.kubetune.io.yaml" in names
    assert "kubetune/values.schema.json" in names


def test_chart_version_is_the_package_version() -> None:
    """One version source: kubetune_api.__version__ (pyproject reads it); the chart follows."""
    from kubetune_api import __version__

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == __version__
