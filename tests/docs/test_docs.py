"""The user guide (docs/ and README.md): its examples are real files, and they validate.

* A fenced block after `<!-- example: PATH -->` holds exactly that file
  (`python tests/docs/sync_examples.py` refreshes them).
* Every FineTuneJob shown anywhere is a file under examples/.
* Every example validates: FineTuneJobs with kubetune's own loader and the CRD schema,
  Kubernetes objects with kubernetes-validate, other projects' kinds (Argo CD, Flux,
  Kueue) by their required fields.
* Links between pages resolve, and `--set` keys exist in the chart's values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from sync_examples import REPO, included

from kubetune_api.manifest import load_manifests, parse_manifest
from kubetune_api.training import TASK_NAMES
from kubetune_api.validation import LOCAL_POLICY, ClusterPolicy

DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [*DOCS, REPO / "README.md"]
EXAMPLES = REPO / "examples"
FINETUNEJOB_EXAMPLES = sorted(EXAMPLES.glob("*.yaml"))
EXTRA_EXAMPLES = sorted([*(EXAMPLES / "gitops").glob("*.yaml"), *(EXAMPLES / "kueue").glob("*.yaml")])
K8S_VERSION = "1.31.0"
FENCE = re.compile(r"^```(?P<lang>[a-z]*)\n(?P<body>.*?)^```", re.DOTALL | re.MULTILINE)

# Required fields of other projects' kinds (no offline schema for them).
FOREIGN_REQUIRED: dict[tuple[str, str], list[str]] = {
    ("argoproj.io/v1alpha1", "Application"): ["spec.project", "spec.source.repoURL", "spec.destination.server"],
    ("source.toolkit.fluxcd.io/v1", "GitRepository"): ["spec.url", "spec.interval", "spec.ref"],
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"): [
        "spec.interval",
        "spec.sourceRef.kind",
        "spec.sourceRef.name",
        "spec.prune",
    ],
    ("helm.toolkit.fluxcd.io/v2", "HelmRelease"): [
        "spec.interval",
        "spec.chart.spec.chart",
        "spec.chart.spec.sourceRef.name",
    ],
    ("kueue.x-k8s.io/v1beta1", "ResourceFlavor"): ["metadata.name"],
    ("kueue.x-k8s.io/v1beta1", "ClusterQueue"): ["spec.resourceGroups"],
    ("kueue.x-k8s.io/v1beta1", "LocalQueue"): ["metadata.namespace", "spec.clusterQueue"],
    # KAITO's Workspace keeps its fields at the top level, not under spec.
    ("kaito.sh/v1beta1", "Workspace"): ["resource.instanceType", "inference.preset.name", "inference.adapters"],
}


def _blocks(page: Path) -> Iterator[tuple[str, str]]:
    for match in FENCE.finditer(page.read_text()):
        yield match["lang"], match["body"]


def _get(obj: dict[str, Any], dotted: str) -> Any:
    value: Any = obj
    for part in dotted.split("."):
        assert isinstance(value, dict) and part in value, f"missing {dotted}"
        value = value[part]
    return value


def _crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load((REPO / "crds" / "finetunejobs.kubetune.io.yaml").read_text())
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return version["schema"]["openAPIV3Schema"]


# The operator's settings the docs assume (docs/install.md sets a default output claim);
# the quickstart is for `kubetune run`.
CLUSTER_POLICY = ClusterPolicy(default_output="pvc://models/runs")


def policy_for(where: str) -> ClusterPolicy:
    return LOCAL_POLICY if "quickstart" in where else CLUSTER_POLICY


def validate_object(obj: dict[str, Any], where: str) -> None:
    key = (obj.get("apiVersion"), obj.get("kind"))
    if obj.get("kind") == "FineTuneJob":
        parse_manifest(obj, policy_for(where))
        jsonschema.Draft4Validator(_crd_schema()).validate(obj)
    elif key in FOREIGN_REQUIRED:
        for field in FOREIGN_REQUIRED[key]:
            assert _get(obj, field) not in (None, "", []), f"{where}: {key[1]} needs {field}"
    else:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{where}: {obj.get('kind')}: {error.message} at {list(error.path)}")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_included_examples_are_the_files(page: Path) -> None:
    for path, body in included(page.read_text()):
        source = REPO / path
        assert source.is_file(), f"{page.name}: {path} does not exist"
        assert body == source.read_text(), (
            f"{page.name}: block differs from {path}: run python tests/docs/sync_examples.py"
        )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_yaml_blocks_parse_and_finetunejobs_are_example_files(page: Path) -> None:
    example_texts = {p.read_text() for p in FINETUNEJOB_EXAMPLES}
    for lang, body in _blocks(page):
        if lang != "yaml":
            continue
        documents = [d for d in yaml.safe_load_all(body) if d]
        assert documents, f"{page.name}: empty yaml block"
        for document in documents:
            if isinstance(document, dict) and document.get("kind") == "FineTuneJob":
                assert body in example_texts, f"{page.name}: a FineTuneJob that is not a file under examples/"
            elif isinstance(document, dict) and "apiVersion" in document and "kind" in document:
                validate_object(document, page.name)


@pytest.mark.parametrize("path", FINETUNEJOB_EXAMPLES, ids=lambda p: p.name)
def test_finetunejob_examples_validate(path: Path) -> None:
    jobs = load_manifests(path, policy_for(path.name))
    assert jobs
    for document in yaml.safe_load_all(path.read_text()):
        if document:
            validate_object(document, path.name)


@pytest.mark.parametrize("path", EXTRA_EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_gitops_and_kueue_examples_validate(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert documents
    for document in documents:
        validate_object(document, str(path.relative_to(REPO)))


def test_every_task_example_is_in_the_guide() -> None:
    text = "\n".join(p.read_text() for p in DOCS)
    for path in FINETUNEJOB_EXAMPLES:
        assert f"examples/{path.name}" in text, f"{path.name} is not shown or linked in docs/"
    for path in EXTRA_EXAMPLES:
        assert str(path.relative_to(REPO)) in text, f"{path.relative_to(REPO)} is not used in docs/"
    tasks = {job.spec.task for path in FINETUNEJOB_EXAMPLES for job in load_manifests(path, policy_for(path.name))}
    assert tasks >= set(TASK_NAMES)


def test_the_index_links_every_page() -> None:
    index = (REPO / "docs" / "README.md").read_text()
    for page in DOCS:
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/README.md does not link {page.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


def test_helm_set_keys_exist_in_the_chart_values() -> None:
    values = yaml.safe_load((REPO / "charts" / "kubetune" / "values.yaml").read_text())
    text = "\n".join(p.read_text() for p in PAGES)
    keys = re.findall(r"--set '?([A-Za-z][A-Za-z0-9.]*)=", text)
    assert keys
    for key in keys:
        node: Any = values
        for part in key.split("."):
            if isinstance(node, dict) and not node and part:  # a free-form map, e.g. labels
                break
            assert isinstance(node, dict) and part in node, f"--set {key}: no such chart value"
            node = node[part]


def test_troubleshooting_covers_every_failure_reason() -> None:
    """Each reason the trainer or the operator's status can report has a row."""
    import sys

    from kubetune_api.outcomes import PROBLEM_REASONS

    sys.path.insert(0, str(REPO / "tests" / "chart"))
    from health_samples import SAMPLES

    reasons = set(PROBLEM_REASONS)
    reasons |= {obj["status"]["reason"] for obj, *_ in SAMPLES.values() if obj.get("status", {}).get("reason")}
    reasons |= {"ImagePullError", "Unschedulable", "WaitingForAdmission", "OOMKilled", "DeadlineExceeded", "Disrupted"}
    text = (REPO / "docs" / "troubleshooting.md").read_text()
    missing = sorted(reason for reason in reasons if f"| `{reason}` |" not in text)
    assert missing == [], f"docs/troubleshooting.md has no row for {missing}"
