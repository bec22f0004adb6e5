"""The checks kube-apiserver makes when a CustomResourceDefinition is created, ported to Python.

kmock (the test API server) accepts any CRD; a real kube-apiserver refuses one that breaks
any rule below, with a `field.ErrorList`. `validate_crd(crd)` returns that list as the API
server words it (`path: Type: value: detail`), empty when the CRD would be accepted;
`check_crd(crd)` also returns each CEL rule's estimated cost.

The port, by concept:
    apiextensions_rules.py       the CRD object: metadata, names, versions, columns, subresources,
                                 conversion (this module)
    apiextensions_strict.py      strict decoding: unknown fields, JSON types
    apiextensions_schema.py      the openAPIV3Schema walk that ties the schema rules together
    apiextensions_structural.py  structural schemas (NewStructural, ValidateStructural), field paths
    apiextensions_defaults.py    default values: pruned, valid, passing the CEL rules
    apiextensions_lists.py       list-type, list-map-keys, map-type rules
    apiextensions_cel.py         x-kubernetes-validations fields, cost limits and cardinality
    celtyped.py, celchecked.py, celcost.py  CEL compiled against the schema's types, its checked
                                 AST, and cel-go's cost estimate
    fielderrors.py               field.ErrorList formatting and apimachinery's name validations

Sources for this module (kubernetes/kubernetes, staging/src/k8s.io/):

apiextensions-apiserver/pkg/apis/apiextensions/validation/validation.go
    ValidateCustomResourceDefinition          -> check_crd
    validateCustomResourceDefinitionSpec      -> _validate_spec (+ _validate_versions, _validate_required_names)
    validateCustomResourceDefinitionVersion   -> _validate_version
    validateDeprecationWarning                -> _validate_deprecation_warning
    validateEnumStrings                       -> _validate_enum_strings
    validateCustomResourceConversion          -> _validate_conversion
    validateConversionReviewVersions          -> _validate_review_versions
    ValidateCustomResourceDefinitionNames     -> _validate_names
    ValidateCustomResourceColumnDefinition    -> _validate_column
    ValidateCustomResourceSelectableFields    -> _validate_selectable_fields
    ValidateCustomResourceDefinitionSubresources -> _validate_subresources
    validateSimpleJSONPath                    -> _validate_simple_json_path
    validateAPIApproval                       -> _validate_api_approval
    validatePreserveUnknownFields             -> _validate_preserve_unknown_fields
    getSubresourcesForVersion, hasAnyStatusEnabled -> _validate_versions, _any_status_enabled
apiextensions-apiserver/pkg/apis/apiextensions/v1/conversion.go
    Convert_v1_CustomResourceDefinitionSpec_To_apiextensions_CustomResourceDefinitionSpec -> _to_internal
    (per-version schema, subresources and columns identical in every version move to the top
    level, and versions[0].name becomes spec.version: that is why a single-version CRD's errors
    name `spec.validation.openAPIV3Schema...`, `spec.subresources...`, `spec.additionalPrinterColumns[i]`)
apiextensions-apiserver/pkg/apis/apiextensions/v1/defaults.go
    SetDefaults_CustomResourceDefinitionSpec  -> _with_v1_defaults
apimachinery/pkg/api/validation/objectmeta.go
    ValidateObjectMeta, ValidateLabels, ValidateAnnotations (cluster-scoped, name = plural.group)
                                              -> _validate_object_meta
strict decoding (sigs.k8s.io/json; kubectl's default --validate=strict, server-side too)
    unknown fields and JSON types of the v1 types -> strict_decoding

Approximated, and why:
* composite values in messages are compact JSON, not Go's %#v of the internal struct;
* strict-decoding messages follow the strict decoder's form, the JSON type ones loosely;
* default values are checked by a small OpenAPI validator (apiextensions_defaults.validate_value)
  that words its errors like kube-openapi but not always identically, and CEL rules on a
  default run through celrules.Validator, which also fills nested defaults in;
* the CEL environment is standard CEL: no Kubernetes libraries, and no cross-type numeric
  comparisons (`int < double`, which Kubernetes allows); RE2 error texts are RE2-C++'s.
Left out (they cannot apply to a CRD `kubetune crd` generates on create):
* update-only rules: immutable group/plural/scope/kind, status.storedVersions, ratcheting of
  preexisting CEL expressions, cost suppression for unchanged schemas;
* top-level vs per-version mutual exclusion and the "identical per-version" rules (a v1 CRD
  cannot set the top-level fields; the conversion lifts identical ones);
* webhook conversion URL/service/caBundle details;
* ObjectMeta coercion of defaults inside x-kubernetes-embedded-resource objects;
* building the go-openapi SchemaValidator, which cannot fail on a schema that passed the rest.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from apiextensions_cel import PER_CALL_LIMIT, STATIC_ESTIMATED_COST_LIMIT, STATIC_ESTIMATED_CRD_COST_LIMIT
from apiextensions_schema import Options, Report, validate_validation
from apiextensions_strict import strict_decoding
from apiextensions_structural import spec_has, valid_field_path
from fielderrors import (
    FieldError,
    child,
    duplicate,
    forbidden,
    index,
    invalid,
    is_dns1035_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_label_value,
    key,
    not_supported,
    required,
    too_long,
    too_many,
)

Schema = dict[str, Any]

MAX_SELECTABLE_FIELDS = 8  # validation.go
TOTAL_ANNOTATION_SIZE_LIMIT_B = 256 * 1024  # apimachinery/pkg/api/validation/objectmeta.go
PRINTER_COLUMN_TYPES = ("boolean", "date", "integer", "number", "string")  # sets.NewString(...).List(): sorted
PRINTER_COLUMN_FORMATS = ("byte", "date", "date-time", "double", "float", "int32", "int64", "password")

__all__ = [
    "PER_CALL_LIMIT",
    "STATIC_ESTIMATED_COST_LIMIT",
    "STATIC_ESTIMATED_CRD_COST_LIMIT",
    "TOTAL_ANNOTATION_SIZE_LIMIT_B",
    "FieldError",
    "Report",
    "check_crd",
    "validate_crd",
]


# --- v1 defaults and conversion to the internal version ------------------------------------------


def _with_v1_defaults(crd: dict[str, Any]) -> dict[str, Any]:
    """defaults.go SetDefaults_CustomResourceDefinitionSpec (v1)."""
    crd = copy.deepcopy(crd)
    spec = crd.setdefault("spec", {})
    names = spec.setdefault("names", {})
    if not names.get("singular"):
        names["singular"] = str(names.get("kind", "")).lower()
    if not names.get("listKind") and names.get("kind"):
        names["listKind"] = names["kind"] + "List"
    conversion = spec.setdefault("conversion", {"strategy": "None"})
    if conversion.get("strategy") == "Webhook":
        webhook = conversion.setdefault("webhook", {})
        if not webhook.get("conversionReviewVersions"):
            webhook["conversionReviewVersions"] = ["v1"]
    return crd


_LIFTED = (
    ("schema", "validation"),
    ("subresources", "subresources"),
    ("additionalPrinterColumns", "additionalPrinterColumns"),
)


def _to_internal(spec: dict[str, Any]) -> dict[str, Any]:
    """conversion.go: per-version fields identical in every version move to the top level."""
    versions = [dict(v) if isinstance(v, dict) else {} for v in spec.get("versions") or []]
    internal = {**spec, "versions": versions, "version": versions[0].get("name", "") if versions else ""}
    if not versions:
        return internal
    for per_version, top in _LIFTED:
        first = versions[0].get(per_version)
        if all(v.get(per_version) == first for v in versions):
            internal[top] = first
            for v in versions:
                v.pop(per_version, None)
    first_fields = versions[0].get("selectableFields")
    if "validation" in internal and all(v.get("selectableFields") == first_fields for v in versions):
        internal["selectableFields"] = first_fields
        for v in versions:
            v.pop("selectableFields", None)
    return internal


# --- ObjectMeta ---------------------------------------------------------------------------------


def _validate_object_meta(meta: dict[str, Any], required_name: str) -> list[FieldError]:
    """objectmeta.go ValidateObjectMeta for a cluster-scoped object whose name must be plural.group."""
    errs: list[FieldError] = []
    name = meta.get("name", "")
    if meta.get("generateName"):  # checked with the same name function, plural.group rule included
        generate = meta["generateName"]
        masked = generate[:-1] + "a" if len(generate) > 1 and generate.endswith("-") else generate  # maskTrailingDash
        messages = is_dns1123_subdomain(masked)
        if generate != required_name:
            messages.append('must be spec.names.plural+"."+spec.group')
        errs.extend(invalid("metadata.generateName", generate, msg) for msg in messages)
    if not name:
        if not meta.get("generateName"):
            errs.append(required("metadata.name", "name or generateName is required"))
    else:
        messages = is_dns1123_subdomain(name)
        if name != required_name:
            messages.append('must be spec.names.plural+"."+spec.group')
        errs.extend(invalid("metadata.name", name, msg) for msg in messages)
    if meta.get("namespace"):
        errs.append(forbidden("metadata.namespace", "not allowed on this type"))
    for label, value in (meta.get("labels") or {}).items():
        errs.extend(invalid("metadata.labels", label, msg) for msg in is_qualified_name(label))
        errs.extend(invalid("metadata.labels", value, msg) for msg in is_valid_label_value(str(value)))
    total = 0
    for annotation, value in (meta.get("annotations") or {}).items():
        errs.extend(invalid("metadata.annotations", annotation, msg) for msg in is_qualified_name(annotation.lower()))
        total += len(annotation) + len(str(value))
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_B:
        errs.append(too_long("metadata.annotations", TOTAL_ANNOTATION_SIZE_LIMIT_B))
    return errs


# --- the spec -----------------------------------------------------------------------------------


def validate_crd(crd: dict[str, Any]) -> list[str]:
    """The API server's error list for creating this apiextensions.k8s.io/v1 CRD; empty if accepted."""
    return [str(e) for e in check_crd(crd).errors]


