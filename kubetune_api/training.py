"""The training part of a FineTuneJob spec.

This module is the single source of truth for what a user may write under
`spec:` about training. `kubetune_api.finetunejob` extends `TrainingSpec` with
scheduling fields, the CRD's openAPIV3Schema is generated from the result, and the
trainer validates the JSON it receives with this same model. It imports without torch.

YAML and JSON use camelCase (`maxLength`, `trainingArgs`); Python uses snake_case.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from kubetune_api.arguments import (
    ArgumentError,
    ArgumentProblem,
    check_lora,
    check_quantize,
    check_training_args,
    check_unchecked_training_args,
)
from kubetune_api.output_spec import OutputSpec
from kubetune_api.spec_base import SpecModel, describe_validation_error
from kubetune_api.tasks import (
    DATA_FORMAT_NAMES,
    TASK_NAMES,
    TASKS,
    Task,
    columns_problem,
    format_problem,
    misplaced_options,
    support_problems,
)
from kubetune_api.uris import (
    DATA_SCHEMES,
    MAX_URI,
    PVC_SCHEME,
    check_pvc_uri,
    check_scheme,
    uri_scheme,
)

# Task and TASK_NAMES live in the task registry; they are re-exported here for the spec's readers.
__all__ = [
    "DATA_FORMAT_NAMES",
    "FILE_FORMATS",
    "TASK_COLUMNS",
    "TASK_NAMES",
    "BaseModelSource",
    "DataSpec",
    "OutputSpec",
    "SpecModel",
    "Task",
    "TrainingSpec",
    "describe_validation_error",
]

# How many data columns each task reads, and what they mean (derived from the task registry).
TASK_COLUMNS: dict[Task, tuple[int, int, str]] = {
    task: (*info.column_bounds, info.readings()) for task, info in TASKS.items()
}

FILE_FORMATS = ("csv", "json", "jsonl", "parquet", "txt")
# The longest chat template the spec takes: real ones are a few KiB, and a bounded string
# keeps the CRD's immutability rule within the API server's CEL cost budget.
MAX_CHAT_TEMPLATE = 65536
# The attention implementations transformers 5 ships (hub kernels need network at run time: not offered).
ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")

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


def _format_message(where: str) -> str:
    """data.format's meaning, naming the fields under `where` ("data." or "spec.data.")."""
    return (
        f"{where}format is the data format ({', '.join(DATA_FORMAT_NAMES)}); "
        f"the file format ({', '.join(FILE_FORMATS)}) goes in {where}fileFormat"
    )


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
        max_length=max(high for _, high, _ in TASK_COLUMNS.values()),
        description=(
            "Data columns to read, in task order: "
            + "; ".join(f"{task.value} {meaning}" for task, (_, _, meaning) in TASK_COLUMNS.items())
            + ". Default: the names shown, as the task needs them."
        ),
    )
    format: str | None = Field(
        default=None,
        description=(
            "language-generation: how rows are laid out. text: plain text (the text column); chat: "
            "conversations (a messages column, each a list of {role, content} with role system, user or "
            "assistant); prompt-completion: prompt and completion columns, text or lists of messages. "
            "Default: detected from the data. (The file format is data.fileFormat.)"
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"self in {list(DATA_FORMAT_NAMES)!r}",
                    "message": _format_message("spec.data."),
                }
            ]
        },
    )
    file_format: str | None = Field(
        default=None,
        description="File format, when the URI's extension does not tell: csv, json, jsonl, parquet or txt.",
        json_schema_extra={"enum": list(FILE_FORMATS)},
    )

    @field_validator("train", "validation")
    @classmethod
    def _data_scheme(cls, uri: str | None) -> str | None:
        return uri if uri is None else check_scheme(uri, DATA_SCHEMES, "data")

    @field_validator("format")
    @classmethod
    def _known_data_format(cls, value: str | None) -> str | None:
        if value is not None and value in FILE_FORMATS:
            raise ValueError(
                f"{value} is a file format: write it as data.fileFormat: {value} "
                f"(data.format is the data format: {', '.join(DATA_FORMAT_NAMES)})"
            )
        if value is not None and value not in DATA_FORMAT_NAMES:
            raise ValueError(f"unknown data format {value!r}: {_format_message('data.')}")
        return value

    @field_validator("file_format")
    @classmethod
    def _known_file_format(cls, value: str | None) -> str | None:
        if value is not None and value not in FILE_FORMATS:
            raise ValueError(f"unknown file format {value!r}; use one of: {', '.join(FILE_FORMATS)}")
        return value


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
    chat_template: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CHAT_TEMPLATE,
        description=(
            "language-generation: a Jinja chat template to render conversations with (chat data, "
            "conversational prompt-completion data), instead of the base tokenizer's own. It is saved "
            "with the trained tokenizer. Chat data needs one of the two."
        ),
    )
    train_on_prompt: bool | None = Field(
        default=None,
        description=(
            "language-generation: true trains on every token, prompts and user turns included. "
            "Default: the loss covers only the assistant turns (chat) or the completion (prompt-completion)."
        ),
    )
    packing: bool | None = Field(
        default=None,
        description=(
            "language-generation: true packs rows into sequences of up to maxLength tokens, each row "
            "attending only to itself (no padding processed); false keeps one row per sequence, padded "
            "per batch. Default: chat and prompt-completion false; text concatenates all rows and cuts "
            "the stream into maxLength blocks (the seed's behaviour; attention crosses rows)."
        ),
    )
    attn_implementation: str | None = Field(
        default=None,
        description=(
            "The model's attention: " + ", ".join(ATTENTION_IMPLEMENTATIONS) + " (flash needs flash-attn in the "
            "trainer image and an Ampere or newer GPU). Default on a GPU: flash_attention_2 where flash-attn is "
            "installed and the GPU, the precision (bf16 or fp16) and the model allow it, else sdpa where the model "
            "supports it; on a CPU the model's own."
        ),
        json_schema_extra={"enum": list(ATTENTION_IMPLEMENTATIONS)},
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

    @field_validator("attn_implementation")
    @classmethod
    def _known_attention(cls, value: str | None) -> str | None:
        if value is not None and value not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"unknown attention {value!r}; use one of: {', '.join(ATTENTION_IMPLEMENTATIONS)}")
        return value

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
        data_format = self.data.format
        if data_format is not None and (problem := format_problem(task, data_format)):
            raise ValueError(f"data.format: {problem}")
        if self.data.columns is not None:
            problem = columns_problem(task, self.data.columns, data_format)
            if problem:
                raise ValueError(f"data.columns: {problem}")
        layout = TASKS[task].layout_of(data_format) if data_format is not None else None
        if layout is not None and self.train_on_prompt and not layout.prompted:
            raise ValueError(f"trainOnPrompt: data.format {data_format} has no prompt; every token is trained")
        if layout is not None and self.chat_template is not None and not layout.templated:
            raise ValueError(f"chatTemplate: data.format {data_format} holds no conversations to render")
        # Only fields without a default can be misplaced: the API server stores the others
        # (stride: 128, ...) in every FineTuneJob.
        given = [name for name, field in type(self).model_fields.items() if field.default is None]
        for option, owners in misplaced_options(task, [name for name in given if getattr(self, name) is not None]):
            raise ValueError(f"{to_camel(option)} is only used by task {owners}, not {task.value}")
        for option, problem in support_problems(task, lora=self.lora is not None, quantize=self.quantize is not None):
            raise ValueError(f"{problem}: remove spec.{option}")
        if self.quantize is not None and self.lora is None:
            # A quantized base cannot be trained directly, only through an adapter (QLoRA).
            raise ValueError("quantize needs lora: add lora: true (or LoraConfig arguments)")
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
