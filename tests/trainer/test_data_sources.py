"""Data URIs -> datasets.Dataset: every form, and a clear DataError for every user mistake."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from moto_s3 import Bucket
from runtime_helpers import serve_directory, write_csv

from kubetune_api.training import DataSpec
from kubetune_trainer import data_sources
from kubetune_trainer.data_sources import load_data, load_source, parse_hub_uri
from kubetune_trainer.errors import ConfigError, DataError

ROWS = [{"text": "good film", "label": "positive"}, {"text": "bad film", "label": "negative"}]


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    write_csv(tmp_path / "rows.csv", ROWS)
    (tmp_path / "rows.json").write_text(json.dumps(ROWS))
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    pd.DataFrame(ROWS).to_parquet(tmp_path / "rows.parquet")
    (tmp_path / "lines.txt").write_text("first line\nsecond line\nthird line\n")
    return tmp_path


@pytest.mark.parametrize("name", ["rows.csv", "rows.json", "rows.jsonl", "rows.parquet"])
def test_local_formats_from_extension(files: Path, name: str) -> None:
    dataset = load_source(str(files / name))
    assert dataset.column_names == ["text", "label"]
    assert dataset.to_list() == ROWS


def test_text_file_gives_one_text_column(files: Path) -> None:
    dataset = load_source(str(files / "lines.txt"))
    assert dataset["text"] == ["first line", "second line", "third line"]


def test_file_uri_and_explicit_format(files: Path) -> None:
    (files / "export.data").write_text((files / "rows.csv").read_text())
    dataset = load_source(f"file://{files / 'export.data'}", data_format="csv")
    assert dataset.to_list() == ROWS


def test_directory_and_glob_read_every_file(files: Path) -> None:
    shards = files / "shards"
    write_csv(shards / "part-0.csv", ROWS[:1])
    write_csv(shards / "part-1.csv", ROWS[1:])
    assert load_source(str(shards)).num_rows == 2
    assert load_source(str(shards / "part-*.csv")).to_list() == ROWS


def test_load_data_reads_both_splits_and_checks_columns(files: Path) -> None:
    data = load_data(DataSpec(train=str(files / "rows.csv"), validation=str(files / "rows.jsonl")))
    assert data.train.num_rows == 2 and data.validation is not None and data.validation.num_rows == 2
    with pytest.raises(DataError, match=r"data.train: no column 'labels' \(did you mean: label\?\)"):
        load_data(DataSpec(train=str(files / "rows.csv"), columns=["text", "labels"]))


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("ftp://host/rows.csv", "unsupported URI scheme 'ftp'"),
        ("memory://rows.csv", "unsupported URI scheme 'memory'"),
        ("pvc://claim/rows.csv", "was not resolved: pvc:// URIs are mounted into the trainer by the kubetune operator"),
    ],
)
def test_unusable_schemes(uri: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_source(uri, role="data.train")


def test_missing_file_names_the_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    expected = rf"data.train: data file not found: nope.csv \(looked for {tmp_path}/nope.csv\)"
    with pytest.raises(DataError, match=expected):
        load_source("nope.csv", role="data.train")


def test_empty_data(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("text,label\n")
    (tmp_path / "empty.jsonl").write_text("")
    for name in ("empty.csv", "empty.jsonl"):
        with pytest.raises(DataError, match="is empty"):
            load_source(str(tmp_path / name))
    with pytest.raises(DataError, match="holds no rows"):
        load_source(str(tmp_path / "header.csv"))
    (tmp_path / "dir").mkdir()
    with pytest.raises(DataError, match="directory with no data files"):
        load_source(str(tmp_path / "dir"))


def test_wrong_format(files: Path) -> None:
    with pytest.raises(DataError, match=r"could not be read as parquet: .*[Pp]arquet"):
        load_source(str(files / "rows.csv"), data_format="parquet")
    with pytest.raises(DataError, match="could not be read as json"):
        load_source(str(files / "rows.csv"), data_format="json")
    (files / "rows.bin").write_bytes(b"\x00\x01")
    with pytest.raises(DataError, match=r"cannot tell the format .* '\.bin'; set data.fileFormat to one of: csv, json"):
        load_source(str(files / "rows.bin"))


def test_http_source_from_a_local_server(files: Path) -> None:
    with serve_directory(files) as base_url:
        assert load_source(f"{base_url}/rows.csv").to_list() == ROWS
        assert load_source(f"{base_url}/rows.parquet").to_list() == ROWS
        with pytest.raises(DataError, match="data file not found"):
            load_source(f"{base_url}/missing.csv")


def test_object_store_source(files: Path, s3: Bucket) -> None:
    """S3 through s3fs and HTTP (moto): a csv file, a folder of parquet shards, a glob."""
    s3.fs.pipe_file(s3.path("train/rows.csv"), (files / "rows.csv").read_bytes())
    for shard in ("part-0000.parquet", "part-0001.parquet", "part-0002.parquet"):
        s3.fs.pipe_file(s3.path("parquet", shard), (files / "rows.parquet").read_bytes())
    s3.fs.pipe_file(s3.path("shards/a.jsonl"), (files / "rows.jsonl").read_bytes())
    s3.fs.pipe_file(s3.path("shards/b.jsonl"), (files / "rows.jsonl").read_bytes())
    assert load_source(s3.uri("train/rows.csv")).to_list() == ROWS
    folder = load_source(s3.uri("parquet"))
    assert folder.column_names == ["text", "label"] and folder.to_list() == ROWS * 3
    assert load_source(s3.uri("shards/*.jsonl")).num_rows == 4
    missing = s3.uri("train/other.csv")
    with pytest.raises(DataError, match=rf"data file not found: {missing}"):
        load_source(missing)


# s3fs is a test dependency (moto's S3); gcsfs is not, so gs:// shows the missing-backend message.
@pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs is installed")
def test_missing_backend_names_the_package() -> None:
    with pytest.raises(ConfigError, match=r"gs:// URIs need the Python package gcsfs.*pip install gcsfs"):
        load_source("gs://bucket/rows.csv")


def test_hub_uri_parsing() -> None:
    assert parse_hub_uri("hf://glue?config=sst2&split=train", "train") == ("glue", {"config": "sst2", "split": "train"})
    assert parse_hub_uri("hf://org/name", "validation") == ("org/name", {"split": "validation"})
    with pytest.raises(DataError, match=r"unknown option 'confg' \(did you mean: config\?\)"):
        parse_hub_uri("hf://glue?confg=sst2", "train")
    with pytest.raises(DataError, match="no dataset name"):
        parse_hub_uri("hf://?split=train", "train")


def test_hub_source_calls_load_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls: list[tuple[Any, ...]] = []

    def fake_load_dataset(name: str, config: str | None, split: str, revision: str | None) -> datasets.Dataset:
        calls.append((name, config, split, revision))
        if split == "nope":
            raise ValueError("Unknown split \"nope\". Should be one of ['train', 'validation'].")
        return datasets.Dataset.from_list(ROWS)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    dataset = load_source("hf://stanfordnlp/sst2?config=default&revision=abc", default_split="validation")
    assert dataset.num_rows == 2
    assert calls == [("stanfordnlp/sst2", "default", "validation", "abc")]
    with pytest.raises(DataError, match=r'data.validation: hf://glue\?split=nope: Unknown split "nope"'):
        load_source("hf://glue?split=nope", role="data.validation")


def test_local_path_of_file_uris() -> None:
    assert data_sources.local_path("file:///data/x.csv") == Path("/data/x.csv")
    assert data_sources.local_path("file://data/x%20y.csv") == Path("data/x y.csv")
    assert data_sources.local_path("data/x.csv") == Path("data/x.csv")