def check_crd(crd: dict[str, Any]) -> Report:
    """validation.go ValidateCustomResourceDefinition, after strict decoding and v1 defaulting."""
    report = Report()
    report.errors.extend(strict_decoding(crd))
    crd = _with_v1_defaults(crd)
    spec = crd["spec"]
    names = spec.get("names") or {}
    meta = crd.get("metadata") or {}
    report.errors.extend(_validate_object_meta(meta, f"{names.get('plural', '')}.{spec.get('group', '')}"))
    report.errors.extend(_validate_spec(_to_internal(spec), Options(), "spec", report))
    report.errors.extend(_validate_api_approval(spec.get("group", ""), meta.get("annotations") or {}))
    report.errors.extend(_validate_preserve_unknown_fields(spec))
    return report


def _validate_enum_strings(path: str, value: str, accepted: list[str], is_required: bool) -> list[FieldError]:
    if not value:
        return [required(path, "")] if is_required else []
    return [] if value in accepted else [not_supported(path, value, accepted)]


def _validate_spec(spec: dict[str, Any], opts: Options, path: str, report: Report) -> list[FieldError]:
    errs: list[FieldError] = []
    group = spec.get("group", "")
    if not group:
        errs.append(required(child(path, "group"), ""))
    elif msgs := is_dns1123_subdomain(group):
        errs.append(invalid(child(path, "group"), group, ",".join(msgs)))
    elif len(group.split(".")) < 2:
        errs.append(invalid(child(path, "group"), group, "should be a domain with at least one dot"))
    errs.extend(_validate_enum_strings(child(path, "scope"), spec.get("scope", ""), ["Cluster", "Namespaced"], True))

    versions: list[dict[str, Any]] = spec["versions"]
    if not (spec.get("validation") or {}).get("openAPIV3Schema"):  # requireOpenAPISchema
        for i, version in enumerate(versions):
            if not (version.get("schema") or {}).get("openAPIV3Schema"):
                errs.append(required(child(index(child(path, "versions"), i), "schema", "openAPIV3Schema"), ""))
    has_defaults = opts.allow_defaults and spec_has(spec, lambda s: s.get("default") is not None)
    if has_defaults and spec.get("preserveUnknownFields"):
        detail = "must be false in order to use defaults in the schema"
        errs.append(invalid(child(path, "preserveUnknownFields"), True, detail))

    errs.extend(_validate_versions(spec, versions, opts, path, report))
    errs.extend(_validate_required_names(spec.get("names") or {}, path))
    errs.extend(_validate_names(spec.get("names") or {}, child(path, "names")))
    errs.extend(
        validate_validation(spec.get("validation"), _any_status_enabled(spec), opts, child(path, "validation"), report)
    )
    errs.extend(_validate_subresources(spec.get("subresources"), child(path, "subresources")))
    for i, column in enumerate(spec.get("additionalPrinterColumns") or []):
        errs.extend(_validate_column(column, index(child(path, "additionalPrinterColumns"), i)))
    if spec.get("selectableFields"):
        schema = (spec.get("validation") or {}).get("openAPIV3Schema") or {}
        errs.extend(_validate_selectable_fields(spec["selectableFields"], schema, child(path, "selectableFields")))
    conversion = spec.get("conversion") or {}
    if conversion.get("strategy", "None") != "None" and spec.get("preserveUnknownFields"):
        errs.append(
            invalid(
                child(path, "conversion", "strategy"),
                conversion.get("strategy"),
                "must be None if spec.preserveUnknownFields is true",
            )
        )
    errs.extend(_validate_conversion(conversion, child(path, "conversion")))
    return errs


