"""The CRD's CEL rules, compiled and evaluated as the API server would (see celrules.py).

* every rule compiles (syntax, declared fields, RE2 patterns, fieldPath);
* every FineTuneJob example is accepted on create;
* updates: only spec.suspend may change; the rest is refused with the rule's message;
* cross-field rules: for each case the CEL verdict is the operator's verdict (the spec
  model, plus the persistent-output check the operator makes on every spec).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from celrules import Rule, RuleCompileError, Validator, collect_rules, compile_rule

from kubetune_api.validation import ClusterPolicy, InvalidSpecError, validate_spec
from kubetune_operator.crd import IMMUTABLE_MESSAGE, build_crd

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {
    path.name: doc
    for path in sorted((ROOT / "examples").glob("*.yaml"))
    for doc in yaml.safe_load_all(path.read_text())
    if doc and doc.get("kind") == "FineTuneJob"
}
ROOT_SCHEMA = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
RULES = collect_rules(ROOT_SCHEMA)


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(ROOT_SCHEMA)


def test_there_are_examples_and_rules() -> None:
    # Guards the tests below against passing on nothing.
    assert len(EXAMPLES) >= 8, sorted(EXAMPLES)
    assert sum(rule.transition for rule in RULES) >= 30
    assert sum(not rule.transition for rule in RULES) >= 6


@pytest.mark.parametrize("rule", RULES, ids=str)
def test_rule_compiles(rule: Rule) -> None:
    compile_rule(rule)  # raises RuleCompileError naming the rule and its path


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("spec", "has(self.lora) == has(oldSelf.lora)"),  # untyped: Kubernetes' CEL cannot see it
        ("spec", "self.data.colums == oldSelf.data.colums"),  # misspelt field
        ("spec.output", "self.uri.matches('^(?!file)')"),  # lookahead: not RE2
        ("spec", "self.task =="),  # syntax
        ("spec.output", "isURL(self.uri)"),  # a Kubernetes library function we do not provide
    ],
)
def test_compile_refuses_what_the_api_server_refuses(path: str, rule: str) -> None:
    # The compile check above can fail: these are what the API server would refuse on CRD apply.
    node = ROOT_SCHEMA
    for name in path.split("."):
        node = node["properties"][name]
    with pytest.raises(RuleCompileError, match=path.replace(".", r"\.")):
        compile_rule(Rule(path, (), node, rule, "m", None))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_examples_pass_every_rule(validator: Validator, name: str) -> None:
    assert validator.violations(EXAMPLES[name]) == []


def _example(name: str = "text-classification.yaml") -> dict[str, Any]:
    return copy.deepcopy(EXAMPLES[name])


def _messages(validator: Validator, new: dict[str, Any], old: dict[str, Any]) -> set[str]:
    return {violation.message for violation in validator.violations(new, old)}


def _set(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    node = obj
    for name in parents:
        node = node.setdefault(name, {})
    node[last] = value
    return obj


# (field named in the message, example, change)
REFUSED_UPDATES = [
    ("task", "text-classification.yaml", lambda s: _set(s, "task", "token-detection")),
    ("base", "text-classification.yaml", lambda s: _set(s, "base.model", "bert-base-uncased")),
    ("base", "text-classification.yaml", lambda s: _set(s, "base.revision", "main")),
    ("data", "text-classification.yaml", lambda s: _set(s, "data.train", "s3://other/train.csv")),
    ("output", "text-classification.yaml", lambda s: s.pop("output")),
    ("output", "text-classification.yaml", lambda s: _set(s, "output.uri", "s3://my-bucket/models/other")),
    ("output", "token-detection.yaml", lambda s: _set(s, "output", {"uri": "s3://b/m"})),
    ("trainingArgs", "language-modeling.yaml", lambda s: s.pop("trainingArgs")),
    ("resources", "text-classification.yaml", lambda s: _set(s, "resources.gpus", 2)),
    ("nodes", "text-classification.yaml", lambda s: _set(s, "nodes", 2)),
    ("env", "multi-node.yaml", lambda s: s.pop("env")),
    ("stride", "question-answering.yaml", lambda s: _set(s, "stride", 64)),
    ("prefix", "sequence-sequence.yaml", lambda s: s.pop("prefix")),
    ("activeDeadlineSeconds", "text-classification.yaml", lambda s: _set(s, "activeDeadlineSeconds", 60)),
    ("podLabels", "text-classification.yaml", lambda s: _set(s, "podLabels", {"team": "nlp"})),
]


@pytest.mark.parametrize(("field", "name", "change"), REFUSED_UPDATES, ids=lambda v: v if isinstance(v, str) else "")
def test_updates_other_than_suspend_are_refused(validator: Validator, field: str, name: str, change: Any) -> None:
    old = _example(name)
    new = copy.deepcopy(old)
    change(new["spec"])
    assert new != old
    assert f"spec.{field} {IMMUTABLE_MESSAGE}" in _messages(validator, new, old)


def test_updates_the_api_server_cannot_see_are_let_through(validator: Validator) -> None:
    # lora and quantize are `bool | object`, untyped in the CRD: Kubernetes' CEL cannot see
    # them at all, and trainingArgs' contents are unknown fields. Adding lora or changing
    # a training argument passes admission; the operator notices by the spec hash on the
    # Job (SpecChangeIgnored event). This documents that gap: if a rule ever covers one,
    # move it to the refused list above.
    old = _example()
    for change in (
        lambda s: _set(s, "lora", True),
        lambda s: _set(s, "trainingArgs.learning_rate", 1.0),
    ):
        new = copy.deepcopy(old)
        change(new["spec"])
        assert new != old
        assert validator.violations(new, old) == []


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_suspend_may_change_both_ways(validator: Validator, name: str) -> None:
    running = _example(name)
    running["spec"]["suspend"] = False
    suspended = copy.deepcopy(running)
    suspended["spec"]["suspend"] = True
    assert validator.violations(suspended, running) == []
    assert validator.violations(running, suspended) == []
    # suspend unset (defaulted to false) -> true is the same change.
    unset = copy.deepcopy(running)
    del unset["spec"]["suspend"]
    assert validator.violations(suspended, unset) == []


def test_unchanged_status_and_metadata_updates_pass(validator: Validator) -> None:
    old = _example("multi-node.yaml")
    new = copy.deepcopy(old)
    new.setdefault("metadata", {})["labels"] = {"team": "nlp"}
    new["status"] = {"phase": "Running"}
    assert validator.violations(new, old) == []


def _operator_accepts(spec: dict[str, Any]) -> bool:
    """The operator's verdict: the one validation path, with a cluster's persistent-output rules."""
    try:
        validate_spec(copy.deepcopy(spec), namespace="ns", name="run", policy=POLICY)
    except InvalidSpecError:
        return False
    return True


# A cluster's policy, with a default output for the specs that name none.
POLICY = ClusterPolicy(max_gpus_per_node=None, default_output="s3://default/runs")
OCI = "oci://registry.example.com:5000/team/sentiment:v1"
BASE_SPEC: dict[str, Any] = {"base": {"model": "bert-base-uncased"}, "data": {"train": "s3://b/train.csv"}}
SECRET = {"secretKeyRef": {"name": "hf", "key": "token"}}
CONFIG = {"configMapKeyRef": {"name": "cfg", "key": "level"}}

# (case, spec fields over BASE_SPEC, verdict)
CROSS_FIELD_CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("prefix with sequence-sequence", {"task": "sequence-sequence", "prefix": "summarize: "}, True),
    ("prefix with text-classification", {"task": "text-classification", "prefix": "x"}, False),
    ("prefix with the default task", {"prefix": "x"}, False),
    ("empty prefix with language-modeling", {"task": "language-modeling", "prefix": ""}, False),
    ("text-classification, 2 columns", {"data": {"train": "s3://b/t", "columns": ["t", "l"]}}, True),
    ("text-classification, 3 columns", {"data": {"train": "s3://b/t", "columns": ["a", "b", "l"]}}, True),
    ("text-classification, 1 column", {"data": {"train": "s3://b/t", "columns": ["t"]}}, False),
    (
        "question-answering, 3 columns",
        {"task": "question-answering", "data": {"train": "s3://b/t", "columns": ["q", "c", "a"]}},
        True,
    ),
    (
        "question-answering, 2 columns",
        {"task": "question-answering", "data": {"train": "s3://b/t", "columns": ["q", "c"]}},
        False,
    ),
    (
        "sequence-sequence, 2 columns",
        {"task": "sequence-sequence", "data": {"train": "s3://b/t", "columns": ["s", "t"]}},
        True,
    ),
    (
        "sequence-sequence, 3 columns",
        {"task": "sequence-sequence", "data": {"train": "s3://b/t", "columns": ["s", "t", "x"]}},
        False,
    ),
    (
        "language-generation, 1 column",
        {"task": "language-generation", "data": {"train": "s3://b/t", "columns": ["text"]}},
        True,
    ),
    (
        # A text pair, as the seed's language tasks read it (the task registry says so).
        "token-detection, 2 columns",
        {"task": "token-detection", "data": {"train": "s3://b/t", "columns": ["a", "b"]}},
        True,
    ),
    (
        "token-detection, 3 columns",
        {"task": "token-detection", "data": {"train": "s3://b/t", "columns": ["a", "b", "c"]}},
        False,
    ),
    (
        "language-generation, chat data",
        {"task": "language-generation", "data": {"train": "s3://b/t.jsonl", "format": "chat"}},
        True,
    ),
    (
        "data.format holding a file format",
        {"task": "language-generation", "data": {"train": "s3://b/t", "format": "jsonl"}},
        False,
    ),
    ("text-classification, chat data", {"data": {"train": "s3://b/t", "format": "chat"}}, False),
    (
        "language-modeling, text data",
        {"task": "language-modeling", "data": {"train": "s3://b/t", "format": "text"}},
        True,
    ),
    ("file format jsonl", {"data": {"train": "s3://b/t", "fileFormat": "jsonl"}}, True),
    (
        "packing and trainOnPrompt with language-generation",
        {"task": "language-generation", "packing": True, "trainOnPrompt": True, "chatTemplate": "{{ m }}"},
        True,
    ),
    ("packing with text-classification", {"packing": False}, False),
    ("chatTemplate with sequence-sequence", {"task": "sequence-sequence", "chatTemplate": "{{ m }}"}, False),
    ("output on a claim", {"output": {"uri": "pvc://models/run-1"}}, True),
    ("output in s3", {"output": {"uri": "s3://bucket/run-1"}}, True),
    ("output in azure, abfss", {"output": {"uri": "abfss://c@acct.dfs.core.windows.net/m"}}, True),
    ("output scheme in capitals", {"output": {"uri": "S3://bucket/run-1"}}, False),
    ("output PVC:// in capitals", {"output": {"uri": "PVC://models/run-1"}}, False),
    ("output pvc:// without a claim", {"output": {"uri": "pvc://"}}, False),
    ("output pvc:///x: an empty claim", {"output": {"uri": "pvc:///x"}}, False),
    ("output leaving its claim", {"output": {"uri": "pvc://models/../../cache/x"}}, False),
    ("output with an empty segment", {"output": {"uri": "pvc://models//x"}}, False),
    ("data pvc:// with a dot segment", {"data": {"train": "pvc://data/./train.csv"}}, False),
    ("base on a claim", {"base": {"model": "pvc://models/base"}}, True),
    ("base leaving its claim", {"base": {"model": "pvc://models/.."}}, False),
    ("a pod label key with a space", {"podLabels": {"team name": "a"}}, False),
    ("a prefixed node selector key", {"nodeSelector": {"nvidia.com/gpu.product": "A100"}}, True),
    ("a node selector key with two slashes", {"nodeSelector": {"a/b/c": "x"}}, False),
    ("an annotation key that is too long", {"podAnnotations": {"x" * 64: "v"}}, False),
    ("output on a local path", {"output": {"uri": "/models/run-1"}}, False),
    ("output file://", {"output": {"uri": "file:///models/run-1"}}, False),
    ("output https://", {"output": {"uri": "https://example.com/m"}}, False),
    ("output pvc-like claim name in path", {"output": {"uri": "/data/pvc://x"}}, False),
    ("env plain value", {"env": [{"name": "LOG_LEVEL", "value": "debug"}]}, True),
    ("env HF_TOKEN inline", {"env": [{"name": "HF_TOKEN", "value": "hf_abc"}]}, False),
    (
        "env connection string inline",
        {"env": [{"name": "AZURE_STORAGE_CONNECTION_STRING", "value": "AccountKey=abc"}]},
        False,
    ),
    ("env database DSN inline", {"env": [{"name": "MLFLOW_DB_DSN", "value": "postgres://u:p@h/db"}]}, False),
    ("env a plain setting", {"env": [{"name": "HF_HUB_ENABLE_HF_TRANSFER", "value": "1"}]}, True),
    ("env lower-case token inline", {"env": [{"name": "hf_token", "value": "hf_abc"}]}, False),
    ("env AWS_SECRET_ACCESS_KEY inline", {"env": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}]}, False),
    ("env API_KEY inline", {"env": [{"name": "OPENAI_API_KEY", "value": "x"}]}, False),
    ("env KEYRING (key not at end)", {"env": [{"name": "KEYRING_BACKEND", "value": "x"}]}, True),
    ("env HF_TOKEN empty value", {"env": [{"name": "HF_TOKEN", "value": ""}]}, True),
    ("env HF_TOKEN from a Secret", {"env": [{"name": "HF_TOKEN", "valueFrom": SECRET}]}, True),
    ("env from a ConfigMap", {"env": [{"name": "LEVEL", "valueFrom": CONFIG}]}, True),
    ("env value and valueFrom", {"env": [{"name": "LEVEL", "value": "x", "valueFrom": CONFIG}]}, False),
    ("env empty value and valueFrom", {"env": [{"name": "LEVEL", "value": "", "valueFrom": CONFIG}]}, False),
    ("valueFrom with both refs", {"env": [{"name": "LEVEL", "valueFrom": {**SECRET, **CONFIG}}]}, False),
    ("valueFrom with no ref", {"env": [{"name": "LEVEL", "valueFrom": {}}]}, False),
    (
        "second env item bad",
        {"env": [{"name": "LEVEL", "value": "x"}, {"name": "DB_PASSWORD", "value": "x"}]},
        False,
    ),
    ("envFrom a Secret", {"envFrom": [{"secretRef": {"name": "s"}}]}, True),
    ("envFrom a ConfigMap with prefix", {"envFrom": [{"prefix": "X_", "configMapRef": {"name": "c"}}]}, True),
    ("envFrom both", {"envFrom": [{"secretRef": {"name": "s"}, "configMapRef": {"name": "c"}}]}, False),
    ("envFrom neither", {"envFrom": [{"prefix": "X_"}]}, False),
    ("output in a registry", {"output": {"uri": OCI, "checkpointUri": "s3://b/ckpt"}}, True),
    ("registry output, checkpoints on a claim", {"output": {"uri": OCI, "checkpointUri": "pvc://m/c"}}, True),
    ("registry output without checkpointUri", {"output": {"uri": OCI}}, False),
    ("registry output, local checkpoints", {"output": {"uri": OCI, "checkpointUri": "/tmp/c"}}, False),
    ("registry output, checkpoints in a registry", {"output": {"uri": OCI, "checkpointUri": OCI}}, False),
    ("registry output without a tag", {"output": {"uri": "oci://ghcr.io/team/m", "checkpointUri": "s3://b/c"}}, False),
    (
        "registry output by digest",
        {"output": {"uri": "oci://ghcr.io/team/m@sha256:" + "a" * 64, "checkpointUri": "s3://b/c"}},
        False,
    ),
    ("registry output without a host", {"output": {"uri": "oci://team/m:v1", "checkpointUri": "s3://b/c"}}, False),
    ("registry host with a port", {"output": {"uri": "oci://localhost:5000/m:v1", "checkpointUri": "s3://b/c"}}, True),
    (
        "registry repository in capitals",
        {"output": {"uri": "oci://ghcr.io/Team/m:v1", "checkpointUri": "s3://b/c"}},
        False,
    ),
    ("registry output merging", {"output": {"uri": OCI, "checkpointUri": "s3://b/c", "mergeAdapter": True}}, False),
    (
        "registry output over HTTP",
        {"output": {"uri": OCI, "checkpointUri": "s3://b/c", "insecureRegistry": True}},
        True,
    ),
    ("checkpointUri with an s3 output", {"output": {"uri": "s3://b/m", "checkpointUri": "s3://b/c"}}, False),
    ("insecureRegistry with an s3 output", {"output": {"uri": "s3://b/m", "insecureRegistry": True}}, False),
    (
        "registrySecret with a registry",
        {"output": {"uri": OCI, "checkpointUri": "s3://b/c"}, "registrySecret": "r"},
        True,
    ),
    ("registrySecret with an s3 output", {"output": {"uri": "s3://b/m"}, "registrySecret": "r"}, False),
    ("registrySecret without an output", {"registrySecret": "r"}, False),
]


# Cases where admission and the operator disagree today, and why. Each is asserted, so
# the entry must go when either side changes.
KNOWN_DIVERGENCES: dict[str, str] = {}


@pytest.mark.parametrize(("case", "fields", "accepted"), CROSS_FIELD_CASES, ids=[c[0] for c in CROSS_FIELD_CASES])
def test_cross_field_rules_agree_with_the_operator(
    validator: Validator, case: str, fields: dict[str, Any], accepted: bool
) -> None:
    """`accepted` is the operator's verdict; CEL must give the same, known divergences aside."""
    spec = {**BASE_SPEC, **fields}
    assert _operator_accepts(spec) is accepted, f"{case}: the table is wrong about the operator"
    if case in KNOWN_DIVERGENCES:
        accepted = not accepted
    violations = validator.violations({"apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob", "spec": spec})
    assert (not violations) is accepted, f"{case}: CEL says {violations or 'accepted'}"
