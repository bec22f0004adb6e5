"""A FineTuneJob spec from the keywords of `HFTrainer()(...)`, so that a notebook moves a run
from this machine to the cluster by changing one call:

    model, tokenizer = HFTrainer()("org/base", "s3://bucket/train.csv", lora=True, learning_rate=3e-5)
    name = Client().submit("org/base", "s3://bucket/train.csv", lora=True, learning_rate=3e-5)

Each keyword lands in the field the trainer pod hands back to `HFTrainer` (see
`kubetune_trainer.runner`), so the run is the same. What only exists in this Python
process (a list of dicts, a DataFrame, a (model, tokenizer) pair, a metrics function, a
LoraConfig object) cannot travel to a pod and is refused, saying what to pass instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from os import PathLike, fspath
from typing import Any

# The URI forms a trainer pod can read data and models from (spec.data, spec.base).
CLUSTER_DATA_FORMS = "pvc://CLAIM/PATH, s3://, gs://, az://, hf://NAME, https://"
# HFTrainer's keyword -> the spec field (camelCase path) it becomes.
SPEC_FIELDS: dict[str, tuple[str, ...]] = {
    "columns": ("data", "columns"),
    "maxlength": ("maxLength",),
    "stride": ("stride",),
    "task": ("task",),
    "prefix": ("prefix",),
    "quantize": ("quantize",),
    "lora": ("lora",),
    "attn_implementation": ("attnImplementation",),
}
# TrainingArguments.output_dir is where HFTrainer saves; in a FineTuneJob that is spec.output.
OUTPUT_DIR = "output_dir"


class NotForClusterError(ValueError):
    """A keyword holds something that lives in this Python process and cannot go to a pod."""


def _uri(value: Any, keyword: str) -> str:
    """A data or model location as a string; refuses in-memory data, naming what works."""
    if isinstance(value, (str, PathLike)):
        return fspath(value)
    kind = type(value).__name__
    raise NotForClusterError(
        f"{keyword}: a {kind} lives in this Python process and cannot be sent to the cluster: the "
        f"trainer pod reads data by URI. Save it (for a DataFrame: df.to_csv, df.to_parquet) where the "
        f"cluster can read it ({CLUSTER_DATA_FORMS}) and pass that URI"
    )


def _free_form(value: Any, keyword: str, library_class: str, example: str) -> Any:
    """quantize and lora as the spec holds them: true or a dict of the class's arguments."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Mapping):
        return dict(value)
    raise NotForClusterError(
        f"{keyword}: a {type(value).__name__} object cannot be sent to the cluster; "
        f"pass True or the {library_class} arguments as a dict, e.g. {keyword}={example}"
    )


def _set(spec: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = spec
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def hftrainer_spec(
    base: Any,
    train: Any,
    validation: Any = None,
    *,
    columns: tuple[str, ...] | list[str] | None = None,
    maxlength: int | None = None,
    stride: int | None = None,
    task: str | None = None,
    prefix: str | None = None,
    metrics: Any = None,
    tokenizers: int | bool | None = None,
    checkpoint: str | bool | None = None,
    quantize: Any = None,
    lora: Any = None,
    callbacks: Any = None,
    attn_implementation: str | None = None,
    **args: Any,
) -> dict[str, Any]:
    """The FineTuneJob spec (camelCase, as in YAML) for `HFTrainer()(base, train, ...)`.

    Every TrainingArguments keyword goes to spec.trainingArgs (checked there against the
    catalogue, like any spec); `output_dir` becomes spec.output.uri.
    """
    if isinstance(base, (tuple, list)):
        raise NotForClusterError(
            "base: a (model, tokenizer) pair lives in this Python process; push it to the hub "
            f"(model.push_to_hub) or save it where the cluster can read it ({CLUSTER_DATA_FORMS}) "
            "and pass that id or URI"
        )
    if metrics is not None:
        raise NotForClusterError(
            "metrics: a function cannot be sent to the cluster; the trainer computes the task's "
            "standard metrics on the validation data itself: leave metrics out"
        )
    if callbacks is not None:
        raise NotForClusterError(
            "callbacks: TrainerCallbacks cannot be sent to the cluster; follow the run with "
            "Client.wait(name, callback=...) instead"
        )
    if isinstance(checkpoint, (str, PathLike)):
        raise NotForClusterError(
            "checkpoint: a FineTuneJob resumes from the newest checkpoint in its output by itself; "
            "leave checkpoint out (a checkpoint folder on this machine is not reachable from the cluster)"
        )
    if tokenizers is not None:
        # A speed knob of this machine's tokenization; the trainer pod picks its own.
        warnings.warn("tokenizers is ignored for a cluster run: the trainer pod tokenizes on its own", stacklevel=3)

    spec: dict[str, Any] = {"base": {"model": _uri(base, "base")}, "data": {"train": _uri(train, "train")}}
    if validation is not None:
        spec["data"]["validation"] = _uri(validation, "validation")
    given = {
        "columns": list(columns) if columns is not None else None,
        "maxlength": maxlength,
        "stride": stride,
        "task": task,
        "prefix": prefix,
        "quantize": _free_form(quantize, "quantize", "BitsAndBytesConfig", "{'load_in_4bit': True}"),
        "lora": _free_form(lora, "lora", "LoraConfig", "{'r': 8, 'lora_alpha': 16}"),
        "attn_implementation": attn_implementation,
    }
    for keyword, value in given.items():
        if value is not None:
            _set(spec, SPEC_FIELDS[keyword], value)

    output = args.pop(OUTPUT_DIR, None)
    if output is not None:
        spec["output"] = {"uri": fspath(output)}
    if args:
        spec["trainingArgs"] = args
    return spec