def _validate_versions(
    spec: dict[str, Any], versions: list[dict[str, Any]], opts: Options, path: str, report: Report
) -> list[FieldError]:
    errs: list[FieldError] = []
    storage = sum(1 for v in versions if v.get("storage"))
    seen: set[str] = set()
    unique = True
    for i, version in enumerate(versions):
        name = version.get("name", "")
        unique = unique and name not in seen
        seen.add(name)
        where = index(child(path, "versions"), i)
        if msgs := is_dns1035_label(name):
            errs.append(invalid(child(where, "name"), name, ",".join(msgs)))
        subresources = spec.get("subresources") if "subresources" in spec else version.get("subresources")
        errs.extend(_validate_version(version, where, _status_enabled(subresources), opts, report))
    if not unique:
        errs.append(
            invalid(child(path, "versions"), [v.get("name") for v in versions], "must contain unique version names")
        )
    if storage != 1:
        errs.append(
            invalid(
                child(path, "versions"),
                [v.get("name") for v in versions],
                "must have exactly one version marked as storage version",
            )
        )
    # The conversion to the internal version copies versions[0].name to spec.version, checked again.
    if spec.get("version") and (msgs := is_dns1035_label(spec["version"])):
        errs.append(invalid(child(path, "version"), spec["version"], ",".join(msgs)))
    return errs


