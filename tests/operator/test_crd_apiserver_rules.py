"""The generated CRD against the rules kube-apiserver applies on create (apiextensions_rules.py).

kmock accepts any CRD, so these tests stand in for a real API server:

* the CRD `kubetune crd` generates (and the copies in crds/ and the chart) passes every rule;
* every rule can fail: a small change to the CRD that breaks it gets the API server's error,
  the metadata description that a v1.36 kube-apiserver refused included;
* the estimated CEL costs are the API server's (golden values from Kubernetes' own
  TestCostEstimation), and no rule's worst case exceeds the per-call limit at runtime;
* the CRD fits in kubectl's last-applied-configuration annotation.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from apiextensions_rules import (
    PER_CALL_LIMIT,
    STATIC_ESTIMATED_COST_LIMIT,
    TOTAL_ANNOTATION_SIZE_LIMIT_B,
    check_crd,
    validate_crd,
)
from celcost import estimate_cost
from celtyped import MAX_REQUEST_SIZE_BYTES, TypedEnvironments, schema_decl_type

from kubetune_operator.crd import build_crd

REPO = Path(__file__).resolve().parents[2]
CRD_FILES = [
    REPO / "crds" / "finetunejobs.kubetune.io.yaml",
    REPO / "charts/kubetune/files/crds/finetunejobs.kubetune.io.yaml",
]

ROOT = "spec.validation.openAPIV3Schema"  # a single-version CRD's schema, as the API server names it
SPEC = f"{ROOT}.properties[spec]"
STATUS = f"{ROOT}.properties[status]"
PROBE = f"{SPEC}.properties[probe]"  # a field the tests add to spec

Mutation = Callable[[dict[str, Any]], Any]

DNS1035 = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, "
    "and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is "
    "'[a-z]([-a-z0-9]*[a-z0-9])?')"
)
DNS1123 = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
COST_HINT = (
    "(try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are "
    "declared)"
)


def fresh() -> dict[str, Any]:
    return copy.deepcopy(build_crd())


def version(crd: dict[str, Any]) -> dict[str, Any]:
    return crd["spec"]["versions"][0]


def root(crd: dict[str, Any]) -> dict[str, Any]:
    return version(crd)["schema"]["openAPIV3Schema"]


def spec(crd: dict[str, Any]) -> dict[str, Any]:
    return root(crd)["properties"]["spec"]["properties"]


def status(crd: dict[str, Any]) -> dict[str, Any]:
    return root(crd)["properties"]["status"]["properties"]


def probe(schema: dict[str, Any]) -> Mutation:
    """Add spec.probe with this schema."""
    return lambda crd: spec(crd).__setitem__("probe", copy.deepcopy(schema))


def rule(node: Callable[[dict[str, Any]], dict[str, Any]], **fields: Any) -> Mutation:
    """Append one x-kubernetes-validations entry to the node."""
    return lambda crd: node(crd).setdefault("x-kubernetes-validations", []).append(dict(fields))


def both(*mutations: Mutation) -> Mutation:
    def apply(crd: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(crd)

    return apply


def errors_after(mutation: Mutation) -> list[str]:
    crd = fresh()
    mutation(crd)
    return validate_crd(crd)


# --- the CRD as generated -----------------------------------------------------------------------


def test_generated_crd_passes_every_rule() -> None:
    assert validate_crd(build_crd()) == []


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_crd_files_pass_every_rule(path: Path) -> None:
    assert validate_crd(yaml.safe_load(path.read_text())) == []


def test_every_cel_rule_was_compiled_and_costed() -> None:
    # Guards against the CEL checks silently not running (they are skipped when the schema is not structural).
    rules = [node for node in _schema_nodes(root(build_crd())) for _ in node.get("x-kubernetes-validations", [])]
    report = check_crd(build_crd())
    assert len(report.per_call_costs) == len(rules) > 30
    assert 0 < report.total_cost < 100_000_000


def _schema_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for sub in (node.get("properties") or {}).values():
        found += _schema_nodes(sub)
    for name in ("items", "additionalProperties"):
        if isinstance(node.get(name), dict):
            found += _schema_nodes(node[name])
    return found


def test_no_rule_can_exceed_the_runtime_per_call_cost_limit() -> None:
    """Admission only caps cost x cardinality (StaticEstimatedCostLimit), but every evaluation is also
    cut off at PerCallLimit: a rule whose worst case exceeds it refuses large-but-valid objects with
    "call cost exceeds limit". Bounding the strings and lists a rule reads (maxLength, maxItems) fixes it."""
    report = check_crd(build_crd())
    over = {path: cost for path, cost in report.per_call_costs.items() if cost > PER_CALL_LIMIT}
    assert over == {}, f"worst-case cost per evaluation above {PER_CALL_LIMIT}: {over}"


def test_crd_fits_the_last_applied_annotation(capsys: pytest.CaptureFixture[str]) -> None:
    """kubectl apply (client-side) stores the whole object in an annotation; annotations total 256 KiB."""
    crd = build_crd()
    indented = len(json.dumps(crd, indent=2).encode())
    compact = len(json.dumps(crd, separators=(",", ":")).encode())
    with capsys.disabled():
        print(
            f"\nCRD size: {indented} bytes as indented JSON, {compact} compact (limit {TOTAL_ANNOTATION_SIZE_LIMIT_B})"
        )
    assert indented < TOTAL_ANNOTATION_SIZE_LIMIT_B
    # The annotation kubectl would add is itself checked by the API server's annotation size rule.
    applied = copy.deepcopy(crd)
    applied["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": json.dumps(crd, indent=2)}
    assert validate_crd(applied) == []
    assert compact < MAX_REQUEST_SIZE_BYTES


def test_the_metadata_description_that_kube_apiserver_refused() -> None:
    """The regression: v1.36 refused the CRD while kmock accepted it."""

    def describe_metadata(crd: dict[str, Any]) -> None:
        root(crd)["properties"]["metadata"]["description"] = "Standard object metadata."

    assert errors_after(describe_metadata) == [
        "spec.validation.openAPIV3Schema.properties[metadata]: Forbidden: must not specify anything other than name "
        "and generateName, but metadata is implicitly specified"
    ]


def test_metadata_may_constrain_name_and_generate_name() -> None:
    # The rule is exact: name/generateName constraints are the one thing allowed under metadata.
    def name_rules(crd: dict[str, Any]) -> None:
        root(crd)["properties"]["metadata"]["properties"] = {"name": {"type": "string", "maxLength": 63}}

    assert errors_after(name_rules) == []


def test_generate_name_is_a_prefix() -> None:
    # ValidateObjectMeta checks generateName as a name prefix: a trailing dash is fine, plural.group still applies.
    assert errors_after(lambda crd: crd["metadata"].__setitem__("generateName", "finetunejobs-")) == [
        'metadata.generateName: Invalid value: "finetunejobs-": must be spec.names.plural+"."+spec.group'
    ]


# --- each rule, broken -----------------------------------------------------------------------------


def _set(path: str, value: Any) -> Mutation:
    """Set a dotted path (list indexes as numbers) in the CRD."""

    def apply(crd: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = crd
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return apply


def _delete(path: str) -> Mutation:
    def apply(crd: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = crd
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[last]

    return apply


def _rule_count(node: dict[str, Any]) -> int:
    return len(node.get("x-kubernetes-validations", []))


# Where an appended rule lands: the generated CRD's rule counts, not numbers written here.
_GENERATED = build_crd()
SPEC_RULE = _rule_count(root(_GENERATED)["properties"]["spec"])
OUTPUT_RULE = _rule_count(spec(_GENERATED)["output"])
ENV_ITEM_RULE = _rule_count(spec(_GENERATED)["env"]["items"])
# A spec field with a transition rule (oldSelf), and that rule's index.
TRANSITION_FIELD, TRANSITION_RULE = next(
    (name, i)
    for name, node in spec(_GENERATED).items()
    for i, entry in enumerate(node.get("x-kubernetes-validations", []))
    if "oldSelf" in entry["rule"]
)
BASE_TOTAL_COST = check_crd(_GENERATED).total_cost
V0 = "spec.versions.0"
SCHEMA = f"{V0}.schema.openAPIV3Schema"
SPEC_NODE = lambda crd: root(crd)["properties"]["spec"]  # noqa: E731
STRINGS = {"type": "array", "items": {"type": "string"}}

CASES: list[tuple[str, Mutation, list[str]]] = [
    # --- ObjectMeta of the CRD (objectmeta.go, ValidateCustomResourceDefinition's name rule)
    (
        "name must be plural.group",
        _set("metadata.name", "finetunejobs.example.com"),
        ['metadata.name: Invalid value: "finetunejobs.example.com": must be spec.names.plural+"."+spec.group'],
    ),
    (
        "name is a DNS subdomain",
        both(_set("metadata.name", "FineTuneJobs.kubetune.io"), _set("spec.names.plural", "FineTuneJobs")),
        [f'metadata.name: Invalid value: "FineTuneJobs.kubetune.io": {DNS1123}'],
    ),
    (
        "generateName is checked like the name",
        _set("metadata.generateName", "finetunejobs-"),
        ['metadata.generateName: Invalid value: "finetunejobs-": must be spec.names.plural+"."+spec.group'],
    ),
    (
        "no namespace on a cluster-scoped object",
        _set("metadata.namespace", "default"),
        ["metadata.namespace: Forbidden: not allowed on this type"],
    ),
    (
        "label keys are qualified names",
        _set("metadata.labels", {"bad key": "x"}),
        [
            "metadata.labels: Invalid value: \"bad key\": name part must consist of alphanumeric characters, '-', '_' "
            "or '.', "
            "and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
            "regex used "
            "for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        ],
    ),
    (
        "label values are short",
        _set("metadata.labels", {"team": "x" * 64}),
        [f'metadata.labels: Invalid value: "{"x" * 64}": must be no more than 63 characters'],
    ),
    (
        "annotations total 256 KiB",
        _set("metadata.annotations", {"big": "x" * TOTAL_ANNOTATION_SIZE_LIMIT_B}),
        ["metadata.annotations: Too long: may not be more than 262144 bytes"],
    ),
    # --- group, scope, versions
    ("group is required", _set("spec.group", ""), ["spec.group: Required value"]),
    (
        "group is a DNS subdomain",
        _set("spec.group", "KubeTune.io"),
        [f'spec.group: Invalid value: "KubeTune.io": {DNS1123}'],
    ),
    (
        "group has a dot",
        both(_set("spec.group", "kubetune"), _set("metadata.name", "finetunejobs.kubetune")),
        ['spec.group: Invalid value: "kubetune": should be a domain with at least one dot'],
    ),
    (
        "scope is Cluster or Namespaced",
        _set("spec.scope", "Global"),
        ['spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced"'],
    ),
    (
        "version names are DNS-1035 labels",
        _set(f"{V0}.name", "v1_alpha1"),
        [
            f'spec.versions[0].name: Invalid value: "v1_alpha1": {DNS1035}',
            f'spec.version: Invalid value: "v1_alpha1": {DNS1035}',
        ],
    ),
    (
        "exactly one storage version",
        _set(f"{V0}.storage", False),
        ['spec.versions: Invalid value: ["v1alpha1"]: must have exactly one version marked as storage version'],
    ),
    (
        "version names are unique",
        lambda crd: crd["spec"]["versions"].append({**version(crd), "storage": False}),
        ['spec.versions: Invalid value: ["v1alpha1","v1alpha1"]: must contain unique version names'],
    ),
    (
        "every version has a schema",
        _delete(f"{V0}.schema"),
        ["spec.versions[0].schema.openAPIV3Schema: Required value"],
    ),
    (
        "deprecationWarning needs deprecated",
        _set(f"{V0}.deprecationWarning", "use v1"),
        ['spec.versions[0].deprecationWarning: Invalid value: "use v1": can only be set for deprecated versions'],
    ),
    (
        "deprecationWarning is short",
        both(_set(f"{V0}.deprecated", True), _set(f"{V0}.deprecationWarning", "x" * 257)),
        [f'spec.versions[0].deprecationWarning: Invalid value: "{"x" * 257}": must be <= 256 characters long'],
    ),
    (
        "preserveUnknownFields is false",
        _set("spec.preserveUnknownFields", True),
        [
            "spec.preserveUnknownFields: Invalid value: true: must be false in order to use defaults in the schema",
            "spec.preserveUnknownFields: Invalid value: true: cannot set to true, set "
            "x-kubernetes-preserve-unknown-fields "
            "to true in spec.versions[*].schema instead",
        ],
    ),
    (
        "conversion strategy",
        _set("spec.conversion", {"strategy": "Magic"}),
        ['spec.conversion.strategy: Unsupported value: "Magic": supported values: "None", "Webhook"'],
    ),
    (
        "webhook conversion needs a client config",
        _set("spec.conversion", {"strategy": "Webhook"}),
        ["spec.conversion.webhookClientConfig: Required value: required when strategy is set to Webhook"],
    ),
    (
        "None conversion has no webhook",
        _set("spec.conversion", {"strategy": "None", "webhook": {"clientConfig": {"url": "https://x"}}}),
        ["spec.conversion.webhookClientConfig: Forbidden: should not be set when strategy is not set to Webhook"],
    ),
    (
        "k8s.io groups need API approval",
        both(_set("spec.group", "kubetune.x-k8s.k8s.io"), _set("metadata.name", "finetunejobs.kubetune.x-k8s.k8s.io")),
        [
            "metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups must have approval "
            "annotation "
            "'api-approved.kubernetes.io', see https://github.com/kubernetes/enhancements/pull/1111"
        ],
    ),
    # --- names
    (
        "kind is required",
        both(_delete("spec.names.kind"), _delete("spec.names.listKind")),
        ["spec.names.kind: Required value", "spec.names.listKind: Required value"],
    ),
    (
        "deprecationWarning is printable",
        both(_set(f"{V0}.deprecated", True), _set(f"{V0}.deprecationWarning", "use\tv1")),
        [
            'spec.versions[0].deprecationWarning: Invalid value: "use\\tv1": must only contain printable UTF-8 '
            "characters; non-printable character found at index 3"
        ],
    ),
    (
        "plural is required",
        both(_delete("spec.names.plural"), _set("metadata.name", ".kubetune.io")),
        ["spec.names.plural: Required value"],
    ),
    (
        "plural is a DNS-1035 label",
        both(_set("spec.names.plural", "fine_tune_jobs"), _set("metadata.name", "fine_tune_jobs.kubetune.io")),
        [f'spec.names.plural: Invalid value: "fine_tune_jobs": {DNS1035}'],
    ),
    (
        "singular is a DNS-1035 label",
        _set("spec.names.singular", "FineTuneJob"),
        [f'spec.names.singular: Invalid value: "FineTuneJob": {DNS1035}'],
    ),
    (
        "kind is a label but for case",
        both(_set("spec.names.kind", "FineTune Job"), _set("spec.names.listKind", "FineTuneJobList")),
        [f'spec.names.kind: Invalid value: "FineTune Job": may have mixed case, but should otherwise match: {DNS1035}'],
    ),
    (
        "listKind differs from kind",
        _set("spec.names.listKind", "FineTuneJob"),
        ['spec.names.listKind: Invalid value: "FineTuneJob": kind and listKind may not be the same'],
    ),
    (
        "shortNames are DNS-1035 labels",
        _set("spec.names.shortNames", ["ft-"]),
        [f'spec.names.shortNames[0]: Invalid value: "ft-": {DNS1035}'],
    ),
    (
        "categories are DNS-1035 labels",
        _set("spec.names.categories", ["Kube_Tune"]),
        [f'spec.names.categories[0]: Invalid value: "Kube_Tune": {DNS1035}'],
    ),
    # --- subresources and printer columns (single version: named at the top level)
    (
        "webhook conversion needs one of url or service",
        _set(
            "spec.conversion",
            {"strategy": "Webhook", "webhook": {"clientConfig": {}, "conversionReviewVersions": ["v1"]}},
        ),
        ["spec.conversion.webhookClientConfig: Required value: exactly one of url or service is required"],
    ),
    (
        "webhook conversion understands v1 or v1beta1",
        _set(
            "spec.conversion",
            {
                "strategy": "Webhook",
                "webhook": {"clientConfig": {"url": "https://x"}, "conversionReviewVersions": ["v2"]},
            },
        ),
        ['spec.conversion.conversionReviewVersions: Invalid value: ["v2"]: must include at least one of v1, v1beta1'],
    ),
    (
        "webhook conversion needs preserveUnknownFields false",
        both(
            _set("spec.preserveUnknownFields", True),
            _set("spec.conversion", {"strategy": "Webhook", "webhook": {"clientConfig": {"url": "https://x"}}}),
        ),
        [
            'spec.conversion.strategy: Invalid value: "Webhook": must be None if spec.preserveUnknownFields is true',
        ],
    ),
    (
        "scale paths are simple json paths",
        _set(f"{V0}.subresources.scale", {"specReplicasPath": "spec.nodes", "statusReplicasPath": ".spec.nodes"}),
        [
            'spec.subresources.scale.specReplicasPath: Invalid value: "spec.nodes": must be a simple json path '
            "starting with .",
            'spec.subresources.scale.statusReplicasPath: Invalid value: ".spec.nodes": should be a json path under '
            ".status",
        ],
    ),
    (
        "column name is required",
        _delete(f"{V0}.additionalPrinterColumns.0.name"),
        ["spec.additionalPrinterColumns[0].name: Required value"],
    ),
    (
        "column types",
        _set(f"{V0}.additionalPrinterColumns.3.type", "float"),
        [
            'spec.additionalPrinterColumns[3].type: Invalid value: "float": must be one of '
            "boolean,date,integer,number,string"
        ],
    ),
    (
        "column formats",
        _set(f"{V0}.additionalPrinterColumns.3.format", "percent"),
        [
            'spec.additionalPrinterColumns[3].format: Invalid value: "percent": must be one of '
            "byte,date,date-time,double,float,int32,int64,password"
        ],
    ),
    (
        "column jsonPath starts with a dot",
        _set(f"{V0}.additionalPrinterColumns.0.jsonPath", "status.phase"),
        [
            'spec.additionalPrinterColumns[0].JSONPath: Invalid value: "status.phase": must be a simple json path '
            "starting with ."
        ],
    ),
    (
        "column jsonPath is required",
        _delete(f"{V0}.additionalPrinterColumns.0.jsonPath"),
        ["spec.additionalPrinterColumns[0].JSONPath: Required value"],
    ),
    # --- selectable fields
    (
        "selectable fields are scalars",
        _set(f"{V0}.selectableFields", [{"jsonPath": ".spec.base"}]),
        [
            'spec.selectableFields[0].jsonPath: Invalid value: ".spec.base": must point to a field of type string, '
            "boolean or "
            "integer. Enum string fields and strings with formats are allowed."
        ],
    ),
    (
        "selectable fields exist",
        _set(f"{V0}.selectableFields", [{"jsonPath": ".spec.nope"}]),
        [
            'spec.selectableFields[0].jsonPath: Invalid value: ".spec.nope": is an invalid path: does not refer to a '
            "valid field"
        ],
    ),
    (
        "selectable fields are unique",
        _set(f"{V0}.selectableFields", [{"jsonPath": ".spec.task"}, {"jsonPath": ".spec.task"}]),
        ['spec.selectableFields[1].jsonPath: Duplicate value: ".spec.task"'],
    ),
    (
        "selectable fields are not in metadata",
        both(
            lambda crd: root(crd)["properties"]["metadata"].__setitem__("properties", {"name": {"type": "string"}}),
            _set(f"{V0}.selectableFields", [{"jsonPath": ".metadata.name"}]),
        ),
        ['spec.selectableFields[0].jsonPath: Invalid value: ".metadata.name": must not point to fields in metadata'],
    ),
    (
        "at most 8 selectable fields",
        _set(
            f"{V0}.selectableFields",
            [
                {"jsonPath": f".spec.{f}"}
                for f in (
                    "task",
                    "maxLength",
                    "stride",
                    "prefix",
                    "image",
                    "nodes",
                    "priorityClassName",
                    "serviceAccountName",
                    "backoffLimit",
                )
            ],
        ),
        ["spec.selectableFields: Too many: 9: must have at most 8 items"],
    ),
    # --- strict decoding (kubectl --validate=strict, the default)
    (
        "unknown schema keywords",
        lambda crd: spec(crd)["task"].__setitem__("const", "x"),
        [
            "strict decoding error: unknown field "
            '"spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.task.const"'
        ],
    ),
    (
        "unknown version fields",
        _set(f"{V0}.servd", True),
        ['strict decoding error: unknown field "spec.versions[0].servd"'],
    ),
    (
        "JSON types",
        _set(f"{V0}.served", "yes"),
        ["json: cannot unmarshal string into Go value of type bool (spec.versions[0].served)"],
    ),
    # --- the root of the schema
    (
        "kind is a string",
        lambda crd: root(crd)["properties"]["kind"].__setitem__("type", "integer"),
        [f'{ROOT}.properties[kind].type: Invalid value: "integer": must be string'],
    ),
    (
        "metadata is an object",
        lambda crd: root(crd)["properties"]["metadata"].__setitem__("type", "string"),
        [f'{ROOT}.properties[metadata].type: Invalid value: "string": must be object'],
    ),
    (
        "metadata has no defaults",
        lambda crd: root(crd)["properties"]["metadata"].__setitem__("default", {}),
        [f"{ROOT}.properties[metadata].default: Forbidden: must not be set in top-level metadata"],
    ),
    (
        "metadata has no other fields",
        lambda crd: root(crd)["properties"]["metadata"].__setitem__("properties", {"labels": {"type": "object"}}),
        [
            f"{ROOT}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but "
            "metadata is implicitly specified"
        ],
    ),
    (
        "root is an object",
        _set(f"{SCHEMA}.type", "array"),
        [
            f'{ROOT}.type: Invalid value: "array": only "object" is allowed as the type at the root of the schema if '
            "the status "
            "subresource is enabled",
            f'{ROOT}.type: Invalid value: "array": must be object at the root',
        ],
    ),
    (
        "root is not nullable",
        _set(f"{SCHEMA}.nullable", True),
        [f"{ROOT}.nullable: Forbidden: nullable cannot be true at the root"],
    ),
    (
        "root has no additionalProperties",
        _set(f"{SCHEMA}.additionalProperties", {"type": "string"}),
        [
            f"{ROOT}.additionalProperties: Forbidden: must not be used at the root",
            f"{ROOT}.additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
        ],
    ),
    (
        "root fields with the status subresource",
        _set(f"{SCHEMA}.maxProperties", 10),
        [
            f'{ROOT}: Invalid value: {{"<field>":"maxProperties"}}: only [Description Type Format Title Maximum '
            "ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems "
            "MultipleOf "
            "Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations] fields are allowed "
            "at the root "
            "of the schema if the status subresource is enabled"
        ],
    ),
    # --- structural schema
    (
        "fields have a type",
        probe({"description": "x"}),
        [f"{PROBE}.type: Required value: must not be empty for specified object fields"],
    ),
    (
        "items have a type",
        probe({"type": "array", "items": {"description": "x"}}),
        [f"{PROBE}.items.type: Required value: must not be empty for specified array items"],
    ),
    ("arrays have items", probe({"type": "array"}), [f"{PROBE}.items: Required value: must be specified"]),
    (
        "types are OpenAPI types",
        probe({"type": "map"}),
        [
            f'{PROBE}.type: Unsupported value: "map": supported values: "array", "boolean", "integer", "number", '
            '"object", "string"'
        ],
    ),
    (
        "no null type",
        probe({"type": "null"}),
        [f"{PROBE}.type: Forbidden: type cannot be set to null, use nullable as an alternative"],
    ),
    (
        "no $ref",
        probe({"type": "object", "$ref": "#/definitions/x"}),
        [f"{PROBE}.$ref: Forbidden: $ref is not supported"],
    ),
    ("no id", probe({"type": "object", "id": "x"}), [f"{PROBE}.id: Forbidden: id is not supported"]),
    (
        "no $schema",
        probe({"type": "object", "$schema": "http://json-schema.org/draft-04/schema#"}),
        [f"{ROOT}: Invalid value: \"\": OpenAPIV3Schema 'schema' is not supported"],
    ),
    (
        "no patternProperties",
        probe({"type": "object", "patternProperties": {"^a": {"type": "string"}}}),
        [f"{PROBE}.patternProperties: Forbidden: patternProperties is not supported"],
    ),
    (
        "no definitions",
        probe({"type": "object", "definitions": {"a": {"type": "string"}}}),
        [f"{PROBE}.definitions: Forbidden: definitions is not supported"],
    ),
    (
        "no dependencies",
        probe({"type": "object", "dependencies": {"a": ["b"]}}),
        [f"{PROBE}.dependencies: Forbidden: dependencies is not supported"],
    ),
    (
        "no additionalItems",
        probe({"type": "array", "items": {"type": "string"}, "additionalItems": False}),
        [f"{PROBE}.additionalItems: Forbidden: additionalItems is not supported"],
    ),
    (
        "items is one schema",
        probe({"type": "array", "items": [{"type": "string"}]}),
        [f"{PROBE}.items: Forbidden: items must be a schema object and not an array"],
    ),
    (
        "properties exclude additionalProperties: false",
        lambda crd: spec(crd)["base"].__setitem__("additionalProperties", False),
        [
            f"{SPEC}.properties[base].additionalProperties: Forbidden: additionalProperties and properties are mutual "
            "exclusive"
        ],
    ),
    (
        "properties exclude additionalProperties",
        lambda crd: spec(crd)["base"].__setitem__("additionalProperties", {"type": "string"}),
        [
            f"{SPEC}.properties[base].additionalProperties: Forbidden: additionalProperties and properties are mutual "
            "exclusive"
        ],
    ),
    (
        "no uniqueItems",
        lambda crd: spec(crd)["tolerations"].__setitem__("uniqueItems", True),
        [
            f"{SPEC}.properties[tolerations].uniqueItems: Forbidden: uniqueItems cannot be set to true since the "
            "runtime "
            "complexity becomes quadratic"
        ],
    ),
    (
        "preserve-unknown-fields is true or unset",
        lambda crd: spec(crd)["trainingArgs"].__setitem__("x-kubernetes-preserve-unknown-fields", False),
        [
            f"{SPEC}.properties[trainingArgs].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be "
            "true or undefined"
        ],
    ),
    (
        "no types in value validations",
        probe({"type": "string", "anyOf": [{"type": "string"}]}),
        [f"{PROBE}.anyOf[0].type: Forbidden: must be empty to be structural"],
    ),
    (
        "no descriptions in value validations",
        probe({"type": "string", "allOf": [{"description": "x"}]}),
        [f"{PROBE}.allOf[0].description: Forbidden: must be empty to be structural"],
    ),
    (
        "no defaults in value validations",
        probe({"type": "string", "oneOf": [{"default": "x"}]}),
        [f"{PROBE}.oneOf[0].default: Forbidden: must be undefined to be structural"],
    ),
    (
        "no CEL in value validations",
        probe({"type": "string", "not": {"x-kubernetes-validations": [{"rule": "true"}]}}),
        [f"{PROBE}.not.x-kubernetes-validations: Forbidden: must be empty to be structural"],
    ),
    (
        "no nullable in value validations",
        probe({"type": "string", "anyOf": [{"nullable": True}]}),
        [f"{PROBE}.anyOf[0].nullable: Forbidden: must be false to be structural"],
    ),
    (
        "no list-type in value validations",
        probe({"type": "array", "items": {"type": "string"}, "allOf": [{"x-kubernetes-list-type": "set"}]}),
        [f"{PROBE}.allOf[0].x-kubernetes-list-type: Forbidden: must be undefined to be structural"],
    ),
    (
        "no metadata in value validations",
        probe(
            {
                "type": "object",
                "properties": {"metadata": {"type": "object"}},
                "anyOf": [{"properties": {"metadata": {}}}],
            }
        ),
        [f"{PROBE}.anyOf[0].properties[metadata]: Forbidden: must not be specified in a nested context"],
    ),
    (
        "no additionalProperties in value validations",
        probe({"type": "object", "anyOf": [{"additionalProperties": {}}]}),
        [f"{PROBE}.anyOf[0].additionalProperties: Forbidden: must be undefined to be structural"],
    ),
    # completeness is checked for the root's value validations (complete.go), which the status subresource also refuses
    (
        "value validations name structural fields",
        _set(f"{SCHEMA}.anyOf", [{"properties": {"nope": {"minLength": 1}}}]),
        [f"{ROOT}.properties[nope]: Required value: because it is defined in {ROOT}.anyOf[0].properties[nope]"],
    ),
    (
        "int-or-string and preserve-unknown-fields exclude each other",
        probe({"x-kubernetes-int-or-string": True, "x-kubernetes-preserve-unknown-fields": True}),
        [
            f"{PROBE}.x-kubernetes-preserve-unknown-fields: Invalid value: true: must be false if "
            "x-kubernetes-int-or-string is true"
        ],
    ),
    (
        "patterns are RE2",
        probe({"type": "string", "pattern": "^(?!file)"}),
        [
            f'{PROBE}.pattern: Invalid value: "^(?!file)": must be a valid regular expression, but isn\'t: invalid '
            "regular "
            "expression: invalid perl operator: (?!"
        ],
    ),
    (
        "embedded resources are objects",
        probe({"type": "string", "x-kubernetes-embedded-resource": True, "x-kubernetes-preserve-unknown-fields": True}),
        [f'{PROBE}.type: Invalid value: "string": must be object if x-kubernetes-embedded-resource is true'],
    ),
    (
        "embedded resources have no additionalProperties",
        probe({"type": "object", "x-kubernetes-embedded-resource": True, "additionalProperties": {"type": "string"}}),
        [f"{PROBE}.additionalProperties: Forbidden: must not be used if x-kubernetes-embedded-resource is set"],
    ),
    (
        "no embedded resources inside metadata",
        lambda crd: root(crd)["properties"]["metadata"].__setitem__("x-kubernetes-embedded-resource", True),
        [
            f"{ROOT}.properties[metadata].x-kubernetes-embedded-resource: Forbidden: must not be used inside of "
            "resource meta"
        ],
    ),
    (
        "no defaults in an embedded resource's metadata maps",
        probe(
            {
                "type": "object",
                "x-kubernetes-embedded-resource": True,
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {
                    "metadata": {"type": "object", "additionalProperties": {"type": "string", "default": "x"}}
                },
            }
        ),
        [
            f"{PROBE}.properties[metadata].additionalProperties.default: Forbidden: must not be set inside "
            "additionalProperties applying to object metadata"
        ],
    ),
    (
        "embedded resources declare fields",
        probe({"type": "object", "x-kubernetes-embedded-resource": True}),
        [
            f"{PROBE}.properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without "
            "x-kubernetes-preserve-unknown-fields"
        ],
    ),
    (
        "map-type on objects",
        probe({"type": "string", "x-kubernetes-map-type": "atomic"}),
        [f'{PROBE}.type: Invalid value: "string": must be object if x-kubernetes-map-type is specified'],
    ),
    (
        "map-type values",
        probe({"type": "object", "x-kubernetes-map-type": "sparse"}),
        [f'{PROBE}.x-kubernetes-map-type: Unsupported value: "sparse": supported values: "atomic", "granular"'],
    ),
    # --- defaults
    (
        "defaults have the field's type",
        lambda crd: spec(crd)["stride"].__setitem__("default", "128"),
        [f'{SPEC}.properties[stride].default: Invalid value: "128": in body must be of type integer: "string"'],
    ),
    (
        "defaults respect bounds",
        lambda crd: spec(crd)["nodes"].__setitem__("default", 1000),
        [f"{SPEC}.properties[nodes].default: Invalid value: 1000: in body should be less than or equal to 128"],
    ),
    (
        "defaults have no unknown fields",
        lambda crd: spec(crd)["output"].__setitem__("default", {"uri": "s3://b/m", "bogus": 1}),
        [
            f'{SPEC}.properties[output].default: Invalid value: {{"bogus":1,"uri":"s3://b/m"}}: must not have unknown '
            "fields"
        ],
    ),
    (
        "defaults pass the CEL rules",
        lambda crd: spec(crd)["output"].__setitem__("default", {"uri": "/tmp/model"}),
        [
            f'{SPEC}.properties[output].default.uri: Invalid value: "object": spec.output.uri: the model must outlive '
            "the pod; use "
            "pvc://CLAIM/PATH, an object store (s3://, gs://, az://, ...) or a registry (oci://)"
        ],
    ),
    # --- list types
    (
        "map lists have keys",
        _delete(f"{SCHEMA}.properties.status.properties.conditions.x-kubernetes-list-map-keys"),
        [
            f"{STATUS}.properties[conditions].x-kubernetes-list-map-keys: Required value: must not be empty if "
            "x-kubernetes-list-type is map"
        ],
    ),
    (
        "map keys are item properties",
        _set(f"{SCHEMA}.properties.status.properties.conditions.x-kubernetes-list-map-keys", ["kind"]),
        [
            f'{STATUS}.properties[conditions].x-kubernetes-list-map-keys: Invalid value: ["kind"]: entries must all '
            "be names of item properties"
        ],
    ),
    (
        "map keys are unique",
        _set(f"{SCHEMA}.properties.status.properties.conditions.x-kubernetes-list-map-keys", ["type", "type"]),
        [
            f'{STATUS}.properties[conditions].x-kubernetes-list-map-keys: Invalid value: ["type","type"]: must not '
            "contain duplicate entries"
        ],
    ),
    (
        "map keys are required or defaulted",
        lambda crd: status(crd)["conditions"]["items"]["required"].remove("type"),
        [
            f"{STATUS}.properties[conditions].items.properties[type].default: Required value: this property is in "
            "x-kubernetes-list-map-keys, so it must have a default or be a required property"
        ],
    ),
    (
        "map keys are scalars",
        probe(
            {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["k"],
                "items": {"type": "object", "required": ["k"], "properties": {"k": {"type": "object"}}},
            }
        ),
        [
            f'{PROBE}.items.properties[k].type: Invalid value: "object": must be a scalar type if parent array\'s '
            "x-kubernetes-list-type is map"
        ],
    ),
    (
        "map keys are not nullable",
        probe(
            {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["k"],
                "items": {
                    "type": "object",
                    "required": ["k"],
                    "properties": {"k": {"type": "string", "nullable": True}},
                },
            }
        ),
        [
            f"{PROBE}.items.properties[k].nullable: Forbidden: this property is in x-kubernetes-list-map-keys, so it "
            "cannot be nullable"
        ],
    ),
    (
        "map lists have items",
        probe({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"]}),
        [f"{PROBE}.items: Required value: must have a schema if x-kubernetes-list-type is map"],
    ),
    (
        "map list items are objects",
        probe(
            {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["k"],
                "items": {"type": "string"},
            }
        ),
        [
            f'{PROBE}.items.type: Invalid value: "string": must be object if parent array\'s x-kubernetes-list-type '
            "is map"
        ],
    ),
    (
        "map keys need list-type map",
        _set(f"{SCHEMA}.properties.status.properties.conditions.x-kubernetes-list-type", "set"),
        [
            f'{STATUS}.properties[conditions].x-kubernetes-list-type: Invalid value: "set": must be map if '
            "x-kubernetes-list-map-keys is non-empty"
        ],
    ),
    (
        "map keys need a list-type",
        _delete(f"{SCHEMA}.properties.status.properties.conditions.x-kubernetes-list-type"),
        [
            f"{STATUS}.properties[conditions].x-kubernetes-list-type: Required value: must be map if "
            "x-kubernetes-list-map-keys is non-empty"
        ],
    ),
    (
        "list-type on arrays",
        probe({"type": "object", "x-kubernetes-list-type": "atomic"}),
        [f'{PROBE}.type: Invalid value: "object": must be array if x-kubernetes-list-type is specified'],
    ),
    (
        "list-type values",
        probe({"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "bag"}),
        [f'{PROBE}.x-kubernetes-list-type: Unsupported value: "bag": supported values: "atomic", "set", "map"'],
    ),
    (
        "set items are atomic",
        probe(
            {
                "type": "array",
                "x-kubernetes-list-type": "set",
                "items": {"type": "object", "properties": {"a": {"type": "string"}}},
            }
        ),
        [
            f"{PROBE}.items.x-kubernetes-map-type: Invalid value: null: must be atomic as item of a list with "
            "x-kubernetes-list-type=set"
        ],
    ),
    (
        "set items are not nullable",
        probe({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string", "nullable": True}}),
        [f"{PROBE}.items.nullable: Forbidden: cannot be nullable when x-kubernetes-list-type is set"],
    ),
    # --- x-kubernetes-validations: the fields
    (
        "rules are not empty",
        rule(SPEC_NODE, rule="  "),
        [f"{SPEC}.x-kubernetes-validations[{SPEC_RULE}].rule: Required value: rule is not specified"],
    ),
    (
        "messages are one line",
        rule(SPEC_NODE, rule="true", message="one\ntwo"),
        [
            f'{SPEC}.x-kubernetes-validations[{SPEC_RULE}].message: Invalid value: "one\\ntwo": must not contain line '
            "breaks"
        ],
    ),
    (
        "messages are not blank",
        rule(SPEC_NODE, rule="true", message="  "),
        [f'{SPEC}.x-kubernetes-validations[{SPEC_RULE}].message: Invalid value: "  ": must be non-empty if specified'],
    ),
    (
        "multi-line rules have a message",
        rule(SPEC_NODE, rule="true &&\ntrue"),
        [
            f"{SPEC}.x-kubernetes-validations[{SPEC_RULE}].message: Required value: message must be specified if rule "
            "contains line breaks"
        ],
    ),
    (
        "messageExpressions are not blank",
        rule(SPEC_NODE, rule="true", messageExpression=" "),
        [
            f"{SPEC}.x-kubernetes-validations[{SPEC_RULE}].messageExpression: Required value: messageExpression must "
            "be non-empty if specified"
        ],
    ),
    (
        "reasons",
        rule(SPEC_NODE, rule="true", reason="FieldValueTooLong"),
        [
            f'{SPEC}.x-kubernetes-validations[{SPEC_RULE}].reason: Unsupported value: "FieldValueTooLong": supported '
            "values: "
            '"FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"'
        ],
    ),
    (
        "fieldPaths exist",
        rule(SPEC_NODE, rule="true", fieldPath=".data.colums"),
        [
            f'{SPEC}.x-kubernetes-validations[{SPEC_RULE}].fieldPath: Invalid value: ".data.colums": must be a valid '
            "path"
        ],
    ),
    (
        "fieldPaths are one line",
        rule(SPEC_NODE, rule="true", fieldPath=".task\n"),
        [
            f'{SPEC}.x-kubernetes-validations[{SPEC_RULE}].fieldPath: Invalid value: ".task\\n": must not contain '
            "line breaks"
        ],
    ),
    # --- x-kubernetes-validations: compiled against the schema's types
    (
        "rules type-check",
        rule(SPEC_NODE, rule="self.task == 1"),
        [
            f'{SPEC}.x-kubernetes-validations[{SPEC_RULE}].rule: Invalid value: {{"rule":"self.task == 1"}}: '
            "compilation failed: "
            "ERROR: <input>:1:11: found no matching overload for '_==_' applied to '(string, int)'\n | self.task == "
            "1\n | ..........^"
        ],
    ),
    (
        "rules name declared fields",
        rule(SPEC_NODE, rule="has(self.lora)"),
        [
            f'{SPEC}.x-kubernetes-validations[{SPEC_RULE}].rule: Invalid value: {{"rule":"has(self.lora)"}}: '
            "compilation failed: "
            "ERROR: <input>:1:4: undefined field 'lora' not found in struct"
        ],
    ),
    (
        "rules return bool",
        rule(SPEC_NODE, rule="self.task"),
        [
            f'{SPEC}.x-kubernetes-validations[{SPEC_RULE}].rule: Invalid value: {{"rule":"self.task"}}: cel '
            "expression must evaluate to a bool"
        ],
    ),
    (
        "regex literals are RE2",
        rule(lambda crd: spec(crd)["output"], rule="self.uri.matches('^(?!file)')"),
        [
            f"{SPEC}.properties[output].x-kubernetes-validations[{OUTPUT_RULE}].rule: Invalid value: "
            f'{{"rule":"self.uri.matches(\'^(?!file)\')"}}: '
            "compilation failed: ERROR: <input>: invalid matches argument: invalid regular expression: invalid perl "
            "operator: (?!"
        ],
    ),
    (
        "list literals are homogeneous",
        rule(SPEC_NODE, rule="self.task in ['text', 1]"),
        [
            f"{SPEC}.x-kubernetes-validations[{SPEC_RULE}].rule: Invalid value: "
            f'{{"rule":"self.task in [\'text\', 1]"}}: compilation '
            "failed: ERROR: <input>: expected type of int and string to be the same in an aggregate literal"
        ],
    ),
    (
        "messageExpressions compile",
        rule(SPEC_NODE, rule="true", messageExpression="'task ' + self.tsk"),
        [
            f"{SPEC}.x-kubernetes-validations[{SPEC_RULE}].messageExpression: Invalid value: "
            '{"messageExpression":"\'task \' + self.tsk","rule":"true"}: messageExpression compilation failed: '
            "ERROR: <input>:1:15: undefined field 'tsk' not found in struct"
        ],
    ),
    (
        "messageExpressions return strings",
        rule(SPEC_NODE, rule="true", messageExpression="size(self.task)"),
        [
            f"{SPEC}.x-kubernetes-validations[{SPEC_RULE}].messageExpression: Invalid value: "
            f'{{"messageExpression":"size(self.task)",'
            '"rule":"true"}: messageExpression must evaluate to a string'
        ],
    ),
    (
        "rules on untyped fields",
        rule(lambda crd: spec(crd)["lora"], rule="true"),
        [
            f"{SPEC}.properties[lora].x-kubernetes-validations: Internal error: internal error: failed to construct "
            "type "
            "information for x-kubernetes-validations rules: unable to convert structural schema to CEL declarations"
        ],
    ),
    (
        "oldSelf only where values correlate (list items)",
        rule(lambda crd: spec(crd)["env"]["items"], rule="self == oldSelf"),
        [
            f'{SPEC}.properties[env].items.x-kubernetes-validations[{ENV_ITEM_RULE}].rule: Invalid value: "self == '
            'oldSelf": oldSelf cannot '
            f"be used on the uncorrelatable portion of the schema within {SPEC}.properties[env]"
        ],
    ),
    (
        "oldSelf only where values correlate (atomic maps)",
        lambda crd: root(crd)["properties"]["spec"].__setitem__("x-kubernetes-map-type", "atomic"),
        [
            f"{SPEC}.properties[{TRANSITION_FIELD}].x-kubernetes-validations[{TRANSITION_RULE}].rule: Invalid value: "
            f"{json.dumps(spec(_GENERATED)[TRANSITION_FIELD]['x-kubernetes-validations'][TRANSITION_RULE]['rule'])}: "
            "oldSelf "
            f"cannot be used on the uncorrelatable portion of the schema within {SPEC}"
        ],
    ),
    (
        "optionalOldSelf needs oldSelf",
        rule(SPEC_NODE, rule="true", optionalOldSelf=True),
        [
            f"{SPEC}.x-kubernetes-validations[{SPEC_RULE}].optionalOldSelf: Invalid value: true: may not be set if "
            "oldSelf is not used in rule"
        ],
    ),
    # --- x-kubernetes-validations: estimated cost
    (
        "rule cost",
        probe(
            {
                "type": "array",
                "items": {"type": "string"},
                "x-kubernetes-validations": [{"rule": "self.all(x, self.all(y, x == y))"}],
            }
        ),
        [
            f"{PROBE}.x-kubernetes-validations[0].rule: Forbidden: estimated rule cost exceeds budget by factor of "
            "more than "
            f"100x {COST_HINT}"
        ],
    ),
    (
        "rule cost through cardinality",
        probe(
            {
                "type": "array",
                "items": {
                    "type": "string",
                    "maxLength": 100,
                    "x-kubernetes-validations": [{"rule": "self.matches('^[a-z]+$')"}],
                },
            }
        ),
        [
            f"{PROBE}.items.x-kubernetes-validations[0].rule: Forbidden: estimated rule cost exceeds budget by factor "
            "of 8.7x "
            f"{COST_HINT}"
        ],
    ),
    (
        "messageExpression cost",
        probe(
            {
                **STRINGS,
                "x-kubernetes-validations": [
                    {"rule": "true", "messageExpression": "self.exists(x, x.matches('^a')) ? 'a' : 'b'"}
                ],
            }
        ),
        [
            f"{PROBE}.x-kubernetes-validations[0].messageExpression: Forbidden: estimated messageExpression cost "
            "exceeds budget "
            f"by factor of more than 100x {COST_HINT}"
        ],
    ),
    (
        "total cost of all rules",
        probe(
            {
                "type": "array",
                "maxItems": 1000,
                "items": {
                    "type": "string",
                    "maxLength": 5000,
                    "x-kubernetes-validations": [{"rule": "self.matches('^[a-z]+$')"}] * 26,
                },
            }
        ),
        [
            f"{PROBE}.items.x-kubernetes-validations[0].rule: Forbidden: contributed to estimated rule cost total "
            "exceeding "
            "cost limit for entire OpenAPIv3 schema",
            f"{ROOT}: Forbidden: x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema "
            "exceeds budget "
            f"by factor of {(BASE_TOTAL_COST + 26 * 4003 * 1000) / 100_000_000:f}x {COST_HINT}",
        ],
    ),
]


@pytest.mark.parametrize(("mutation", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_rule_refuses_what_it_should(mutation: Mutation, expected: list[str]) -> None:
    errors = errors_after(mutation)
    for message in expected:
        assert any(message in error for error in errors), f"expected {message!r} in {errors}"


ACCEPTED: list[tuple[str, Mutation]] = [
    # Shapes near the rules above that the API server accepts: each rule is as narrow as its source.
    (
        "int-or-string with its anyOf",
        probe({"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}),
    ),
    ("additionalProperties: false without properties", probe({"type": "object", "additionalProperties": False})),
    (
        "oldSelf in map list items",
        rule(lambda crd: status(crd)["conditions"]["items"], rule="self.type == oldSelf.type"),
    ),
    ("oldSelf in map values", rule(lambda crd: spec(crd)["podLabels"]["additionalProperties"], rule="self == oldSelf")),
    (
        "bounded list with a costly rule",
        probe(
            {
                "type": "array",
                "maxItems": 10,
                "items": {"type": "string", "maxLength": 100},
                "x-kubernetes-validations": [{"rule": "self.all(x, self.all(y, x == y))"}],
            }
        ),
    ),
    (
        "a reason and a valid fieldPath",
        rule(SPEC_NODE, rule="true", reason="FieldValueForbidden", fieldPath=".data.columns"),
    ),
    ("quoted fieldPath keys", rule(lambda crd: spec(crd)["data"], rule="true", fieldPath="['columns']")),
    ("a string messageExpression", rule(SPEC_NODE, rule="true", messageExpression="'task ' + self.task")),
]


@pytest.mark.parametrize("mutation", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_what_the_rules_allow(mutation: Mutation) -> None:
    assert errors_after(mutation) == []


# --- the cost estimate itself --------------------------------------------------------------------


def _typed(t: str) -> dict[str, Any]:
    if t == "int-or-string":
        return {"x-kubernetes-int-or-string": True}
    if t in ("duration", "date", "date-time"):
        return {"type": "string", "format": t}
    return {"type": t}


def _bounded(schema: dict[str, Any], limit: int | None) -> dict[str, Any]:
    """The schema with maxItems/maxProperties/maxLength set where it has one (as the Go generators do)."""
    if limit is None:
        return schema
    word = {"array": "maxItems", "object": "maxProperties", "string": "maxLength"}[schema.get("type", "array")]
    return {**schema, word: limit}


def _array(t: str) -> Callable[[int | None], dict[str, Any]]:
    return lambda n: _bounded({"type": "array", "items": _typed(t)}, n)


def _map(value: dict[str, Any]) -> Callable[[int | None], dict[str, Any]]:
    return lambda n: _bounded({"type": "object", "additionalProperties": value}, n)


def _string(n: int | None) -> dict[str, Any]:
    return _bounded({"type": "string"}, n)


_OBJECT = {
    "type": "object",
    "properties": {"required": {"type": "string"}, "optional": {"type": "string"}},
    "required": ["required"],
}


def _nested_strings(n: int | None) -> dict[str, Any]:
    return _bounded({"type": "object", "additionalProperties": _string(n)}, n)


def _all_max_nested(n: int | None) -> dict[str, Any]:
    inner = _bounded(_OBJECT, n)
    return _bounded({"type": "array", "items": _bounded({"type": "object", "additionalProperties": inner}, n)}, n)


# staging/src/k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel/compilation_test.go TestCostEstimation:
# (schema generator, rule, cost without limits, limit, cost with it), the cost being one evaluation's MaxCost.
GOLDEN_COSTS = [
    (_array("number"), "self.all(x, true)", 4718591, 10, 32),
    (_array("string"), "self.all(x, true)", 3145727, 20, 62),
    (_array("boolean"), "self.all(x, true)", 1887437, 5, 17),
    (
        lambda n: _bounded({"type": "array", "items": {"type": "array", "items": {"type": "number"}}}, n),
        "self.all(x, true)",
        3145727,
        100,
        302,
    ),
    (lambda n: _bounded({"type": "array", "items": _OBJECT}, n), "self.all(x, true)", 555128, 50, 152),
    (_map(_typed("number")), "self.all(x, true)", 1348169, 10, 32),
    (_map(_typed("string")), "self.all(x, true)", 1179647, 3, 11),
    (_map(_typed("boolean")), "self.all(x, true)", 943718, 100, 302),
    (_string, "self.contains('test')", 314574, 10, 5),
    (_string, "self.startsWith('test')", 2, 15, 2),
    (_string, "self.endsWith('test')", 2, 30, 2),
    (_string, 'size(self + "hello") > size("hello")', 314578, 4, 7),
    (_array("number"), "self[1] == 0.0", 2, 5000, 2),
    (_array("string"), "self[1] == self[1]", 314577, 8, 314577),
    (_array("number"), "self.all(x, self.all(y, true))", None, 10, 352),
    (_array("number"), "self.all(x, self.all(y, self.all(z, true)))", None, 10, 3552),
    (_string, 'self.matches("x")', 314574, 50, 22),
    (_string, '"".matches("(((((((((())))))))))[0-9]")', 7, 10, 7),
    (_string, 'self.matches("")', 1, 100, 1),
    (_nested_strings, "self.all(x, x.contains(self[x]))", 2752507, 10, 72),
    (_array("number"), "self[3] == 0.0", 2, 0, 2),
    (_map(_typed("number")), 'self["x"] == 0.0', 2, 0, 2),
    (_string, 'self == "x"', 2, 0, 1),
    (_array("number"), "self.all(x, x == 0.0)", 6291454, 3 * 1024 * 2048, 25165826),
    (_all_max_nested, 'self.all(x, x["y"].required == "z")', 7340027, 10, 72),
    (_array("int-or-string"), "self.all(x, true)", 4718591, 10, 32),
    (_array("int-or-string"), "self[0] == 5", 3, 10, 3),
    (_array("boolean"), "self[0] == false", 2, 25, 2),
    (lambda n: _bounded({"type": "array", "items": _OBJECT}, n), "self[0] == null", 2, 422, 2),
    (
        lambda n: _bounded({"type": "array", "items": {"type": "array", "items": {"type": "number"}}}, n),
        "self[0][0] == -1.0",
        3,
        51,
        3,
    ),
    (
        lambda n: _bounded(
            {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "number"}}}, n
        ),
        "self.all(x, x.y == 25.2)",
        6291452,
        12,
        74,
    ),
    (
        lambda n: _bounded(
            {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "number"}}}, n
        ),
        "self[0].x > 2.0",
        4,
        3000,
        4,
    ),
    (_array("duration"), "self.all(x, true)", 2359295, 5, 17),
    (_array("duration"), "self[0].getHours() == 2", 4, 525, 4),
    (_array("date"), "self.all(x, true)", 725936, 15, 47),
    (_array("date"), "self[2].getDayOfMonth() == 13", 4, 42, 4),
    (_array("date-time"), "self.all(x, true)", 428963, 25, 77),
    (_array("date-time"), "self[2].getMinutes() == 45", 4, 99, 4),
    (_map(_typed("int-or-string")), "self.all(x, true)", 1348169, 15, 47),
    (_map(_OBJECT), "self.all(x, true)", 428963, 20, 62),
    (_map({"type": "object", "additionalProperties": {"type": "number"}}), "self.all(x, true)", 1179647, 10, 32),
    (_map({"type": "array", "items": {"type": "number"}}), "self.all(x, true)", 1179647, 25, 77),
    (_map(_typed("duration")), "self.all(x, true)", 1048577, 5, 17),
    (_map(_typed("date")), "self.all(x, true)", 524288, 10, 32),
    (_map(_typed("date-time")), "self.all(x, true)", 349526, 25, 77),
    (_map(_typed("integer")), "oldSelf.size() == self.size()", 5, 10, 5),
    (_map(_typed("date-time")), 'self["a"] == self["b"]', 8, 7, 8),
    (_map(_typed("duration")), 'self["c"] == self["d"]', 8, 42, 8),
    (
        lambda n: _bounded({"type": "string", "enum": ["A", "B", "C", "LongValue"]}, n),
        "self.contains('A')",
        2,
        1000,
        401,
    ),
]


def _golden_params() -> list[Any]:
    params = []
    for make, expression, unbounded, limit, bounded in GOLDEN_COSTS:
        if unbounded is not None:
            params.append(pytest.param(make(None), expression, unbounded, id=f"{expression} unbounded"))
        params.append(pytest.param(make(limit), expression, bounded, id=f"{expression} limit {limit}"))
    return params


@pytest.mark.parametrize(("schema", "expression", "expected"), _golden_params())
def test_cost_estimate_matches_kubernetes(schema: dict[str, Any], expression: str, expected: int) -> None:
    decl = schema_decl_type(schema, False)
    assert decl is not None
    _return_type, checked = TypedEnvironments({"x": decl}).compile("x", expression)
    assert estimate_cost(checked, decl).max == expected


def test_costliest_generated_rules_stay_under_the_admission_limit() -> None:
    report = check_crd(build_crd())
    assert max(report.rule_costs.values()) < STATIC_ESTIMATED_COST_LIMIT
