"""Write kubetune_api/argument_catalogue.json from the installed transformers and peft.

    python -m kubetune_trainer.catalogue_gen           # rewrite the file
    python -m kubetune_trainer.catalogue_gen --check   # exit 1 when it differs

The catalogue lists every keyword argument of `TrainingArguments` (plus kubetune's aliases,
minus the fields kubetune owns), `LoraConfig` and `BitsAndBytesConfig`: JSON shape from the
type annotations (BitsAndBytesConfig has none: its docstring's "Args:" section), choices,
defaults, help text, and the bounds and cross-field rules of `library_rules`, each proved
against the installed libraries before it is written. The operator and `kubetune validate`
read the file without torch; tests/trainer/test_catalogue_gen.py fails when it drifts.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import logging
import sys
import typing
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from transformers import BitsAndBytesConfig, TrainingArguments
from transformers.utils import logging as transformers_logging

from kubetune_api.argument_catalogue import (
    CATALOGUE_FILE,
    REGENERATE_COMMAND,
    Argument,
    ArgumentKind,
    Catalogue,
    KindCatalogue,
    Shape,
)
from kubetune_api.training import OWNED_TRAINING_ARGS
from kubetune_trainer import library_rules
from kubetune_trainer.library_types import (
    choices_origin,
    clean_help,
    docstring_arguments,
    json_default,
    nested_config_classes,
    shape_of,
    shape_of_doc,
    torch_dtype_names,
)
from kubetune_trainer.runner import RUN_DEFAULTS
from kubetune_trainer.training_args import ALIASES, STATIC_DEFAULTS

LIBRARIES = ("bitsandbytes", "peft", "torch", "transformers")
Builder = Callable[[dict[str, Any]], object]


class CatalogueProofError(AssertionError):
    """library_rules says something the installed libraries do not do."""


class _TinyModel(torch.nn.Module):
    """One linear layer: enough for peft to apply an adapter, and its per-layer checks to run."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.proj(inputs)


def _build_training_args(values: dict[str, Any]) -> object:
    return TrainingArguments(**{"output_dir": "", "use_cpu": True, "report_to": "none", **values})


def _build_lora_config(values: dict[str, Any]) -> LoraConfig:
    return LoraConfig(**{"target_modules": ["proj"], **values})


def _apply_lora(values: dict[str, Any]) -> object:
    # Some of peft's checks (r > 0, the dropout) run only when the adapter meets a layer.
    return get_peft_model(_TinyModel(), _build_lora_config(values))


def _build_quantize(values: dict[str, Any]) -> object:
    return BitsAndBytesConfig(**values)


# The config object alone, and everything the library checks before training starts.
CONFIG_BUILDERS: dict[ArgumentKind, Builder] = {
    "trainingArgs": _build_training_args,
    "lora": _build_lora_config,
    "quantize": _build_quantize,
}
BUILDERS: dict[ArgumentKind, Builder] = {**CONFIG_BUILDERS, "lora": _apply_lora}


def _refuses(call: Callable[[Any], object], argument: Any) -> bool:
    """True when `call(argument)` raises: the library refuses the value."""
    try:
        call(argument)
    except Exception:
        return True
    return False


def converts_dict(build: Builder, name: str, classes: list[type]) -> bool:
    """Whether the library turns a dict given for `name` into its config class (or tries to)."""
    try:
        built = build({name: {}})
    except Exception:
        return True  # it tried, and the empty dict missed required fields
    return isinstance(getattr(built, name, None), tuple(classes))


def _object_only(kind: ArgumentKind, name: str, annotation: Any) -> str | None:
    """Why `name` cannot come from JSON: a config class the library never builds from a dict."""
    classes = nested_config_classes(annotation)
    if not classes or dict in typing.get_args(annotation) or converts_dict(CONFIG_BUILDERS[kind], name, classes):
        return None
    names = ", ".join(f"{cls.__module__.split('.')[0]} {cls.__name__}" for cls in classes)
    return f"a Python object ({names}) that the library does not build from a dict: no YAML form"