def _validate_required_names(names: dict[str, Any], path: str) -> list[FieldError]:
    return [
        required(child(path, "names", n), "") for n in ("plural", "singular", "kind", "listKind") if not names.get(n)
    ]


def _status_enabled(subresources: dict[str, Any] | None) -> bool:
    return bool(subresources) and subresources.get("status") is not None  # type: ignore[union-attr]


def _any_status_enabled(spec: dict[str, Any]) -> bool:
    return _status_enabled(spec.get("subresources")) or any(
        _status_enabled(v.get("subresources")) for v in spec["versions"]
    )


def _validate_version(
    version: dict[str, Any], path: str, status_enabled: bool, opts: Options, report: Report
) -> list[FieldError]:
    errs = [
        invalid(child(path, "deprecationWarning"), version.get("deprecationWarning"), msg)
        for msg in _validate_deprecation_warning(bool(version.get("deprecated")), version.get("deprecationWarning"))
    ]
    errs.extend(validate_validation(version.get("schema"), status_enabled, opts, child(path, "schema"), report))
    errs.extend(_validate_subresources(version.get("subresources"), child(path, "subresources")))
    for i, column in enumerate(version.get("additionalPrinterColumns") or []):
        errs.extend(_validate_column(column, index(child(path, "additionalPrinterColumns"), i)))
    if version.get("selectableFields"):
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if schema is None:
            errs.append(
                invalid(
                    child(path, "selectableFields"),
                    "",
                    "may only be set when `version.schema.openAPIV3Schema` is not included",
                )
            )
        else:
            errs.extend(
                _validate_selectable_fields(version["selectableFields"], schema, child(path, "selectableFields"))
            )
    return errs


