"""Turn whatever the caller passed as data into a `datasets.Dataset`, and check its columns.

Accepted: a `datasets.Dataset`, a pandas DataFrame, a list (or other iterable) of dicts,
a dict of columns, or a data URI string (read by `kubetune_trainer.data_sources`).
One form for everything downstream means one tokenization path (`Dataset.map`, which
also gives `num_proc` workers) instead of the seed's two.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from datasets import Dataset, DatasetDict
from pyarrow.lib import ArrowInvalid, ArrowTypeError

from kubetune_api.suggestions import closest
from kubetune_trainer.errors import DataError


def to_dataset(data: Any, role: str = "train") -> Dataset:
    """`data` as a non-empty `datasets.Dataset`; `DataError` when it cannot be one."""
    try:
        dataset = _convert(data, role)
    except (ArrowInvalid, ArrowTypeError) as error:
        # e.g. a column holding text in some rows and numbers in others.
        raise DataError(f"{role}: the data cannot be read as a table: {error}") from None
    if len(dataset) == 0:
        raise DataError(f"{role}: the data has no rows")
    return dataset


def _convert(data: Any, role: str) -> Dataset:
    if isinstance(data, Dataset):
        dataset = data
    elif isinstance(data, DatasetDict):
        raise DataError(f"{role}: got a DatasetDict with splits {list(data)}; pass one split, e.g. data['{role}']")
    elif isinstance(data, str):
        # Lazy: data_sources pulls fsspec and friends, needed only for URIs.
        from kubetune_trainer.data_sources import load_source

        split = "validation" if role == "validation" else "train"
        dataset = load_source(data, default_split=split, role=role)
    elif hasattr(data, "columns") and hasattr(data, "to_dict"):
        # pandas DataFrame (polars has to_dict too, with another meaning: go through rows).
        try:
            dataset = Dataset.from_pandas(data, preserve_index=False)
        except (TypeError, AttributeError):
            dataset = Dataset.from_list(list(data.iter_rows(named=True)))
    elif isinstance(data, Mapping):
        dataset = Dataset.from_dict(dict(data))
    elif isinstance(data, Iterable):
        rows = list(data)
        if rows and not all(isinstance(row, Mapping) for row in rows):
            raise DataError(f"{role}: a list of data must hold dicts (one per row), got {type(rows[0]).__name__}")
        dataset = Dataset.from_list([dict(row) for row in rows])
    else:
        raise DataError(
            f"{role}: unsupported data type {type(data).__name__}; pass a list of dicts, a pandas "
            "DataFrame, a datasets.Dataset or a data URI"
        )
    return dataset


def require_columns(dataset: Dataset, columns: Sequence[str | None], role: str, task: str) -> None:
    """`DataError` for the first column `task` needs that the data lacks, listing those found."""
    for column in columns:
        if column is not None and column not in dataset.column_names:
            raise DataError(
                f"{role}: task {task} needs column {column!r}{closest(column, dataset.column_names)}, "
                f"but the data has columns {dataset.column_names}; name the columns to use with columns=(...)"
            )
