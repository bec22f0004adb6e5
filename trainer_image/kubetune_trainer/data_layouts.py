"""Which of a task's data layouts (`TaskInfo.layouts`) the data is in, when the job does not say.

For a task with one layout there is nothing to choose. Otherwise (language-generation:
text, chat, prompt-completion):

* `data.format` (`format=` in Python) decides when given;
* without `columns`, the data's column names decide: the first layout after the default
  whose columns the data has (a `messages` column: chat; `prompt` and `completion`:
  prompt-completion), else the default (text);
* with `columns`, the first row's values decide: the default layout when they fit it
  (two text columns are a text pair, as in the seed), else the first layout they fit
  (a list of messages: chat or conversational prompt-completion).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datasets import Dataset

from kubetune_api.tasks import Column, Layout, TaskInfo
from kubetune_trainer.errors import ConfigError


def choose_layout(info: TaskInfo, data: Dataset, columns: Sequence[str] | None, given: str | None) -> Layout:
    """The layout to read `data` with; ConfigError when `given` is not one of the task's formats."""
    if given is not None:
        try:
            return info.layout_of(given)
        except ValueError as error:
            raise ConfigError(f"format: {error}") from None
    if len(info.layouts) == 1:
        return info.layout
    if not columns:
        for layout in (*info.layouts[1:], info.layout):
            if all(column.role in data.column_names for column in layout.columns if not column.optional):
                return layout
        return info.layout
    first = data[0] if len(data) else {}
    for layout in (info.layout, *info.layouts[1:]):
        resolved = layout.resolve(columns)
        if resolved is not None and all(
            name is None or _fits(column, first.get(name))
            for column, name in zip(layout.columns, resolved, strict=True)
        ):
            return layout
    return info.layout  # the default layout's reader names what is wrong with the data


def _fits(column: Column, value: Any) -> bool:
    """Whether a cell can be what `column` holds (a missing value fits anything)."""
    if value is None:
        return True
    if isinstance(value, str):
        return column.kind != "messages"
    if isinstance(value, (list, tuple)):
        return column.kind != "text"
    return column.kind == "text"
