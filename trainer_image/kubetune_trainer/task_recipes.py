"""One implementation entry per task: how its rows become features, which collator batches
them, and how its model is loaded.

What a task *is* (its columns, model class, peft task type, metrics, LoRA and quantize
support) is declared once, torch-free, in `kubetune_api.tasks.TASKS`; `RECIPES` holds
the code for the same tasks, and tests/trainer/test_task_registry.py checks that the two
cover the same tasks and agree. `prepare` is the one dispatch point for data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from datasets import Dataset
from transformers import (
    DataCollatorForLanguageModeling,
    DataCollatorForSeq2Seq,
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from kubetune_api.tasks import TASK_NAMES, TASKS, DataFormat, Task
from kubetune_trainer.data_layouts import choose_layout
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.feature_plan import Collator, FeaturePlan, FeatureRequest, MapFunction, SFTOptions, SFTReport
from kubetune_trainer.features import CausalLMCollator, Classify, ConcatenatedTexts, Sequences
from kubetune_trainer.inputs import require_columns
from kubetune_trainer.labels import DEFAULT_MAX_LABELS, LabelScheme, infer_labels
from kubetune_trainer.model_loaders import Loader, load_classifier, load_token_detection, pretrained
from kubetune_trainer.questions import QuestionFeatures
from kubetune_trainer.sft_features import chat_features, prompt_completion_features, text_features

LENGTH_COLUMN = "length"

# A task's feature builders by data format (None: the task's only layout).
Builders = dict[DataFormat | None, Callable[[FeatureRequest], FeaturePlan]]


@dataclass(frozen=True)
class TaskRecipe:
    """The code behind one task of the registry: a feature builder per data layout, and a loader."""

    features: Builders
    load: Loader


def _classification(request: FeatureRequest) -> FeaturePlan:
    text1, text2, label = request.columns
    assert text1 is not None and label is not None
    scheme = infer_labels(request.train, label, request.known_labels, request.max_labels)
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
    """Plain text: the seed's concatenation unless packing is set (then rows stay apart)."""
    if request.sft.packing is not None:
        return text_features(request)
    # End each text with EOS so the model learns where texts stop.
    append_eos = request.tokenizer.eos_token_id is not None
    return FeaturePlan(
        lambda role: _concatenated(request, append_eos),
        CausalLMCollator(request.tokenizer, request.pad_to_multiple_of),
        sft=SFTReport("text", "every token", None, "concatenated"),
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
    collator = DataCollatorForSeq2Seq(
        request.tokenizer, label_pad_token_id=-100, pad_to_multiple_of=request.pad_to_multiple_of
    )

    def bind(model: PreTrainedModel) -> None:
        # The collator builds decoder inputs with the model's own helper.
        collator.model = model

    return FeaturePlan(
        lambda role: Sequences(request.tokenizer, source, target, request.prefix, request.maxlength),
        collator,
        bind=bind,
    )


TEXT = DataFormat.TEXT
RECIPES: dict[Task, TaskRecipe] = {
    Task.TEXT_CLASSIFICATION: TaskRecipe({None: _classification}, load_classifier),
    Task.LANGUAGE_GENERATION: TaskRecipe(
        {
            TEXT: _causal_text,
            DataFormat.CHAT: chat_features,
            DataFormat.PROMPT_COMPLETION: prompt_completion_features,
        },
        pretrained(TASKS[Task.LANGUAGE_GENERATION].auto_class),
    ),
    Task.LANGUAGE_MODELING: TaskRecipe({TEXT: _masked_text}, pretrained(TASKS[Task.LANGUAGE_MODELING].auto_class)),
    Task.QUESTION_ANSWERING: TaskRecipe({None: _questions}, pretrained(TASKS[Task.QUESTION_ANSWERING].auto_class)),
    Task.SEQUENCE_SEQUENCE: TaskRecipe({None: _sequences}, pretrained(TASKS[Task.SEQUENCE_SEQUENCE].auto_class)),
    Task.TOKEN_DETECTION: TaskRecipe({TEXT: _masked_text}, load_token_detection),
}


def check_task(task: str) -> str:
    """The task, or a ConfigError listing the valid ones."""
    if task not in TASK_NAMES:
        raise ConfigError(f"unknown task {task!r}; valid tasks: {', '.join(TASK_NAMES)}")
    return task


def recipe_for(task: str) -> TaskRecipe:
    return RECIPES[Task(check_task(task))]


def task_columns(task: str, columns: Sequence[str] | None, data_format: str | None = None) -> tuple[str | None, ...]:
    """The columns `task` reads (in `data_format`, default the task's first), by role in order.

    From the caller's `columns` or the defaults, e.g. text-classification: (text, text2
    or None, label); question-answering: (question, context, answers). None stands for
    an optional column left out.
    """
    info = TASKS[Task(check_task(task))]
    layout = info.layout_of(data_format)
    resolved = layout.resolve(columns)
    if resolved is None:
        where = f" ({data_format} data)" if data_format else ""
        raise ConfigError(f"columns: {task}{where} reads {layout.readings()}, got {tuple(columns or ())}")
    return resolved


@dataclass
class Prepared:
    """Tokenized data, its collator, and what the task learnt about the data on the way."""

    train: Dataset
    validation: Dataset | None
    collator: Collator
    labels: LabelScheme | None = None
    warnings: tuple[str, ...] = ()
    bind: Callable[[PreTrainedModel], None] | None = None  # call with the loaded model
    sft: SFTReport | None = None


def _map(dataset: Dataset, fn: MapFunction, workers: int | None, indexed: bool) -> Dataset:
    return dataset.map(
        fn,
        batched=True,
        with_indices=indexed,
        num_proc=workers,
        remove_columns=dataset.column_names,
        desc="Tokenizing",
    )


def _build(plan: FeaturePlan, dataset: Dataset, role: str, workers: int | None, lengths: bool) -> Dataset:
    mapped = _map(dataset, plan.encoder(role), workers, plan.indexed)
    if plan.finish is not None:
        mapped = plan.finish(dataset, mapped, role)
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
    max_labels: int = DEFAULT_MAX_LABELS,
    data_format: str | None = None,
    sft: SFTOptions | None = None,
) -> Prepared:
    """Tokenize `train` (and `validation`) for `task` and pick the collator.

    `data_format`: the layout of the rows (text, chat, prompt-completion); default: detected.
    """
    layout = choose_layout(TASKS[Task(check_task(task))], train, columns, data_format)
    cols = task_columns(task, columns, layout.format.value if layout.format else None)
    require_columns(train, cols, "train", task)
    if validation is not None:
        require_columns(validation, cols, "validation", task)
    request = FeatureRequest(
        task=task,
        tokenizer=tokenizer,
        columns=cols,
        train=train,
        maxlength=maxlength,
        stride=stride,
        prefix=prefix,
        pad_to_multiple_of=pad_to_multiple_of,
        known_labels=known_labels,
        max_labels=max_labels,
        workers=workers,
        sft=sft or SFTOptions(),
    )
    plan = recipe_for(task).features[layout.format](request)
    prepared_train = _build(plan, train, "train", workers, lengths)
    prepared_validation = _build(plan, validation, "validation", workers, lengths) if validation is not None else None
    return Prepared(
        train=prepared_train,
        validation=prepared_validation,
        collator=plan.collator,
        labels=plan.labels,
        warnings=tuple(plan.warnings),
        bind=plan.bind,
        sft=plan.sft,
    )
