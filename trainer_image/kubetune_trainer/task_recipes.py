"""One implementation entry per task: how its rows become features, which collator batches
them, and how its model is loaded.

What a task *is* (its columns, model class, peft task type, metrics, LoRA and quantize
support) is declared once, torch-free, in `kubetune_api.tasks.TASKS`; `RECIPES` holds
the code for the same tasks, and tests/trainer/test_task_registry.py checks that the two
cover the same tasks and agree. `prepare` is the one dispatch point for data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset
from transformers import (
    DataCollatorForLanguageModeling,
    DataCollatorForSeq2Seq,
    DataCollatorWithPadding,
    PreTrainedTokenizerBase,
)

from kubetune_api.tasks import TASK_NAMES, TASKS, Task
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.features import CausalLMCollator, Classify, ConcatenatedTexts, Sequences
from kubetune_trainer.inputs import require_columns
from kubetune_trainer.labels import LabelScheme, infer_labels
from kubetune_trainer.model_loaders import Loader, load_classifier, load_token_detection, pretrained
from kubetune_trainer.questions import QuestionFeatures

LENGTH_COLUMN = "length"

MapFunction = Callable[[dict[str, list[Any]]], dict[str, list[Any]]]
Collator = Callable[[list[dict[str, Any]]], dict[str, Any]]


@dataclass(frozen=True)
class FeatureRequest:
    """What a task's feature builder gets: the tokenizer, its columns (by role) and options."""

    task: str
    tokenizer: PreTrainedTokenizerBase
    columns: tuple[str | None, ...]
    train: Dataset
    maxlength: int
    stride: int = 128
    prefix: str | None = None
    pad_to_multiple_of: int | None = None
    known_labels: dict[str, int] | None = None


@dataclass
class FeaturePlan:
    """A task's answer: the map function per role ("train", "validation") and the collator."""

    encoder: Callable[[str], MapFunction]
    collator: Collator
    labels: LabelScheme | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TaskRecipe:
    """The code behind one task of the registry."""

    features: Callable[[FeatureRequest], FeaturePlan]
    load: Loader


def _classification(request: FeatureRequest) -> FeaturePlan:
    text1, text2, label = request.columns
    assert text1 is not None and label is not None
    scheme = infer_labels(request.train, label, request.known_labels)
    return FeaturePlan(
        lambda role: Classify(request.tokenizer, text1, text2, label, scheme, request.maxlength, role),
        DataCollatorWithPadding(request.tokenizer, pad_to_multiple_of=request.pad_to_multiple_of),
        labels=scheme,
    )


def _concatenated(request: FeatureRequest, append_eos: bool) -> MapFunction:
    text1, text2 = request.columns
    assert text1 is not None
    return ConcatenatedTexts(request.tokenizer, text1, text2, request.maxlength, append_eos)


def _causal_text(request: FeatureRequest) -> FeaturePlan:
    # End each text with EOS so the model learns where texts stop.
    append_eos = request.tokenizer.eos_token_id is not None
    return FeaturePlan(
        lambda role: _concatenated(request, append_eos),
        CausalLMCollator(request.tokenizer, request.pad_to_multiple_of),
    )


def _masked_text(request: FeatureRequest) -> FeaturePlan:
    if request.tokenizer.mask_token is None:
        raise ConfigError(f"task {request.task} masks tokens, but the tokenizer has no mask token")
    return FeaturePlan(
        lambda role: _concatenated(request, append_eos=False),
        DataCollatorForLanguageModeling(request.tokenizer, mlm=True, pad_to_multiple_of=request.pad_to_multiple_of),
    )


def _questions(request: FeatureRequest) -> FeaturePlan:
    question, context, answers = request.columns
    assert question is not None and context is not None and answers is not None
    stride, warnings = request.stride, []
    if stride >= request.maxlength // 2:
        # The tokenizer rejects windows that cannot advance; keep a usable overlap.
        warnings.append(
            f"stride {stride} is too large for maxlength {request.maxlength}; using {request.maxlength // 4}"
        )
        stride = request.maxlength // 4
    return FeaturePlan(
        lambda role: QuestionFeatures(request.tokenizer, question, context, answers, request.maxlength, stride),
        DataCollatorWithPadding(request.tokenizer, pad_to_multiple_of=request.pad_to_multiple_of),
        warnings=warnings,
    )


