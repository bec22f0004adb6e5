"""The x-kubernetes-list-type, -list-map-keys, -map-type and -preserve-unknown-fields rules.

Sources (kubernetes/kubernetes, staging/src/k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/
validation/validation.go):
    ValidateCustomResourceDefinitionOpenAPISchema (its x-kubernetes-* checks) -> validate_extensions_and_lists
        (the list-type=map part)                                              -> _validate_map_list
    validateMapListKeysMapSet                                                 -> validate_map_list_keys_map_set
"""

from __future__ import annotations

from typing import Any

from fielderrors import FieldError, child, forbidden, invalid, key, not_supported, required

Schema = dict[str, Any]


def validate_extensions_and_lists(s: Schema, path: str, require_atomic_set_type: bool) -> list[FieldError]:
    """x-kubernetes-preserve-unknown-fields, -map-type, -list-type and -list-map-keys rules."""
    errs: list[FieldError] = []
    kind = s.get("type", "")
    if s.get("x-kubernetes-preserve-unknown-fields") is False:
        errs.append(invalid(child(path, "x-kubernetes-preserve-unknown-fields"), False, "must be true or undefined"))
    map_type = s.get("x-kubernetes-map-type")
    if map_type is not None and kind != "object":
        detail = "must be object if x-kubernetes-map-type is specified"
        errs.append(invalid(child(path, "type"), kind, detail) if kind else required(child(path, "type"), detail))
    if map_type is not None and map_type not in ("atomic", "granular"):
        errs.append(not_supported(child(path, "x-kubernetes-map-type"), map_type, ["atomic", "granular"]))
    list_type = s.get("x-kubernetes-list-type")
    items = s.get("items")
    if list_type is not None and kind != "array":
        detail = "must be array if x-kubernetes-list-type is specified"
        errs.append(invalid(child(path, "type"), kind, detail) if kind else required(child(path, "type"), detail))
    elif require_atomic_set_type and list_type == "set" and isinstance(items, dict):
        if items.get("type") == "array" and items.get("x-kubernetes-list-type") not in (None, "atomic"):
            errs.append(
                invalid(
                    child(path, "items", "x-kubernetes-list-type"),
                    items["x-kubernetes-list-type"],
                    "must be atomic as item of a list with x-kubernetes-list-type=set",
                )
            )
        if items.get("type") == "object" and items.get("x-kubernetes-map-type") != "atomic":
            errs.append(
                invalid(
                    child(path, "items", "x-kubernetes-map-type"),
                    items.get("x-kubernetes-list-type"),
                    "must be atomic as item of a list with x-kubernetes-list-type=set",
                )
            )
    if list_type is not None and list_type not in ("atomic", "set", "map"):
        errs.append(not_supported(child(path, "x-kubernetes-list-type"), list_type, ["atomic", "set", "map"]))
    keys = s.get("x-kubernetes-list-map-keys") or []
    if keys:
        if list_type is None:
            errs.append(
                required(
                    child(path, "x-kubernetes-list-type"), "must be map if x-kubernetes-list-map-keys is non-empty"
                )
            )
        elif list_type != "map":
            errs.append(
                invalid(
                    child(path, "x-kubernetes-list-type"),
                    list_type,
                    "must be map if x-kubernetes-list-map-keys is non-empty",
                )
            )
    if list_type == "map":
        errs.extend(_validate_map_list(s, keys, path))
    return errs


def _validate_map_list(s: Schema, keys: list[str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    items = s.get("items")
    if not keys:
        errs.append(
            required(child(path, "x-kubernetes-list-map-keys"), "must not be empty if x-kubernetes-list-type is map")
        )
    if items is None:
        errs.append(required(child(path, "items"), "must have a schema if x-kubernetes-list-type is map"))
    elif not isinstance(items, dict):
        errs.append(
            invalid(child(path, "items"), items, "must only have a single schema if x-kubernetes-list-type is map")
        )
    elif items.get("type") != "object":
        errs.append(
            invalid(
                child(path, "items", "type"),
                items.get("type", ""),
                "must be object if parent array's x-kubernetes-list-type is map",
            )
        )
    else:
        seen: set[str] = set()
        for name in keys:
            prop = (items.get("properties") or {}).get(name)
            if prop is None:
                errs.append(
                    invalid(
                        child(path, "x-kubernetes-list-map-keys"), keys, "entries must all be names of item properties"
                    )
                )
            elif prop.get("type") in ("array", "object"):
                where = child(key(child(path, "items", "properties"), name), "type")
                errs.append(
                    invalid(
                        where,
                        items.get("type"),
                        "must be a scalar type if parent array's x-kubernetes-list-type is map",
                    )
                )
            if name in seen:
                errs.append(
                    invalid(child(path, "x-kubernetes-list-map-keys"), keys, "must not contain duplicate entries")
                )
            seen.add(name)
    return errs


def validate_map_list_keys_map_set(s: Schema, path: str) -> list[FieldError]:
    """validateMapListKeysMapSet: set/map list items and map keys cannot be null; keys are required or defaulted."""
    items = s.get("items")
    list_type = s.get("x-kubernetes-list-type")
    if not isinstance(items, dict) or list_type not in ("set", "map"):
        return []
    errs: list[FieldError] = []
    if items.get("nullable"):
        errs.append(
            forbidden(
                child(path, "items", "nullable"), f"cannot be nullable when x-kubernetes-list-type is {list_type}"
            )
        )
    if list_type == "map":
        required_keys = set(items.get("required") or [])
        for name in s.get("x-kubernetes-list-map-keys") or []:
            prop = (items.get("properties") or {}).get(name)
            if prop is None:
                continue
            where = key(child(path, "items", "properties"), name)
            if name not in required_keys and prop.get("default") is None:
                errs.append(
                    required(
                        child(where, "default"),
                        "this property is in x-kubernetes-list-map-keys, so it must have a default or be a "
                        "required property",
                    )
                )
            if prop.get("nullable"):
                errs.append(
                    forbidden(
                        child(where, "nullable"),
                        "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                    )
                )
    return errs