def _validate_deprecation_warning(deprecated: bool, warning: str | None) -> list[str]:
    if not deprecated and warning is not None:
        return ["can only be set for deprecated versions"]
    if warning is None:
        return []
    errors = []
    if len(warning.encode()) > 256:
        errors.append("must be <= 256 characters long")
    if not warning:
        errors.append("must not be an empty string")
    for i, char in enumerate(warning):
        if not char.isprintable():
            errors.append(f"must only contain printable UTF-8 characters; non-printable character found at index {i}")
            break
    return errors


def _validate_names(names: dict[str, Any], path: str) -> list[FieldError]:
    """ValidateCustomResourceDefinitionNames."""
    errs: list[FieldError] = []
    for name in ("plural", "singular"):
        value = names.get(name, "")
        if value and (msgs := is_dns1035_label(value)):
            errs.append(invalid(child(path, name), value, ",".join(msgs)))
    for name in ("kind", "listKind"):
        value = names.get(name, "")
        if value and (msgs := is_dns1035_label(value.lower())):
            errs.append(
                invalid(child(path, name), value, "may have mixed case, but should otherwise match: " + ",".join(msgs))
            )
    for i, short in enumerate(names.get("shortNames") or []):
        if msgs := is_dns1035_label(short):
            errs.append(invalid(index(child(path, "shortNames"), i), short, ",".join(msgs)))
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        errs.append(invalid(child(path, "listKind"), names["listKind"], "kind and listKind may not be the same"))
    for i, category in enumerate(names.get("categories") or []):
        if msgs := is_dns1035_label(category):
            errs.append(invalid(index(child(path, "categories"), i), category, ",".join(msgs)))
    return errs


def _validate_column(column: dict[str, Any], path: str) -> list[FieldError]:
    """ValidateCustomResourceColumnDefinition."""
    errs: list[FieldError] = []
    if not column.get("name"):
        errs.append(required(child(path, "name"), ""))
    allowed = ",".join(PRINTER_COLUMN_TYPES)
    if not column.get("type"):
        errs.append(required(child(path, "type"), f"must be one of {allowed}"))
    elif column["type"] not in PRINTER_COLUMN_TYPES:
        errs.append(invalid(child(path, "type"), column["type"], f"must be one of {allowed}"))
    if column.get("format") and column["format"] not in PRINTER_COLUMN_FORMATS:
        errs.append(
            invalid(child(path, "format"), column["format"], f"must be one of {','.join(PRINTER_COLUMN_FORMATS)}")
        )
    if not column.get("jsonPath"):
        errs.append(required(child(path, "JSONPath"), ""))
    else:
        errs.extend(_validate_simple_json_path(column["jsonPath"], child(path, "JSONPath")))
    return errs


def _validate_simple_json_path(value: str, path: str) -> list[FieldError]:
    if not value:
        return [invalid(path, value, "must not be empty")]
    if value[0] != ".":
        return [invalid(path, value, "must be a simple json path starting with .")]
    return []  # strings.Split(s[1:], ".") never has fewer than one element


def _validate_subresources(subresources: dict[str, Any] | None, path: str) -> list[FieldError]:
    """ValidateCustomResourceDefinitionSubresources: the scale paths (status has no fields)."""
    scale = (subresources or {}).get("scale")
    if scale is None:
        return []
    errs: list[FieldError] = []
    for name, prefix, under in (
        ("specReplicasPath", (".spec.",), ".spec"),
        ("statusReplicasPath", (".status.",), ".status"),
    ):
        where = child(path, f"scale.{name}")
        value = scale.get(name, "")
        if not value:
            errs.append(required(where, ""))
        elif found := _validate_simple_json_path(value, where):
            errs.extend(found)
        elif not value.startswith(prefix):
            errs.append(invalid(where, value, f"should be a json path under {under}"))
    selector = scale.get("labelSelectorPath")
    if selector:
        where = child(path, "scale.labelSelectorPath")
        if found := _validate_simple_json_path(selector, where):
            errs.extend(found)
        elif not selector.startswith((".spec.", ".status.")):
            errs.append(invalid(where, selector, "should be a json path under either .spec or .status"))
    return errs