def _dataclass_arguments(kind: ArgumentKind, cls: type, excluded: dict[str, str]) -> dict[str, Argument]:
    hints = typing.get_type_hints(cls)
    found: dict[str, Argument] = {}
    for item in dataclasses.fields(cls):
        if not item.init or item.name in excluded:
            continue
        reason = _object_only(kind, item.name, hints[item.name])
        if reason is not None:
            excluded[item.name] = reason
            continue
        shape = shape_of(hints[item.name], f"{cls.__name__}.{item.name}")
        origin = choices_origin(hints[item.name]) if shape.enum else None
        if "choices" in item.metadata:
            # Declared for HfArgumentParser; the library looks the value up in the same table.
            shape = dataclasses.replace(shape, enum=tuple(item.metadata["choices"]))
            origin = f"{cls.__name__} field metadata choices"
        factory: Any = item.default_factory  # MISSING unless the field has one
        default = item.default if item.default is not dataclasses.MISSING else factory()
        found[item.name] = Argument(
            name=item.name,
            shape=shape,
            help=clean_help(item.metadata.get("help", "")),
            default=json_default(default),
            choices_from=origin,
        )
    return found


def training_args_kind() -> KindCatalogue:
    excluded = dict(OWNED_TRAINING_ARGS)
    arguments = _dataclass_arguments("trainingArgs", TrainingArguments, excluded)
    run_defaults = {**STATIC_DEFAULTS, **RUN_DEFAULTS}
    for name, value in run_defaults.items():
        if name in arguments and value != arguments[name].default:
            arguments[name] = dataclasses.replace(arguments[name], kubetune_default=value)
    for alias, (target, on, off) in ALIASES.items():
        arguments[alias] = Argument(
            name=alias,
            shape=Shape("boolean"),
            help=f"kubetune alias of {target}: true sets {target} {on}, false sets it to {off}. "
            "A TrainingArguments field before transformers 5.",
            alias_of=target,
        )
    return KindCatalogue("trainingArgs", "transformers.TrainingArguments", arguments, excluded=excluded)


def lora_kind() -> KindCatalogue:
    excluded: dict[str, str] = {}
    arguments = _dataclass_arguments("lora", LoraConfig, excluded)
    return KindCatalogue("lora", "peft.LoraConfig", arguments, excluded=excluded)


def quantize_kind() -> KindCatalogue:
    documented = docstring_arguments(BitsAndBytesConfig.__doc__ or "")
    arguments: dict[str, Argument] = {}
    for name, parameter in inspect.signature(BitsAndBytesConfig.__init__).parameters.items():
        if name == "self" or parameter.kind is parameter.VAR_KEYWORD:
            continue
        if name not in documented:
            raise CatalogueProofError(f"BitsAndBytesConfig.{name} is not in the docstring's Args: section")
        spec, text = documented[name]
        shape = shape_of_doc(spec, f"BitsAndBytesConfig.{name}")
        origin = None
        if shape.enum == torch_dtype_names():
            # The docstring says "torch.dtype or str"; which names pass is the library's own check.
            taken = tuple(n for n in shape.enum if not _refuses(_build_quantize, {name: n}))
            shape, origin = dataclasses.replace(shape, enum=taken), "torch dtype names BitsAndBytesConfig takes"
        arguments[name] = Argument(
            name=name,
            shape=dataclasses.replace(shape, nullable=parameter.default is None),
            help=clean_help(text),
            default=json_default(parameter.default),
            choices_from=origin,
        )
    return KindCatalogue("quantize", "transformers.BitsAndBytesConfig", arguments)


def _try(kind: ArgumentKind, name: str, value: Any, probe: Callable[[Any], object] | None) -> bool:
    """True when the library refuses `value` for `name`."""
    if probe is not None:
        return _refuses(probe, value)
    return _refuses(BUILDERS[kind], {name: value})


