"""Every training task, declared once: what data it reads, which model family it trains,
and what it supports.

This is the one place a task is described. The spec model's checks (`training.py`), the
CRD's columns rule (`kubetune_operator.crd`), `kubetune validate` and the trainer's
dispatch (`kubetune_trainer.task_recipes`, which holds one implementation entry per
task and a test that both registries agree) all read `TASKS`. Adding a task, or a data
layout of a task, means adding one entry here and one there.

Torch-free: model classes and peft task types are named as strings, resolved by the
trainer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal


class Task(str, Enum):
    """Training tasks, each mapped to one model family by the trainer."""

    TEXT_CLASSIFICATION = "text-classification"
    LANGUAGE_GENERATION = "language-generation"
    LANGUAGE_MODELING = "language-modeling"
    QUESTION_ANSWERING = "question-answering"
    SEQUENCE_SEQUENCE = "sequence-sequence"
    TOKEN_DETECTION = "token-detection"


class DataFormat(str, Enum):
    """How the rows of a task with several data layouts are laid out (`data.format`)."""

    TEXT = "text"
    CHAT = "chat"
    PROMPT_COMPLETION = "prompt-completion"


DATA_FORMAT_NAMES: tuple[str, ...] = tuple(data_format.value for data_format in DataFormat)

# What a column holds; the trainer tells layouts apart by it when data.format is not given.
ColumnKind = Literal["text", "messages", "text or messages"]


@dataclass(frozen=True)
class Column:
    """One data column a task reads: its role (also the default column name), meaning and kind."""

    role: str
    meaning: str
    optional: bool = False
    kind: ColumnKind = "text"


@dataclass(frozen=True)
class Layout:
    """One way a task's data can be laid out: the columns, in the order `columns` names them.

    `prompted`: part of each row is a prompt the loss skips by default (trainOnPrompt
    trains on it too); `templated`: rows may be conversations, rendered with a chat template.
    """

    columns: tuple[Column, ...]
    format: DataFormat | None = None  # None: the task's only layout, not chosen with data.format
    summary: str = ""
    prompted: bool = False
    templated: bool = False

    @property
    def min_columns(self) -> int:
        return sum(not column.optional for column in self.columns)

    @property
    def max_columns(self) -> int:
        return len(self.columns)

    def readings(self) -> str:
        """The column lists this layout accepts, e.g. "(text, label) or (text, text2, label)"."""
        variants = []
        for count in range(self.min_columns, self.max_columns + 1):
            names = [column.role for column, used in zip(self.columns, self._used(count), strict=True) if used]
            variants.append(f"({', '.join(names)})")
        return " or ".join(variants)

    def resolve(self, given: Sequence[str] | None) -> tuple[str | None, ...] | None:
        """Column names by role (None for an optional column left out); None when `given` does not fit.

        With fewer names than columns, the optional columns are the ones left out, first to last.
        """
        if not given:
            return tuple(None if column.optional else column.role for column in self.columns)
        if not self.min_columns <= len(given) <= self.max_columns:
            return None
        names = iter(given)
        return tuple(next(names) if used else None for used in self._used(len(given)))

    def _used(self, count: int) -> list[bool]:
        spare = count - self.min_columns  # how many optional columns are filled, in order
        used = []
        for column in self.columns:
            if column.optional:
                used.append(spare > 0)
                spare -= 1
            else:
                used.append(True)
        return used


@dataclass(frozen=True)
class TaskInfo:
    """What kubetune knows about a task, in the order a reader asks."""

    task: Task
    summary: str
    layouts: tuple[Layout, ...]  # the first is the default
    auto_class: str  # transformers class the trainer loads (token-detection: its generator's)
    peft_task_type: str  # a peft.TaskType member name
    metrics: str | None = None  # the evaluation metric suite beyond the loss, if any
    lora: bool = True
    quantize: bool = True
    options: tuple[str, ...] = ()  # spec fields (snake_case) that only this task reads

    @property
    def layout(self) -> Layout:
        return self.layouts[0]

    @property
    def column_bounds(self) -> tuple[int, int]:
        """The fewest and the most columns any layout of the task reads."""
        return min(lay.min_columns for lay in self.layouts), max(lay.max_columns for lay in self.layouts)

    @property
    def formats(self) -> tuple[DataFormat, ...]:
        """The data formats `data.format` may name for this task."""
        return tuple(layout.format for layout in self.layouts if layout.format is not None)

    def layout_of(self, data_format: str | DataFormat | None) -> Layout:
        """The layout `data_format` names (None: the default); ValueError for one the task lacks."""
        if data_format is None:
            return self.layout
        problem = format_problem(self.task, data_format)
        if problem is not None:
            raise ValueError(problem)
        return next(layout for layout in self.layouts if layout.format is not None and layout.format == data_format)

    def readings(self) -> str:
        if len(self.layouts) == 1:
            return self.layout.readings()
        return "; ".join(
            f"{layout.format.value if layout.format else ''} {layout.readings()}" for layout in self.layouts
        )


TEXT = Column("text", "the text")
TEXT2 = Column("text2", "a second text, paired with the first", optional=True)
TEXT_LAYOUT = Layout((TEXT, TEXT2), DataFormat.TEXT, "plain text")

TASKS: dict[Task, TaskInfo] = {
    info.task: info
    for info in (
        TaskInfo(
            Task.TEXT_CLASSIFICATION,
            "a label (class, several labels, or a number) per text or text pair",
            (Layout((TEXT, TEXT2, Column("label", "the label: a class id or name, a 0/1 list, or a number"))),),
            auto_class="AutoModelForSequenceClassification",
            peft_task_type="SEQ_CLS",
            metrics="classification",
        ),
        TaskInfo(
            Task.LANGUAGE_GENERATION,
            "a causal language model continuing text, or answering chats and prompts",
            (
                TEXT_LAYOUT,
                Layout(
                    (Column("messages", "a conversation: a list of {role, content} messages", kind="messages"),),
                    DataFormat.CHAT,
                    "conversations, the loss on the assistant turns",
                    prompted=True,
                    templated=True,
                ),
                Layout(
                    (
                        Column("prompt", "the prompt: text or a list of messages", kind="text or messages"),
                        Column("completion", "the answer: text or a list of messages", kind="text or messages"),
                    ),
                    DataFormat.PROMPT_COMPLETION,
                    "prompt and completion pairs, the loss on the completion",
                    prompted=True,
                    templated=True,
                ),
            ),
            auto_class="AutoModelForCausalLM",
            peft_task_type="CAUSAL_LM",
            metrics="perplexity",
            options=("chat_template", "train_on_prompt", "packing"),
        ),
        TaskInfo(
            Task.LANGUAGE_MODELING,
            "a masked language model filling in masked tokens",
            (TEXT_LAYOUT,),
            auto_class="AutoModelForMaskedLM",
            peft_task_type="FEATURE_EXTRACTION",
        ),
        TaskInfo(
            Task.QUESTION_ANSWERING,
            "extractive question answering: the answer's span in a context",
            (
                Layout(
                    (
                        Column("question", "the question"),
                        Column("context", "the text holding the answer"),
                        Column("answers", "the answer: a string or SQuAD's {text, answer_start}"),
                    )
                ),
            ),
            auto_class="AutoModelForQuestionAnswering",
            peft_task_type="QUESTION_ANS",
            options=("stride",),
        ),
        TaskInfo(
            Task.SEQUENCE_SEQUENCE,
            "an encoder-decoder model mapping a source text to a target text",
            (Layout((Column("source", "the input text"), Column("target", "the text to produce"))),),
            auto_class="AutoModelForSeq2SeqLM",
            peft_task_type="SEQ_2_SEQ_LM",
            options=("prefix",),
        ),
        TaskInfo(
            Task.TOKEN_DETECTION,
            "ELECTRA-style replaced token detection (a generator and a discriminator)",
            (TEXT_LAYOUT,),
            auto_class="AutoModelForMaskedLM",
            peft_task_type="FEATURE_EXTRACTION",
            # The generator and the discriminator share embeddings and train together; an
            # adapter (and so a quantized base) has nowhere to go in that pair.
            lora=False,
            quantize=False,
        ),
    )
}

TASK_NAMES: tuple[str, ...] = tuple(task.value for task in Task)


def task_info(task: str | Task) -> TaskInfo:
    """The registry entry of `task` (a ValueError listing the valid ones for an unknown name)."""
    try:
        return TASKS[Task(task)]
    except ValueError:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASK_NAMES)}") from None


def format_problem(task: str | Task, data_format: str | DataFormat) -> str | None:
    """Why `task` cannot read data in `data_format`, or None when it can."""
    info = task_info(task)
    name = data_format.value if isinstance(data_format, DataFormat) else data_format
    if name not in DATA_FORMAT_NAMES:
        return f"unknown data format {name!r}; use one of: {', '.join(DATA_FORMAT_NAMES)}"
    if name in (known.value for known in info.formats):
        return None
    if not info.formats:
        return f"task {info.task.value} has one data layout, {info.readings()}; remove data.format"
    return f"task {info.task.value} reads data.format {', '.join(known.value for known in info.formats)}, not {name}"


def columns_problem(task: str | Task, columns: Sequence[str], data_format: str | None = None) -> str | None:
    """Why `columns` does not fit `task` (in `data_format`, when given), or None when it does."""
    info = task_info(task)
    layouts = [info.layout_of(data_format)] if data_format is not None else list(info.layouts)
    if any(layout.resolve(columns) is not None for layout in layouts):
        return None
    readings = layouts[0].readings() if data_format is not None else info.readings()
    where = f" with data.format {data_format}" if data_format is not None else ""
    return f"task {info.task.value}{where} reads {readings}, got {len(columns)} column(s) {list(columns)}"


def support_problems(task: str | Task, *, lora: bool, quantize: bool) -> list[tuple[str, str]]:
    """(option, why) for what `task` cannot do of what was asked: LoRA, quantization."""
    info = task_info(task)
    problems = []
    if quantize and not info.quantize:
        problems.append(("quantize", f"quantize is not supported with task {info.task.value}"))
    if lora and not info.lora:
        problems.append(("lora", f"lora is not supported with task {info.task.value}"))
    return problems


def misplaced_options(task: str | Task, used: Iterable[str]) -> list[tuple[str, str]]:
    """(option, the tasks that read it) for each option in `used` that `task` does not read.

    Callers pass only options the user gave a value: a field with a default is in every
    stored FineTuneJob (the API server fills it in), so only the others can be misplaced.
    """
    info = task_info(task)
    owners: dict[str, list[str]] = {}
    for other in TASKS.values():
        for option in other.options:
            owners.setdefault(option, []).append(other.task.value)
    return [(option, " or ".join(owners[option])) for option in used if option in owners and option not in info.options]
