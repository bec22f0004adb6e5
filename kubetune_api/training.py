"""The training part of a FineTuneJob spec.

This module is the single source of truth for what a user may write under
`spec:` about training. `kubetune_api.finetunejob` extends `TrainingSpec` with
scheduling fields, the CRD's openAPIV3Schema is generated from the result, and the
trainer validates the JSON it receives with this same model. It imports without torch.

YAML and JSON use camelCase (`maxLength`, `trainingArgs`); Python uses snake_case.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from kubetune_api.arguments import (
    ArgumentError,
    ArgumentProblem,
    check_lora,
    check_quantize,
    check_training_args,
    check_unchecked_training_args,
)
from kubetune_api.uris import (
    DATA_SCHEMES,
    OCI_SCHEME,
    OUTPUT_SCHEMES,
    PVC_SCHEME,
    WORK_SCHEMES,
    check_pvc_uri,
    check_scheme,
    uri_scheme,
)


class Task(str, Enum):
    """Training tasks, each mapped to one model family by the trainer."""

    TEXT_CLASSIFICATION = "text-classification"
    LANGUAGE_GENERATION = "language-generation"
    LANGUAGE_MODELING = "language-modeling"
    QUESTION_ANSWERING = "question-answering"
    SEQUENCE_SEQUENCE = "sequence-sequence"
    TOKEN_DETECTION = "token-detection"


TASK_NAMES: tuple[str, ...] = tuple(task.value for task in Task)

# How many data columns each task reads, and what they mean, in order.
TASK_COLUMNS: dict[Task, tuple[int, int, str]] = {
    Task.TEXT_CLASSIFICATION: (2, 3, "(text, label) or (text1, text2, label)"),
    Task.LANGUAGE_GENERATION: (1, 1, "(text,)"),
    Task.LANGUAGE_MODELING: (1, 1, "(text,)"),
    Task.QUESTION_ANSWERING: (3, 3, "(question, context, answers)"),
    Task.SEQUENCE_SEQUENCE: (2, 2, "(source, target)"),
    Task.TOKEN_DETECTION: (1, 1, "(text,)"),
}

DATA_FORMATS = ("csv", "json", "jsonl", "parquet", "txt")
# URIs are bounded so that the CRD's CEL rules on them stay within the API server's cost budget.
MAX_URI = 4096

# TrainingArguments fields kubetune sets itself, and what to write instead (the catalogue
# generator leaves them out, so the argument checks refuse them with this text).
OWNED_TRAINING_ARGS: dict[str, str] = {
    "output_dir": "set by kubetune; set spec.output.uri instead",
    # transformers' own SIGTERM checkpoint skips the Trainer's on_save callbacks (so an
    # object-store checkpoint is never uploaded) and lets train() return as if finished.
    "enable_jit_checkpoint": (
        "kubetune saves a checkpoint on SIGTERM itself (see spec.terminationGracePeriodSeconds); remove it"
    ),
}


class SpecModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )


class BaseModelSource(SpecModel):
    """The pretrained model that training starts from."""

    model: str = Field(
        min_length=1,
        max_length=MAX_URI,
        description=(
            "Model to fine-tune: a Hugging Face hub id (org/name), a local path, file://PATH, "
            "or pvc://CLAIM/PATH for a model stored on a PersistentVolumeClaim."
        ),
        examples=["sentence-transformers/all-MiniLM-L6-v2"],
    )
    revision: str | None = Field(
        default=None,
        min_length=1,
        description="Hub revision to load: a branch, tag or commit id. Pin a commit for repeatable runs.",
    )

    @field_validator("model")
    @classmethod
    def _claim_path(cls, model: str) -> str:
        return check_pvc_uri(model) if uri_scheme(model) == PVC_SCHEME else model


class DataSpec(SpecModel):
    """Where the training data lives and which columns to read."""

    train: str = Field(
        min_length=1,
        max_length=MAX_URI,
        description=(
            "Training data URI: a local path or file:// (csv, json, jsonl, parquet, txt), "
            "pvc://CLAIM/PATH, s3://, gs://, az://, https://, or a hub dataset as "
            "hf://NAME?config=CONFIG&split=SPLIT."
        ),
        examples=["s3://my-bucket/reviews/train.csv", "hf://glue?config=sst2&split=train"],
    )
    validation: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_URI,
        description="Validation data URI, same forms as train. When set, metrics are computed on it.",
    )
    columns: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=3,
        description=(
            "Data columns to read, in task order: text-classification (text, label) or "
            "(text1, text2, label); question-answering (question, context, answers); "
            "sequence-sequence (source, target); other tasks (text). Default: text, label, "
            "question, context, answers, source, target as the task needs."
        ),
    )
    format: str | None = Field(
        default=None,
        description="File format, when the URI's extension does not tell: csv, json, jsonl, parquet or txt.",
        json_schema_extra={"enum": list(DATA_FORMATS)},
    )

    @field_validator("train", "validation")
    @classmethod
    def _data_scheme(cls, uri: str | None) -> str | None:
        return uri if uri is None else check_scheme(uri, DATA_SCHEMES, "data")

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        if value is not None and value not in DATA_FORMATS:
            raise ValueError(f"unknown format {value!r}; use one of: {', '.join(DATA_FORMATS)}")
        return value


class OutputSpec(SpecModel):
    """Where the trained model, its checkpoints and its metadata are written."""

    uri: str = Field(
        min_length=1,
        max_length=MAX_URI,
        description=(
            "Persistent location for the model, checkpoints and kubetune.json metadata: a local "
            "path, file://, pvc://CLAIM/PATH, s3://, gs:// or az://. A retried run resumes from "
            "the latest checkpoint found here. Or a registry, oci://REGISTRY/REPOSITORY:TAG: the "
            "model is pushed there as an OCI artifact (KAITO's adapter image layout) and the "
            "checkpoints go to checkpointUri."
        ),
        examples=["pvc://models/sentiment", "s3://my-bucket/models/sentiment", "oci://ghcr.io/team/sentiment:v1"],
    )
    merge_adapter: bool = Field(
        default=False,
        description="With LoRA: also save the base model with the adapter merged in, under merged/.",
    )
    checkpoint_uri: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_URI,
        description=(
            "oci:// outputs only (and required for them on a cluster): where the run keeps its "
            "checkpoints, run marker and the model before the push, in the forms uri takes "
            "(pvc://, s3://, ...); a retried or preempted run resumes from here."
        ),
    )
    insecure_registry: bool = Field(
        default=False,
        description="oci:// outputs only: talk plain HTTP to the registry (a test or in-cluster registry).",
    )

    @field_validator("uri")
    @classmethod
    def _output_scheme(cls, uri: str) -> str:
        return check_scheme(uri, OUTPUT_SCHEMES, "output")

    @field_validator("checkpoint_uri")
    @classmethod
    def _checkpoint_scheme(cls, uri: str | None) -> str | None:
        return uri if uri is None else check_scheme(uri, WORK_SCHEMES, "output.checkpointUri")

    @model_validator(mode="after")
    def _registry_fields(self) -> OutputSpec:
        if uri_scheme(self.uri) != OCI_SCHEME:
            for name, value in (("checkpointUri", self.checkpoint_uri), ("insecureRegistry", self.insecure_registry)):
                if value:
                    raise ValueError(f"output.{name} is only used with an oci:// output.uri: remove it")
        elif self.merge_adapter:
            raise ValueError(
                "output.mergeAdapter cannot be pushed to a registry (one artifact per tag): set it to false, "
                "or use a pvc:// or object-store output.uri for the merged model"
            )
        return self

    @property
    def work_uri(self) -> str:
        """Where the run's files live: checkpointUri for a registry output (or the output itself:
        a local run without one stages in a temporary folder), else the output."""
        return self.checkpoint_uri or self.uri


FreeForm = bool | dict[str, Any]


class TrainingSpec(SpecModel):
    """What to train: task, base model, data, quantization, LoRA and Trainer arguments."""

    task: Task = Field(
        default=Task.TEXT_CLASSIFICATION,
        # Validating the default turns it into the plain string, like a task the user wrote.
        validate_default=True,
        description="Training task; selects the model head and the data preparation.",
    )
    base: BaseModelSource = Field(description="The pretrained model to start from.")
    data: DataSpec = Field(description="Training and validation data.")
    max_length: int | None = Field(
        default=None,
        ge=1,
        le=131072,
        description="Maximum tokens per example; longer text is truncated. Default: the model's limit.",
    )
    stride: int = Field(
        default=128,
        ge=0,
        description="question-answering: token overlap between windows of a long context.",
    )
    prefix: str | None = Field(
        default=None,
        description='sequence-sequence: text prepended to every source, e.g. "translate English to German: ".',
    )
    quantize: FreeForm | None = Field(
        default=None,
        description=(
            "bitsandbytes quantization of the base model. true: 4-bit NF4 with double "
            "quantization and bfloat16 compute. An object: BitsAndBytesConfig arguments "
            "(load_in_4bit, bnb_4bit_quant_type, ...). Needs a GPU; skipped with a warning without one."
        ),
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    lora: FreeForm | None = Field(
        default=None,
        description=(
            "peft LoRA adapter. true: r 16, lora_alpha 8, target_modules all-linear, "
            "lora_dropout 0.05, bias none. An object: LoraConfig arguments."
        ),
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    training_args: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "transformers TrainingArguments, snake_case as in Python "
            "(num_train_epochs, learning_rate, per_device_train_batch_size, ...), checked against "
            "the transformers version the trainer image pins."
        ),
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    unchecked_training_args: dict[str, Any] | None = Field(
        default=None,
        description=(
            "Escape hatch for a custom trainer image with a newer transformers: TrainingArguments "
            "this kubetune does not know, passed on unchecked here and checked by the trainer "
            "against its own transformers before anything is loaded (an unknown name fails then, "
            "InvalidConfig). Only names missing from trainingArgs' catalogue: a known argument "
            "belongs in trainingArgs, where it is checked; a name may not be in both."
        ),
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    output: OutputSpec | None = Field(
        default=None,
        description="Where the trained model goes. Defaults to the operator's configured location.",
    )

    @field_validator("quantize", mode="before")
    @classmethod
    def _quantize_arguments(cls, value: Any) -> Any:
        # Before pydantic's own bool parsing, which would read "yes" or 1 as true.
        _raise_problems(check_quantize(value))
        return value

    @field_validator("lora", mode="before")
    @classmethod
    def _lora_arguments(cls, value: Any) -> Any:
        _raise_problems(check_lora(value))
        return value

    @field_validator("quantize", "lora")
    @classmethod
    def _false_means_off(cls, value: FreeForm | None) -> FreeForm | None:
        return None if value is False else value

    @field_validator("training_args")
    @classmethod
    def _training_arguments(cls, args: dict[str, Any]) -> dict[str, Any]:
        _raise_problems(check_training_args(args))
        return args

    @field_validator("unchecked_training_args")
    @classmethod
    def _only_unknown_arguments(cls, args: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        if args is not None:
            _raise_problems(check_unchecked_training_args(args, info.data.get("training_args") or {}))
        return args

    @model_validator(mode="after")
    def _fits_task(self) -> TrainingSpec:
        task = Task(self.task)
        if self.data.columns is not None:
            low, high, meaning = TASK_COLUMNS[task]
            if not low <= len(self.data.columns) <= high:
                raise ValueError(
                    f"data.columns: task {task.value} reads {meaning}, "
                    f"got {len(self.data.columns)} column(s) {self.data.columns}"
                )
        if self.prefix is not None and task is not Task.SEQUENCE_SEQUENCE:
            raise ValueError(f"prefix is only used by task sequence-sequence, not {task.value}")
        if self.quantize is not None and self.lora is None:
            # A quantized base cannot be trained directly, only through an adapter (QLoRA).
            raise ValueError("quantize needs lora: add lora: true (or LoraConfig arguments)")
        if self.lora is not None and task is Task.TOKEN_DETECTION:
            raise ValueError("lora is not supported with task token-detection: remove spec.lora")
        return self

    def all_training_args(self) -> dict[str, Any]:
        """trainingArgs and the unchecked ones together: what the trainer passes to TrainingArguments."""
        return {**self.training_args, **(self.unchecked_training_args or {})}

    def to_job_json(self) -> str:
        """The camelCase JSON the trainer container receives (env KUBETUNE_JOB)."""
        return self.model_dump_json(by_alias=True, exclude_none=True)


def _raise_problems(problems: list[ArgumentProblem]) -> None:
    if problems:
        raise ArgumentError(problems)


# What a field's pattern means, in words: "should match pattern '^...$'" helps nobody.
PATTERN_HINTS: dict[str, str] = {}


def explain_pattern(pattern: str, hint: str) -> str:
    """Register the words that replace `pattern` in validation messages; returns `pattern`."""
    PATTERN_HINTS[pattern] = hint
    return pattern


def describe_validation_error(error: ValidationError, prefix: str = "spec") -> str:
    """One line per problem, each naming the field the way a user writes it in YAML."""
    lines = []
    for problem in error.errors():
        path = ".".join([prefix, *(str(part) for part in problem["loc"])]) if problem["loc"] else prefix
        cause = (problem.get("ctx") or {}).get("error")
        if isinstance(cause, ArgumentError):
            # The argument checks know where below the field each mistake is.
            lines += [found.render(path) for found in cause.problems]
            continue
        message = problem["msg"].removeprefix("Value error, ")
        hint = PATTERN_HINTS.get(str((problem.get("ctx") or {}).get("pattern")))
        if problem["type"] == "string_pattern_mismatch" and hint:
            message = f"{problem['input']!r} is not {hint}"
        lines.append(f"{path}: {message}")
    return "; ".join(lines)