def _prove(
    kind: ArgumentKind,
    name: str,
    what: str,
    refused: tuple[Any, ...],
    taken: tuple[Any, ...],
    probe: Callable[[Any], object] | None,
) -> None:
    for value in refused:
        if not _try(kind, name, value, probe):
            raise CatalogueProofError(
                f"{kind}.{name}: the installed libraries take {value!r}, but library_rules says they refuse it "
                f"({what}); review kubetune_trainer/library_rules.py"
            )
    for value in taken:
        if _try(kind, name, value, probe):
            raise CatalogueProofError(
                f"{kind}.{name}: the installed libraries refuse {value!r}, but library_rules says they take it "
                f"({what}); review kubetune_trainer/library_rules.py"
            )


def apply_library_rules(kinds: dict[ArgumentKind, KindCatalogue]) -> dict[ArgumentKind, KindCatalogue]:
    """kinds with library_rules' shapes, bounds and cross-field rules, each proved first."""
    arguments = {kind: dict(catalogue.arguments) for kind, catalogue in kinds.items()}
    for override in library_rules.SHAPE_OVERRIDES:
        found = arguments[override.kind][override.argument]
        _prove(override.kind, override.argument, override.why, override.refused, override.taken, override.probe)
        origin = override.why if override.shape.enum else found.choices_from
        arguments[override.kind][override.argument] = dataclasses.replace(
            found, shape=override.shape, choices_from=origin
        )
    for proved in library_rules.BOUNDS:
        found = arguments[proved.kind][proved.argument]
        _prove(proved.kind, proved.argument, proved.bound.source, proved.refused, proved.taken, proved.probe)
        arguments[proved.kind][proved.argument] = dataclasses.replace(found, bounds=(*found.bounds, proved.bound))
    rules: dict[ArgumentKind, list[Any]] = {kind: [] for kind in kinds}
    for proved_rule in library_rules.RULES:
        unknown = [name for name in proved_rule.rule.fields if name not in arguments[proved_rule.kind]]
        if unknown:
            raise CatalogueProofError(f"{proved_rule.kind} rule {proved_rule.rule.id} names unknown {unknown}")
        for values in proved_rule.refused:
            if not _refuses(BUILDERS[proved_rule.kind], values):
                raise CatalogueProofError(
                    f"{proved_rule.kind} rule {proved_rule.rule.id}: the installed libraries take {values!r}; "
                    "review kubetune_trainer/library_rules.py"
                )
        rules[proved_rule.kind].append(proved_rule.rule)
    return {
        kind: dataclasses.replace(catalogue, arguments=arguments[kind], rules=tuple(rules[kind]))
        for kind, catalogue in kinds.items()
    }


@contextmanager
def _quiet() -> Iterator[None]:
    """The probes make the libraries warn and log about every refused value; none of it matters here."""
    level = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
        transformers_logging.set_verbosity(level)


def build_catalogue() -> Catalogue:
    """The catalogue of the installed libraries (in memory)."""
    with _quiet():
        kinds = apply_library_rules(
            {"trainingArgs": training_args_kind(), "lora": lora_kind(), "quantize": quantize_kind()}
        )
    # Public versions only: torch 2.13.0+cpu and 2.13.0+cu128 describe the same arguments.
    return Catalogue(libraries={name: version(name).split("+")[0] for name in LIBRARIES}, kinds=kinds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubetune_trainer.catalogue_gen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when the checked-in file differs")
    args = parser.parse_args(argv)
    text = build_catalogue().to_json()
    if args.check:
        current = CATALOGUE_FILE.read_text(encoding="utf-8") if CATALOGUE_FILE.exists() else ""
        if current != text:
            print(f"{CATALOGUE_FILE} is out of date: run {REGENERATE_COMMAND}", file=sys.stderr)
            return 1
        return 0
    CATALOGUE_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {CATALOGUE_FILE} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
