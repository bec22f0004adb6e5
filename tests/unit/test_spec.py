"""The training spec model: what a user may write, and the errors they see."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from kubetune_api.spec_base import describe_validation_error
from kubetune_api.training import TrainingSpec
from kubetune_api.uris import uri_scheme

MINIMAL = {"base": {"model": "org/model"}, "data": {"train": "train.csv"}}


def spec(**fields: object) -> TrainingSpec:
    return TrainingSpec.model_validate({**MINIMAL, **fields})


def error_text(**fields: object) -> str:
    with pytest.raises(ValidationError) as caught:
        spec(**fields)
    return describe_validation_error(caught.value)


def test_defaults_match_the_seed() -> None:
    parsed = spec()
    assert parsed.task == "text-classification" and type(parsed.task) is str
    assert parsed.stride == 128
    assert parsed.quantize is None and parsed.lora is None


def test_camel_case_on_the_wire_snake_case_in_python() -> None:
    parsed = spec(maxLength=256, trainingArgs={"learning_rate": 1e-4}, output={"uri": "s3://b/m"})
    assert parsed.max_length == 256
    assert parsed.training_args == {"learning_rate": 1e-4}
    job_json = parsed.to_job_json()
    assert '"maxLength":256' in job_json and '"trainingArgs"' in job_json
    assert TrainingSpec.model_validate_json(job_json) == parsed


def test_unknown_field_is_named() -> None:
    assert "spec.maxLenght: Extra inputs are not permitted" in error_text(maxLenght=10)


def test_unknown_task_lists_valid_ones() -> None:
    text = error_text(task="summarize")
    assert "spec.task" in text and "question-answering" in text


@pytest.mark.parametrize(
    ("uri", "accepted"),
    [
        ("data/train.csv", True),
        ("file:///data/train.csv", True),
        ("s3://bucket/train.parquet", True),
        ("hf://glue?config=sst2&split=train", True),
        ("pvc://datasets/train.csv", True),
        ("ftp://host/train.csv", False),
    ],
)
def test_data_uri_schemes(uri: str, accepted: bool) -> None:
    if accepted:
        assert spec(data={"train": uri}).data.train == uri
    else:
        assert "spec.data.train: unsupported URI scheme 'ftp'" in error_text(data={"train": uri})


def test_output_cannot_be_a_web_url() -> None:
    assert "spec.output.uri: unsupported URI scheme 'https'" in error_text(output={"uri": "https://example.com/model"})


def test_scheme_must_be_lower_case() -> None:
    # fsspec knows "s3" but not "S3": refuse now rather than fail in the pod.
    assert "write the URI scheme in lower case: s3://, not S3://" in error_text(data={"train": "S3://b/t.csv"})


def test_windows_drive_letter_is_a_path() -> None:
    assert uri_scheme(r"C:\data\train.csv") == ""


def test_column_count_is_checked_against_the_task() -> None:
    text = error_text(task="question-answering", data={"train": "t.csv", "columns": ["q", "c"]})
    assert "data.columns" in text and "(question, context, answers)" in text


def test_prefix_only_for_sequence_to_sequence() -> None:
    assert "prefix is only used by task sequence-sequence" in error_text(prefix="summarize: ")
    assert spec(task="sequence-sequence", prefix="summarize: ").prefix == "summarize: "


def test_output_dir_belongs_to_output_uri() -> None:
    assert "set spec.output.uri instead" in error_text(trainingArgs={"output_dir": "/tmp/x"})


def test_quantize_needs_lora() -> None:
    assert "quantize needs lora: add lora: true" in error_text(quantize=True)


def test_quantize_and_lora_accept_true_dict_and_false() -> None:
    assert spec(quantize=True, lora={"r": 8}).lora == {"r": 8}
    assert spec(quantize=False, lora=False).quantize is None


def test_spec_imports_without_torch() -> None:
    # The operator image has no torch: the spec, protocol and CLI must not pull it in.
    code = (
        "import sys, kubetune_api.cli, kubetune_api.finetunejob, kubetune_api.protocol, kubetune_api.validation; "
        "heavy = {'torch', 'transformers', 'datasets'} & set(sys.modules); "
        "sys.exit(f'imported {heavy}' if heavy else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_data_format_is_the_rows_layout_and_file_format_the_files() -> None:
    parsed = spec(task="language-generation", data={"train": "t.data", "format": "chat", "fileFormat": "jsonl"})
    assert (parsed.data.format, parsed.data.file_format) == ("chat", "jsonl")
    assert '"fileFormat":"jsonl"' in parsed.to_job_json()
    # The old meaning of data.format gets the fix named.
    text = error_text(task="language-generation", data={"train": "t.data", "format": "jsonl"})
    assert "spec.data.format: jsonl is a file format: write it as data.fileFormat: jsonl" in text
    assert "unknown data format 'tabular'" in error_text(data={"train": "t", "format": "tabular"})
    assert "unknown file format 'xls'" in error_text(data={"train": "t", "fileFormat": "xls"})


def test_attention_is_one_transformers_ships() -> None:
    parsed = spec(attnImplementation="flash_attention_2")
    assert parsed.attn_implementation == "flash_attention_2"
    assert '"attnImplementation":"flash_attention_2"' in parsed.to_job_json()
    assert spec().attn_implementation is None  # the GPU default decides (docs/gpu.md)
    assert "unknown attention 'flash'; use one of: eager, sdpa, flash_attention_2" in error_text(
        attnImplementation="flash"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"data": {"train": "t", "format": "chat"}}, "task text-classification has one data layout"),
        ({"task": "language-modeling", "data": {"train": "t", "format": "chat"}}, "reads data.format text, not chat"),
        ({"packing": True}, "packing is only used by task language-generation, not text-classification"),
        ({"chatTemplate": "{{ x }}"}, "chatTemplate is only used by task language-generation"),
        (
            {"task": "language-generation", "data": {"train": "t", "format": "chat", "columns": ["q", "a"]}},
            "task language-generation with data.format chat reads (messages), got 2 column(s)",
        ),
        (
            {"task": "language-generation", "data": {"train": "t", "format": "text"}, "trainOnPrompt": True},
            "trainOnPrompt: data.format text has no prompt",
        ),
        (
            {"task": "language-generation", "data": {"train": "t", "format": "text"}, "chatTemplate": "{{ x }}"},
            "chatTemplate: data.format text holds no conversations",
        ),
        ({"task": "language-generation", "chatTemplate": "x" * 70000}, "spec.chatTemplate: String should have at most"),
    ],
)
def test_fine_tuning_options_fit_the_task_and_format(fields: dict[str, object], message: str) -> None:
    assert message in error_text(**fields)


def test_chat_fine_tuning_spec() -> None:
    parsed = spec(
        task="language-generation",
        data={"train": "s3://b/chats.jsonl", "format": "chat"},
        chatTemplate="{{ messages }}",
        trainOnPrompt=True,
        packing=True,
    )
    assert (parsed.chat_template, parsed.train_on_prompt, parsed.packing) == ("{{ messages }}", True, True)
    assert TrainingSpec.model_validate_json(parsed.to_job_json()) == parsed


@pytest.mark.parametrize(
    ("fields", "described"),
    [
        ({}, "text-classification"),
        ({"task": "language-generation", "lora": True}, "language-generation, data format detected from the data"),
        (
            {
                "task": "language-generation",
                "data": {"train": "t", "format": "chat"},
                "maxLength": 512,
                "packing": True,
            },
            "language-generation, chat data, loss on the assistant turns, packed into 512-token sequences",
        ),
        (
            {
                "task": "language-generation",
                "data": {"train": "t", "format": "prompt-completion"},
                "trainOnPrompt": True,
            },
            "language-generation, prompt-completion data, loss on every token, padded per batch",
        ),
        (
            {"task": "language-generation", "data": {"train": "t", "format": "text"}},
            "language-generation, text data, concatenated into maxLength blocks",
        ),
        (
            {"task": "language-generation", "data": {"train": "t", "format": "chat"}, "quantize": True, "lora": True},
            "chat data, loss on the assistant turns, padded per batch, QLoRA",
        ),
    ],
)
def test_one_line_description(fields: dict[str, object], described: str) -> None:
    from kubetune_api.describe import describe_training

    assert described in describe_training(spec(**fields))