def _validate_conversion(conversion: dict[str, Any], path: str) -> list[FieldError]:
    """validateCustomResourceConversion, internal field names (webhook fields are flattened there)."""
    strategy = conversion.get("strategy", "")
    errs = _validate_enum_strings(child(path, "strategy"), strategy, ["None", "Webhook"], True)
    webhook = conversion.get("webhook") or {}
    client_config, review_versions = webhook.get("clientConfig"), webhook.get("conversionReviewVersions")
    if strategy == "Webhook":
        if client_config is None:
            errs.append(required(child(path, "webhookClientConfig"), "required when strategy is set to Webhook"))
        elif ("url" in client_config) == ("service" in client_config):
            errs.append(required(child(path, "webhookClientConfig"), "exactly one of url or service is required"))
        errs.extend(_validate_review_versions(review_versions or [], child(path, "conversionReviewVersions")))
    else:
        if client_config is not None:
            errs.append(
                forbidden(child(path, "webhookClientConfig"), "should not be set when strategy is not set to Webhook")
            )
        if review_versions:
            errs.append(
                forbidden(
                    child(path, "conversionReviewVersions"), "should not be set when strategy is not set to Webhook"
                )
            )
    return errs


def _validate_review_versions(versions: list[str], path: str) -> list[FieldError]:
    if not versions:
        return [required(path, "")]
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, version in enumerate(versions):
        if version in seen:
            errs.append(invalid(index(path, i), version, "duplicate version"))
            continue
        seen.add(version)
        errs.extend(invalid(index(path, i), version, msg) for msg in is_dns1035_label(version))
    if not seen & {"v1", "v1beta1"}:
        errs.append(invalid(path, versions, "must include at least one of v1, v1beta1"))
    return errs


def _validate_api_approval(group: str, annotations: dict[str, str]) -> list[FieldError]:
    """validateAPIApproval: groups under k8s.io and kubernetes.io need the api-approved annotation."""
    protected = any(group == g or group.endswith("." + g) for g in ("k8s.io", "kubernetes.io"))
    if not protected:
        return []
    name = "api-approved.kubernetes.io"
    value = annotations.get(name)
    where = key("metadata.annotations", name)
    if value is None:
        return [
            required(
                where,
                f"protected groups must have approval annotation {name!r}, see https://github.com/kubernetes/enhancements/pull/1111",
            )
        ]
    if not (value.startswith(("https://", "http://")) or value.startswith("unapproved")):
        return [invalid(where, value, "protected groups must have approval annotation with a URL or unapproved")]
    return []


def _validate_preserve_unknown_fields(spec: dict[str, Any]) -> list[FieldError]:
    if spec.get("preserveUnknownFields"):
        return [
            invalid(
                "spec.preserveUnknownFields",
                True,
                "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema "
                "instead",
            )
        ]
    return []


def _validate_selectable_fields(fields: list[dict[str, Any]], schema: Schema, path: str) -> list[FieldError]:
    """ValidateCustomResourceSelectableFields."""
    errs: list[FieldError] = []
    unique: set[str] = set()
    for i, selectable in enumerate(fields):
        where = child(index(path, i), "jsonPath")
        json_path = selectable.get("jsonPath", "")
        if not json_path:
            errs.append(required(where, ""))
            continue
        try:
            normalized, found = valid_field_path(json_path, schema, allow_array_notation=False)
        except ValueError as error:
            errs.append(invalid(where, json_path, f"is an invalid path: {error}"))
            continue
        if re.split(r"[.\[]", normalized)[0] == "metadata":
            errs.append(invalid(where, json_path, "must not point to fields in metadata"))
        if found.get("type") not in ("string", "boolean", "integer"):
            errs.append(
                invalid(
                    where,
                    json_path,
                    "must point to a field of type string, boolean or integer. Enum string fields and strings with "
                    "formats are allowed.",
                )
            )
        if normalized in unique:
            errs.append(duplicate(where, json_path))
        unique.add(normalized)
    if len(unique) > MAX_SELECTABLE_FIELDS:
        errs.append(too_many(path, len(unique), MAX_SELECTABLE_FIELDS))
    return errs
