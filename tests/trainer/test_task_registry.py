"""The two task registries: what a task is (kubetune_api.tasks) and its code (task_recipes) agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import transformers
from datasets import Dataset
from peft import TaskType
from tiny_models import TinyModels
from transformers import AutoConfig, AutoTokenizer

from kubetune_api.tasks import TASKS, Layout, Task
from kubetune_trainer import HFTrainer
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.eval_metrics import METRIC_SUITES, default_metrics
from kubetune_trainer.models import load_model
from kubetune_trainer.peft_config import QuantizationPlan, lora_task_type
from kubetune_trainer.task_recipes import RECIPES, prepare, task_columns
from kubetune_trainer.transformers_trainer import PERPLEXITY_SUITE

# A tiny base for each task, and one value per column role.
BASES = {
    Task.TEXT_CLASSIFICATION: "bert",
    Task.LANGUAGE_GENERATION: "chat_llama",
    Task.LANGUAGE_MODELING: "bert",
    Task.QUESTION_ANSWERING: "bert",
    Task.SEQUENCE_SEQUENCE: "t5",
    Task.TOKEN_DETECTION: "electra",
}
VALUES: dict[str, Any] = {
    "text": "the cat sat on the mat",
    "text2": "the dog ran in the park",
    "label": "cat",
    "question": "what color ?",
    "context": "the cat is red",
    "answers": "red",
    "source": "one",
    "target": "eins",
    "messages": [{"role": "user", "content": "what color ?"}, {"role": "assistant", "content": "red"}],
    "prompt": "what color ?",
    "completion": " red",
}
LAYOUTS = [(task, layout) for task, info in TASKS.items() for layout in info.layouts]


def layout_id(case: tuple[Task, Layout]) -> str:
    task, layout = case
    return f"{task.value}-{layout.format.value}" if layout.format else task.value


def test_both_registries_hold_the_same_tasks_and_data_formats() -> None:
    assert set(RECIPES) == set(TASKS) == set(Task)
    assert set(BASES) == set(Task)  # this test covers every task too
    for task, info in TASKS.items():
        assert set(RECIPES[task].features) == {layout.format for layout in info.layouts}, task


@pytest.mark.parametrize("task", list(Task), ids=lambda task: task.value)
def test_declared_names_exist_in_the_libraries(task: Task) -> None:
    info = TASKS[task]
    assert hasattr(transformers, info.auto_class), info.auto_class
    assert lora_task_type(task.value) is TaskType[info.peft_task_type]
    # A suite is computed from predictions (compute_metrics) or from the eval loss.
    assert info.metrics in {None, PERPLEXITY_SUITE, *METRIC_SUITES}
    assert default_metrics(task.value) is METRIC_SUITES.get(info.metrics or "")


@pytest.mark.parametrize("case", LAYOUTS, ids=layout_id)
def test_recipe_prepares_the_declared_columns_and_loads_the_declared_class(
    case: tuple[Task, Layout], tiny_models: TinyModels, chat_llama: Path
) -> None:
    task, layout = case
    info = TASKS[task]
    base = str(chat_llama if BASES[task] == "chat_llama" else getattr(tiny_models, BASES[task]))
    tokenizer = AutoTokenizer.from_pretrained(base)
    roles = [column.role for column in layout.columns]
    rows = [{role: VALUES[role] for role in roles}, {**{role: VALUES[role] for role in roles}, "label": "dog"}]

    # Every declared column (optional ones included) is read under its role's name.
    data_format = layout.format.value if layout.format else None
    assert task_columns(task.value, roles, data_format) == tuple(roles)
    prepared = prepare(task.value, Dataset.from_list(rows), None, tokenizer, roles, 32, data_format=data_format)
    assert len(prepared.train) >= 1 and "input_ids" in prepared.train.column_names

    config = AutoConfig.from_pretrained(base)
    model = load_model(task.value, base, config, prepared.labels, tokenizer, QuantizationPlan(None))
    family = getattr(transformers, info.auto_class)._model_mapping.values()
    # token-detection wraps a generator of the declared class and a discriminator.
    loaded = model.generator if task is Task.TOKEN_DETECTION else model
    assert any(isinstance(loaded, cls) for cls in family), type(loaded).__name__


@pytest.mark.parametrize("task", [task for task, info in TASKS.items() if not info.lora], ids=lambda t: t.value)
def test_tasks_without_lora_refuse_it(task: Task, tiny_models: TinyModels) -> None:
    base = str(getattr(tiny_models, BASES[task]))
    with pytest.raises(ConfigError, match=f"lora is not supported with task {task.value}"):
        HFTrainer()(base, [{"text": VALUES["text"]}], task=task.value, lora=True)
