"""The chart's CRD is the repository's crds/ copy, installed so that upgrades upgrade it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from chartlib import CHART, REPO, VALUE_SETS, kinds, render

SOURCE = REPO / "crds" / "finetunejobs.kubetune.io.yaml"
CHART_COPY = CHART / "files" / "crds" / "finetunejobs.kubetune.io.yaml"
SYNC = f"cp {SOURCE.relative_to(REPO)} {CHART_COPY.relative_to(REPO)}"


def _load(path: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert len(docs) == 1, f"{path}: expected exactly one document"
    return docs[0]


def test_chart_copy_is_identical_to_crds() -> None:
    assert SOURCE.is_file(), f"{SOURCE.relative_to(REPO)} is missing (generate it with `kubetune crd`)"
    assert CHART_COPY.is_file(), f"the chart has no CRD copy: {SYNC}"
    assert CHART_COPY.read_bytes() == SOURCE.read_bytes(), f"the chart's CRD differs from crds/: {SYNC}"


def test_rendered_crd_is_the_source_plus_labels_and_keep() -> None:
    source = _load(SOURCE)
    crds = kinds(render(), "CustomResourceDefinition")
    [crd] = [c for c in crds if c["metadata"]["name"] == "finetunejobs.kubetune.io"]
    assert crd["spec"] == source["spec"]
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    for key, value in (source["metadata"].get("labels") or {}).items():
        assert crd["metadata"]["labels"][key] == value
    names = crd["spec"]["names"]
    assert (crd["spec"]["group"], names["kind"], names["plural"]) == ("kubetune.io", "FineTuneJob", "finetunejobs")
    assert "ftj" in names["shortNames"]


def test_crd_keep_and_disable() -> None:
    crds = kinds(render({"crds": {"keep": False}}), "CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in (crds[0]["metadata"].get("annotations") or {})
    assert kinds(render(VALUE_SETS["no-crds-no-metrics-service"]), "CustomResourceDefinition") == []


def test_chart_has_no_helm_crds_folder() -> None:
    # Helm installs crds/ once and never upgrades it; the CRD is a template instead.
    assert not (CHART / "crds").exists()