def _sequences(request: FeatureRequest) -> FeaturePlan:
    source, target = request.columns
    assert source is not None and target is not None
    return FeaturePlan(
        lambda role: Sequences(request.tokenizer, source, target, request.prefix, request.maxlength),
        # The model is set on the collator once loaded: it builds decoder inputs with the model's helper.
        DataCollatorForSeq2Seq(
            request.tokenizer, label_pad_token_id=-100, pad_to_multiple_of=request.pad_to_multiple_of
        ),
    )


RECIPES: dict[Task, TaskRecipe] = {
    Task.TEXT_CLASSIFICATION: TaskRecipe(_classification, load_classifier),
    Task.LANGUAGE_GENERATION: TaskRecipe(_causal_text, pretrained(TASKS[Task.LANGUAGE_GENERATION].auto_class)),
    Task.LANGUAGE_MODELING: TaskRecipe(_masked_text, pretrained(TASKS[Task.LANGUAGE_MODELING].auto_class)),
    Task.QUESTION_ANSWERING: TaskRecipe(_questions, pretrained(TASKS[Task.QUESTION_ANSWERING].auto_class)),
    Task.SEQUENCE_SEQUENCE: TaskRecipe(_sequences, pretrained(TASKS[Task.SEQUENCE_SEQUENCE].auto_class)),
    Task.TOKEN_DETECTION: TaskRecipe(_masked_text, load_token_detection),
}


def check_task(task: str) -> str:
    """The task, or a ConfigError listing the valid ones."""
    if task not in TASK_NAMES:
        raise ConfigError(f"unknown task {task!r}; valid tasks: {', '.join(TASK_NAMES)}")
    return task


def recipe_for(task: str) -> TaskRecipe:
    return RECIPES[Task(check_task(task))]


def task_columns(task: str, columns: Sequence[str] | None) -> tuple[str | None, ...]:
    """The columns `task` reads, by role in its order (None for an optional one left out).

    From the caller's `columns` or the defaults, e.g. text-classification: (text, text2
    or None, label); question-answering: (question, context, answers).
    """
    info = TASKS[Task(check_task(task))]
    resolved = info.layout.resolve(columns)
    if resolved is None:
        raise ConfigError(f"columns: {task} reads {info.readings()}, got {tuple(columns or ())}")
    return resolved


@dataclass
class Prepared:
    """Tokenized data, its collator, and (classification) the label scheme."""

    train: Dataset
    validation: Dataset | None
    collator: Collator
    labels: LabelScheme | None = None
    warnings: tuple[str, ...] = ()


def _map(dataset: Dataset, fn: MapFunction, workers: int | None, lengths: bool) -> Dataset:
    mapped = dataset.map(fn, batched=True, num_proc=workers, remove_columns=dataset.column_names, desc="Tokenizing")
    if lengths:
        # Precomputed lengths let LengthGroupedSampler skip a pass over the data set.
        mapped = mapped.map(lambda row: {LENGTH_COLUMN: len(row["input_ids"])}, num_proc=workers)
    return mapped


def prepare(
    task: str,
    train: Dataset,
    validation: Dataset | None,
    tokenizer: PreTrainedTokenizerBase,
    columns: Sequence[str] | None,
    maxlength: int,
    stride: int = 128,
    prefix: str | None = None,
    workers: int | None = None,
    pad_to_multiple_of: int | None = None,
    lengths: bool = False,
    known_labels: dict[str, int] | None = None,
) -> Prepared:
    """Tokenize `train` (and `validation`) for `task` and pick the collator."""
    cols = task_columns(task, columns)
    require_columns(train, cols, "train", task)
    if validation is not None:
        require_columns(validation, cols, "validation", task)
    request = FeatureRequest(task, tokenizer, cols, train, maxlength, stride, prefix, pad_to_multiple_of, known_labels)
    plan = recipe_for(task).features(request)
    return Prepared(
        train=_map(train, plan.encoder("train"), workers, lengths),
        validation=_map(validation, plan.encoder("validation"), workers, lengths) if validation is not None else None,
        collator=plan.collator,
        labels=plan.labels,
        warnings=tuple(plan.warnings),
    )
