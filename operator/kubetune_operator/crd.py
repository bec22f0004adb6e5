"""The FineTuneJob CustomResourceDefinition, generated from the pydantic models.

`kubetune crd > crds/finetunejobs.kubetune.io.yaml` writes it; a test fails when the
file differs from what the models generate. Pydantic's JSON schema is turned into a
Kubernetes *structural* schema: references inlined, `anyOf [X, null]` collapsed to X
(optional fields are simply not required), `bool | object` fields (quantize, lora)
become untyped `x-kubernetes-preserve-unknown-fields`, free-form maps keep unknown
fields, and JSON-schema keywords Kubernetes rejects (title, examples, const, null
defaults, additionalProperties: false) are dropped.

CEL rules (`x-kubernetes-validations`):

* immutability: every typed spec field carries the transition rule `self == oldSelf`,
  and the spec carries `has(self.f) == has(oldSelf.f)` for optional ones, so nothing
  but `suspend` can change. CEL cannot see inside untyped or unknown-field values
  (quantize, lora, trainingArgs, affinity); the operator detects changes to those
  by a spec hash on the Job and posts a SpecChangeIgnored warning Event;
* cross-field rules: columns and data formats per task, options only for the tasks that read them, a
  persistent output location, env value xor valueFrom, credentials by reference.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic.alias_generators import to_camel

from kubetune_api.argument_catalogue import ArgumentKind
from kubetune_api.argument_schema import argument_schema, cel_rules
from kubetune_api.finetunejob import QUALIFIED_NAME_PATTERN, SECRET_ENV_PATTERN, FineTuneJobSpec
from kubetune_api.oci_reference import OCI_FORM, OCI_OUTPUT_PATTERN, OCI_SCHEME
from kubetune_api.resource import API_GROUP, API_VERSION, CATEGORY, KIND, PLURAL, SHORT_NAME, SINGULAR
from kubetune_api.status_model import FineTuneJobStatus
from kubetune_api.tasks import TASKS
from kubetune_api.training import TASK_COLUMNS
from kubetune_api.uris import (
    DOT_SEGMENT_PATTERN,
    PERSISTENT_OUTPUT_SCHEMES,
    PERSISTENT_WORK_SCHEMES,
    PVC_FORM,
    PVC_SCHEME,
    PVC_URI_PATTERN,
)

Schema = dict[str, Any]

DROP_KEYS = frozenset({"title", "examples", "$defs"})
IMMUTABLE_MESSAGE = "is immutable once the FineTuneJob exists; only spec.suspend may change"

# Spec fields CEL cannot compare: untyped (bool | object) or only unknown fields inside.
OPAQUE_FIELDS = frozenset({"quantize", "lora", "trainingArgs", "uncheckedTrainingArgs", "affinity"})
UNTYPED_FIELDS = frozenset({"quantize", "lora"})  # not even has() can see these
# The spec fields whose object form the argument catalogue types (kubetune_api.argument_schema).
CATALOGUED: dict[str, ArgumentKind] = {"trainingArgs": "trainingArgs", "lora": "lora", "quantize": "quantize"}

PERSISTENT_OUTPUT_PATTERN = "^(" + "|".join(sorted(PERSISTENT_OUTPUT_SCHEMES)) + ")://"
PERSISTENT_WORK_PATTERN = "^(" + "|".join(sorted(PERSISTENT_WORK_SCHEMES)) + ")://"
SECRET_NAME_PATTERN = "(?i)" + SECRET_ENV_PATTERN


def _resolve(node: Any, defs: dict[str, Schema]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").rsplit("/", 1)[-1]])
        # The field's own description (and extras) win over the model's docstring.
        target.update(node)
        node = target
    if "allOf" in node and len(node["allOf"]) == 1:
        inner = node.pop("allOf")[0]
        node = {**_resolve(inner, defs), **node}
    return {key: _resolve(value, defs) for key, value in node.items()}


def _structural(node: Any) -> Any:
    """Pydantic JSON schema -> Kubernetes structural schema (recursive)."""
    if isinstance(node, list):
        return [_structural(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "anyOf" in node:
        node = dict(node)
        options = [option for option in node.pop("anyOf") if option.get("type") != "null"]
        if len(options) == 1:
            node = {**options[0], **node}
        else:
            # bool | object (quantize, lora): no single type; the trainer validates the value.
            node.pop("type", None)
            node.pop("additionalProperties", None)
            node["x-kubernetes-preserve-unknown-fields"] = True
    node = {key: value for key, value in node.items() if key not in DROP_KEYS}
    if "default" in node and node["default"] is None:
        del node["default"]

    if node.get("type") == "object":
        extra = node.get("additionalProperties")
        if "properties" in node or extra is False:
            node.pop("additionalProperties", None)  # Kubernetes prunes unknown fields anyway
        elif extra is True or extra == {}:
            node.pop("additionalProperties", None)
            node["x-kubernetes-preserve-unknown-fields"] = True
        elif extra is None and "properties" not in node:
            node["x-kubernetes-preserve-unknown-fields"] = True
        if node.get("x-kubernetes-preserve-unknown-fields"):
            node.pop("default", None)  # an empty default object adds nothing
    if "maxLength" in node and node.get("type") == "object":
        node["maxProperties"] = node.pop("maxLength")
    if "minLength" in node and node.get("type") == "object":
        node["minProperties"] = node.pop("minLength")
    if "default" in node and isinstance(node["default"], (dict, list)) and not node["default"]:
        del node["default"]

    return {key: _structural(value) for key, value in node.items()}


def model_schema(model: type[Any]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(_resolve(raw, raw.get("$defs", {})))


def _columns_rule() -> tuple[str, str]:
    """The CEL rule and message for columns per task, from the task registry's TASK_COLUMNS.

    Tasks that read the same number of columns share one branch; the last group is the fallback.
    """
    size = "size(self.data.columns)"
    groups: dict[tuple[int, int], list[str]] = {}
    for task, (low, high, _) in TASK_COLUMNS.items():
        groups.setdefault((low, high), []).append(task.value)
    checks = [
        (tasks, f"{size} == {low}" if low == high else f"{size} in [{', '.join(map(str, range(low, high + 1)))}]")
        for (low, high), tasks in groups.items()
    ]
    # The last group needs no condition: every other task was tested before it.
    branches = "".join(f"self.task in {tasks!r} ? {check} : " for tasks, check in checks[:-1])
    rule = f"!has(self.data.columns) || ({branches}{checks[-1][1]})"
    readings = [f"{task.value} {meaning}" for task, (_, _, meaning) in TASK_COLUMNS.items()]
    return rule, "spec.data.columns: " + "; ".join(readings)


def _formats_rule() -> tuple[str, str]:
    """The CEL rule and message for the data formats each task reads, from the task registry."""
    formats = {task.value: [data_format.value for data_format in info.formats] for task, info in TASKS.items()}
    readers = [f"{task} reads {', '.join(names)}" for task, names in formats.items() if names]
    rule = f"!has(self.data.format) || self.data.format in {formats!r}[self.task]"
    return rule, "spec.data.format: " + "; ".join(readers) + "; other tasks take no data.format"


def task_options(props: dict[str, Schema]) -> dict[str, list[str]]:
    """camelCase spec field -> the tasks that read it, for the registry's options without a default.

    A field with a default is in every stored object (the API server fills it in), so
    only the others can be checked for the task they belong to.
    """
    owners: dict[str, list[str]] = {}
    for task, info in TASKS.items():
        for option in info.options:
            name = to_camel(option)
            if "default" not in props[name]:
                owners.setdefault(name, []).append(task.value)
    return owners


def _add_rule(node: Schema, rule: str, message: str, **extra: str) -> None:
    node.setdefault("x-kubernetes-validations", []).append({"rule": rule, "message": message, **extra})


def _catalogued(field: Schema, kind: ArgumentKind) -> Schema:
    """The field with the catalogue's typed arguments (names, types, choices, bounds, help).

    trainingArgs is an object: its typed schema replaces the free-form one, so kubectl's
    strict field validation refuses a misspelt name, and the API server a wrong type or a
    value out of range, with CEL for the cross-field rules. lora and quantize may also be
    `true`, which no structural type admits: they stay typeless (preserving what is
    written, for the operator to check), and their typed properties apply when an object
    is given. CEL cannot see typeless fields; their cross-field rules are the operator's.
    """
    typed = argument_schema(kind)
    if kind not in UNTYPED_FIELDS:
        node = {**typed, "description": field["description"]}
        for rule in cel_rules(kind):
            _add_rule(node, rule["rule"], rule["message"])
        return node
    return {**field, "properties": typed["properties"]}


def spec_schema() -> Schema:
    schema = model_schema(FineTuneJobSpec)
    props: dict[str, Schema] = schema["properties"]
    required = set(schema.get("required", []))
    for name, kind in CATALOGUED.items():
        props[name] = _catalogued(props[name], kind)

    presence: list[str] = []
    for name, field in props.items():
        if name == "suspend":
            continue
        if name not in OPAQUE_FIELDS:
            _add_rule(field, "self == oldSelf", f"spec.{name} {IMMUTABLE_MESSAGE}")
        if name not in required and name not in UNTYPED_FIELDS and "default" not in field:
            presence.append(name)
    for name in presence:
        _add_rule(
            schema,
            f"has(self.{name}) == has(oldSelf.{name})",
            f"spec.{name} {IMMUTABLE_MESSAGE}",
            fieldPath=f".{name}",
        )

    # Cross-field rules, mirroring the model's validators where CEL can express them.
    for option, tasks in task_options(props).items():
        _add_rule(
            schema,
            f"!has(self.{option}) || self.task in {tasks!r}",
            f"spec.{option} is only used by task {' or '.join(tasks)}",
            fieldPath=f".{option}",
        )
    rule, message = _columns_rule()
    _add_rule(schema, rule, message, fieldPath=".data.columns")
    rule, message = _formats_rule()
    _add_rule(schema, rule, message, fieldPath=".data.format")
    _add_rule(
        props["output"],
        f"self.uri.matches('{PERSISTENT_OUTPUT_PATTERN}')",
        "spec.output.uri: the model must outlive the pod; use pvc://CLAIM/PATH, an object store "
        "(s3://, gs://, az://, ...) or a registry (oci://)",
        fieldPath=".uri",
    )
    _add_rule(
        props["output"]["properties"]["uri"],
        f"!self.startsWith('{OCI_SCHEME}://') || self.matches('{OCI_OUTPUT_PATTERN}')",
        f"write {OCI_FORM}",
    )
    _add_rule(
        props["output"],
        f"!self.uri.startsWith('{OCI_SCHEME}://') || "
        f"(has(self.checkpointUri) && self.checkpointUri.matches('{PERSISTENT_WORK_PATTERN}'))",
        "spec.output.checkpointUri: an oci:// output needs a place for its checkpoints that outlives the pod: "
        "pvc://CLAIM/PATH or an object store (s3://, gs://, az://)",
        fieldPath=".checkpointUri",
    )
    _add_rule(
        props["output"],
        f"self.uri.startsWith('{OCI_SCHEME}://') || "
        "(!has(self.checkpointUri) && !(has(self.insecureRegistry) && self.insecureRegistry))",
        "spec.output.checkpointUri and insecureRegistry are only used with an oci:// output.uri",
    )
    _add_rule(
        props["output"],
        f"!self.uri.startsWith('{OCI_SCHEME}://') || !(has(self.mergeAdapter) && self.mergeAdapter)",
        "spec.output.mergeAdapter cannot be pushed to a registry: set it to false, or use a pvc:// or "
        "object-store output.uri",
        fieldPath=".mergeAdapter",
    )
    _add_rule(
        schema,
        f"!has(self.registrySecret) || (has(self.output) && self.output.uri.startsWith('{OCI_SCHEME}://'))",
        "spec.registrySecret is only used with an oci:// spec.output.uri",
        fieldPath=".registrySecret",
    )
    pvc_rule = (
        f"!self.startsWith('{PVC_SCHEME}://') || "
        f"(self.matches('{PVC_URI_PATTERN}') && !self.matches('{DOT_SEGMENT_PATTERN}'))"
    )
    pvc_message = f"write {PVC_FORM}"
    for holder, name in (
        (props["base"], "model"),
        (props["data"], "train"),
        (props["data"], "validation"),
        (props["output"], "uri"),
        (props["output"], "checkpointUri"),
    ):
        _add_rule(holder["properties"][name], pvc_rule, f"{pvc_message}")
    for name in ("podLabels", "nodeSelector", "podAnnotations"):
        _add_rule(
            props[name],
            f"self.all(k, size(k) <= 316 && k.matches('{QUALIFIED_NAME_PATTERN}'))",
            f"spec.{name}: keys are NAME or PREFIX/NAME, NAME at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit, PREFIX a DNS name",
        )
    env_item = props["env"]["items"]
    _add_rule(env_item, "!(has(self.value) && has(self.valueFrom))", "env: set value or valueFrom, not both")
    _add_rule(
        env_item,
        f"!has(self.value) || size(self.value) == 0 || !self.name.matches('{SECRET_NAME_PATTERN}')",
        "env: this name looks like a credential; put it in a Secret and use valueFrom.secretKeyRef",
    )
    value_from = env_item["properties"]["valueFrom"]
    _add_rule(
        value_from,
        "has(self.secretKeyRef) != has(self.configMapKeyRef)",
        "valueFrom needs exactly one of secretKeyRef or configMapKeyRef",
    )
    _add_rule(
        props["envFrom"]["items"],
        "has(self.secretRef) != has(self.configMapRef)",
        "envFrom entries need exactly one of secretRef or configMapRef",
    )
    return schema


def status_schema() -> Schema:
    return model_schema(FineTuneJobStatus)


def build_crd() -> dict[str, Any]:
    root: Schema = {
        "type": "object",
        "description": (
            "A fine-tuning run of a Hugging Face model: the operator runs it as a batch/v1 Job "
            "on a GPU node and reports progress, outcome and the trained model's location."
        ),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "API version: kubetune.io/v1alpha1."},
            "kind": {"type": "string", "description": "FineTuneJob."},
            # Only `type` may be said about metadata: kube-apiserver refuses a CRD whose
            # schema gives metadata anything but name/generateName rules (even a description).
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
    }
    columns = [
        ("Phase", "string", ".status.phase", "Pending, Running, Succeeded, Failed or Suspended."),
        ("Task", "string", ".spec.task", "Training task."),
        ("Base", "string", ".spec.base.model", "Model being fine-tuned."),
        ("Progress", "integer", ".status.progress.percent", "Percent of training steps done."),
        ("Loss", "number", ".status.progress.loss", "Training loss at the last logging step."),
        ("Age", "date", ".metadata.creationTimestamp", "Time since creation."),
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{API_GROUP}",
            "labels": {"app.kubernetes.io/name": "kubetune", "app.kubernetes.io/part-of": "kubetune"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": [SHORT_NAME],
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": name, "type": kind, "jsonPath": path, "description": description}
                        for name, kind, path, description in columns
                    ],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


HEADER = "# Generated by `kubetune crd` from kubetune_api (spec models); do not edit by hand.\n"


def render_crd_yaml() -> str:
    return HEADER + yaml.safe_dump(build_crd(), sort_keys=False, width=100, allow_unicode=True)
