"""Turn the data URIs of a job (`DataSpec`) into `datasets.Dataset`s.

Forms a URI may take:

* a local path or `file://PATH`: csv, json, jsonl, parquet or txt, the format taken from
  the extension or `data.fileFormat`; a directory or a glob reads every matching file;
* `hf://NAME?config=CONFIG&split=SPLIT&revision=REV`: a Hugging Face hub dataset, via
  `datasets.load_dataset` (split defaults to train for the training data and to
  validation for the validation data);
* `s3://`, `gs://`, `az://` (`abfs[s]://`), `http[s]://`: read through fsspec (see
  `kubetune_trainer.storage` for credentials), staged in a temporary directory.

Every problem a user can fix (unsupported scheme, missing file, empty data, unreadable
format, unknown column) is a `DataError` raised here, before any model is loaded, so a
bad job fails in seconds rather than after a multi-gigabyte download.
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

from datasets import Dataset, DatasetDict

from kubetune_api.suggestions import closest
from kubetune_api.training import FILE_FORMATS, DataSpec
from kubetune_api.uris import HUB_SCHEME, LOCAL_SCHEMES, OBJECT_STORE_SCHEMES, PVC_SCHEME, WEB_SCHEMES, uri_scheme
from kubetune_trainer.errors import DataError, unresolved_pvc
from kubetune_trainer.storage import filesystem

# File extension -> data format. jsonl is read by the same builder as json.
EXTENSIONS: dict[str, str] = {
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "txt",
    ".text": "txt",
}
# data format -> datasets packaged builder.
BUILDERS: dict[str, str] = {
    "csv": "csv",
    "json": "json",
    "jsonl": "json",
    "parquet": "parquet",
    "txt": "text",
}
HUB_OPTIONS = ("config", "split", "revision")


@dataclass(frozen=True)
class LoadedData:
    """The datasets of one job."""

    train: Dataset
    validation: Dataset | None


def load_data(data: DataSpec) -> LoadedData:
    """Load the training (and validation) data and check the named columns exist."""
    train = load_source(data.train, data_format=data.file_format, default_split="train", role="data.train")
    validation = None
    if data.validation is not None:
        validation = load_source(
            data.validation, data_format=data.file_format, default_split="validation", role="data.validation"
        )
    if data.columns:
        check_columns(train, data.columns, "data.train")
        if validation is not None:
            check_columns(validation, data.columns, "data.validation")
    return LoadedData(train=train, validation=validation)


def load_source(
    uri: str,
    *,
    data_format: str | None = None,
    default_split: str = "train",
    role: str = "data",
) -> Dataset:
    """One data URI as a non-empty Dataset; `DataError` for anything a user can fix.

    `data_format`: the *file* format (the spec's data.fileFormat); the keyword keeps the
    name it had before data.format came to mean the rows' layout (text, chat, ...).
    """
    try:
        dataset = _load_any(uri, data_format, default_split)
    except DataError as error:
        raise DataError(f"{role}: {error}") from None
    if len(dataset) == 0:
        raise DataError(f"{role}: {uri} holds no rows")
    return dataset


def _load_any(uri: str, data_format: str | None, default_split: str) -> Dataset:
    scheme = uri_scheme(uri)
    if scheme in LOCAL_SCHEMES:
        dataset = _load_local(local_path(uri), data_format, uri)
    elif scheme == HUB_SCHEME:
        dataset = _load_hub(uri, default_split)
    elif scheme in OBJECT_STORE_SCHEMES | WEB_SCHEMES:
        dataset = _load_remote(uri, data_format)
    elif scheme == PVC_SCHEME:
        raise DataError(unresolved_pvc(uri))
    else:
        raise DataError(f"unsupported URI scheme {scheme!r} in {uri}")
    return dataset


def check_columns(dataset: Dataset, columns: Sequence[str], role: str) -> None:
    """DataError naming the first missing column and the columns that do exist."""
    for column in columns:
        if column not in dataset.column_names:
            raise DataError(
                f"{role}: no column {column!r}{closest(column, dataset.column_names)}; "
                f"the data has columns {dataset.column_names}"
            )


def local_path(uri: str) -> Path:
    """The filesystem path of a local path or file:// URI."""
    if uri_scheme(uri) == "file":
        parts = urlsplit(uri)
        # file:///abs/path has an empty netloc; file://relative/path puts "relative" there.
        return Path(unquote(parts.netloc + parts.path))
    return Path(uri).expanduser()


def data_format_of(path: str, data_format: str | None, uri: str) -> str:
    """The file format given in the spec (data.fileFormat), else the one the file extension names."""
    if data_format is not None:
        return data_format
    suffix = PurePosixPath(urlsplit(path).path if "://" in path else path).suffix.lower()
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    raise DataError(
        f"cannot tell the format of {uri} from its extension {suffix or '(none)'!r}; "
        f"set data.fileFormat to one of: {', '.join(FILE_FORMATS)}"
    )


def _load_local(path: Path, data_format: str | None, uri: str) -> Dataset:
    if glob.has_magic(str(path)):
        files = sorted(p for p in glob.glob(str(path), recursive=True) if os.path.isfile(p))
        if not files:
            raise DataError(f"no files match {uri}")
    elif path.is_dir():
        files = sorted(
            str(p)
            for p in path.rglob("*")
            if p.is_file() and (data_format is not None or p.suffix.lower() in EXTENSIONS)
        )
        if not files:
            raise DataError(f"{uri} is a directory with no data files ({', '.join(FILE_FORMATS)})")
    elif path.is_file():
        files = [str(path)]
    else:
        raise DataError(f"data file not found: {uri}" + _resolved_hint(path, uri))
    return _load_files(files, data_format, uri)


def _resolved_hint(path: Path, uri: str) -> str:
    absolute = path.absolute()
    return "" if str(absolute) == uri else f" (looked for {absolute})"


def _load_files(files: Sequence[str], data_format: str | None, uri: str) -> Dataset:
    formats = {data_format_of(f, data_format, uri) for f in files}
    if len(formats) > 1:
        raise DataError(f"{uri} mixes data formats {sorted(formats)}; set data.fileFormat or narrow the URI")
    (fmt,) = formats
    if all(os.path.getsize(f) == 0 for f in files):
        raise DataError(f"{uri} is empty")
    with _quiet_datasets():
        from datasets import load_dataset

        try:
            loaded = load_dataset(BUILDERS[fmt], data_files=list(files), split="train")
        except ValueError as error:
            # datasets says "corresponds to no data" for a csv with only a header.
            if "no data" in str(error):
                raise DataError(f"{uri} holds no rows") from None
            raise DataError(f"{uri} could not be read as {fmt}: {_root_cause(error)}") from None
        except Exception as error:  # builders wrap parser errors in DatasetGenerationError
            if isinstance(error, OSError | MemoryError) and not isinstance(error, FileNotFoundError):
                raise  # I/O trouble or a small node, not the data's fault: worth a retry
            raise DataError(f"{uri} could not be read as {fmt}: {_root_cause(error)}") from None
    assert isinstance(loaded, Dataset)
    return loaded


def parse_hub_uri(uri: str, default_split: str) -> tuple[str, dict[str, str]]:
    """(dataset name, {config, split, revision}) of an hf://NAME?config=...&split=... URI."""
    parts = urlsplit(uri)
    name = (parts.netloc + parts.path).strip("/")
    if not name:
        raise DataError(f"{uri}: no dataset name; write hf://NAME?config=CONFIG&split=SPLIT")
    options: dict[str, str] = {"split": default_split}
    for key, values in parse_qs(parts.query, keep_blank_values=True).items():
        if key not in HUB_OPTIONS:
            raise DataError(
                f"{uri}: unknown option {key!r}{closest(key, HUB_OPTIONS)}; hf:// takes {', '.join(HUB_OPTIONS)}"
            )
        options[key] = values[-1]
    return name, options


def _load_hub(uri: str, default_split: str) -> Dataset:
    import datasets

    name, options = parse_hub_uri(uri, default_split)
    try:
        with _quiet_datasets():
            loaded = datasets.load_dataset(
                name, options.get("config"), split=options["split"], revision=options.get("revision")
            )
    except FileNotFoundError as error:
        raise DataError(f"hub dataset not found: {uri} ({_root_cause(error)})") from None
    except ValueError as error:
        # Unknown split or config: datasets lists the valid ones in the message.
        raise DataError(f"{uri}: {_root_cause(error)}") from None
    if isinstance(loaded, DatasetDict):  # not reached with split set; kept for type narrowing
        raise DataError(f"{uri}: name a split with ?split=, one of {list(loaded)}")
    if not isinstance(loaded, Dataset):
        raise DataError(f"{uri}: streaming datasets are not supported")
    return loaded


def _load_remote(uri: str, data_format: str | None) -> Dataset:
    fs, path = filesystem(uri)
    scheme = uri_scheme(uri)
    if scheme in WEB_SCHEMES:
        remote_files = [path]  # a web server has no listing we can trust
    elif glob.has_magic(path):
        remote_files = sorted(fs.glob(path))
    elif fs.isdir(path):
        remote_files = sorted(
            p for p in fs.find(path) if data_format is not None or PurePosixPath(p).suffix.lower() in EXTENSIONS
        )
    else:
        remote_files = [path]
    if not remote_files:
        raise DataError(f"no data files at {uri}")
    # Check the format before downloading anything.
    for remote in remote_files:
        data_format_of(remote, data_format, uri)
    with tempfile.TemporaryDirectory(prefix="kubetune-data-") as staging:
        local_files = []
        for index, remote in enumerate(remote_files):
            name = PurePosixPath(urlsplit(remote).path if "://" in remote else remote).name
            local = os.path.join(staging, f"{index:05d}-{name}")
            try:
                fs.get_file(remote, local)
            except FileNotFoundError:
                raise DataError(f"data file not found: {uri}") from None
            local_files.append(local)
        # load_dataset converts to Arrow files in the datasets cache, so the staged
        # copies can go when this block ends.
        return _load_files(local_files, data_format, uri)


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    """No "Generating train split" bars in the trainer's log: stdout carries progress lines."""
    from datasets.utils import logging as ds_logging

    enabled = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            ds_logging.enable_progress_bar()


def _root_cause(error: BaseException) -> str:
    """The innermost error's first line: builders wrap the parser's message."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
