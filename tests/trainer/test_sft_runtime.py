"""A chat FineTuneJob through `kubetune run`: what it says, and what kubetune.json records."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from tiny_chat import CHAT_TEMPLATE, build_chat_llama, chat_rows

from kubetune_api import cli
from kubetune_api.protocol import EXIT_INVALID_CONFIG, EXIT_SUCCEEDED, Progress
from kubetune_api.training import TrainingSpec
from kubetune_trainer.runner import run_training


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def chat_manifest(folder: Path, base: Path, **spec: object) -> Path:
    write_jsonl(folder / "data" / "chats.jsonl", chat_rows(2))
    write_jsonl(folder / "data" / "chats-validation.jsonl", chat_rows(1, seed=1))
    manifest = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "tiny-chat"},
        "spec": {
            "task": "language-generation",
            "base": {"model": str(base)},
            "data": {"train": "data/chats.jsonl", "validation": "data/chats-validation.jsonl"},
            "maxLength": 64,
            "trainingArgs": {"max_steps": 4, "per_device_train_batch_size": 4, "logging_steps": 2},
            "resources": {"gpus": 0},
            **spec,
        },
    }
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def test_chat_job_records_format_template_masking_and_packing(
    chat_llama: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = chat_manifest(tmp_path, chat_llama, packing=True)
    assert cli.main(["validate", "--local", str(manifest)]) == EXIT_SUCCEEDED
    assert (
        "tiny-chat: valid (language-generation, data format detected from the data, loss on the answers of "
        "chat and prompt-completion data, packed into 64-token sequences"
    ) in capsys.readouterr().out

    out = tmp_path / "out"
    assert cli.main(["run", str(manifest), "--output", str(out), "--quiet"]) == EXIT_SUCCEEDED
    meta = json.loads((out / "kubetune.json").read_text())
    assert meta["data"]["format"] == "chat" and meta["data"]["fileFormat"] is None
    assert meta["sft"] == {
        "format": "chat",
        "loss": "assistant turns",
        "masking": "prefix-render",
        "batching": "packed",
        "chatTemplateSha256": hashlib.sha256(CHAT_TEMPLATE.encode()).hexdigest(),
        "chatTemplateSource": "tokenizer",
        "droppedRows": {},
    }
    assert meta["metrics"]["perplexity"] > 1.0


def test_progress_carries_perplexity(chat_llama: Path, tmp_path: Path) -> None:
    spec = TrainingSpec.model_validate(
        {
            "task": "language-generation",
            "base": {"model": str(chat_llama)},
            "data": {
                "train": write_jsonl(tmp_path / "train.jsonl", chat_rows(2)),
                "validation": write_jsonl(tmp_path / "validation.jsonl", chat_rows(1, seed=1)),
                "format": "chat",
            },
            "trainingArgs": {"max_steps": 2, "eval_strategy": "steps", "eval_steps": 1},
            "output": {"uri": str(tmp_path / "out")},
        }
    )
    seen: list[Progress] = []
    result = run_training(spec, job_name="chat", on_progress=seen.append)
    assert result.outcome == "Succeeded", result.message
    assert any("perplexity" in progress.eval for progress in seen[:-1])  # during training, not only at the end
    assert result.metrics["perplexity"] == pytest.approx(seen[-1].eval["perplexity"])


def test_chat_job_on_a_base_without_template_fails_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = build_chat_llama(tmp_path / "bare", template=None)
    manifest = chat_manifest(tmp_path, base)
    assert cli.main(["run", str(manifest), "--output", str(tmp_path / "out"), "--quiet"]) == EXIT_INVALID_CONFIG
    assert (
        "FAILED (InvalidConfig): train: column 'messages' holds conversations, but no chat template was given"
        in capsys.readouterr().out
    )
    assert not (tmp_path / "out" / "checkpoint-1").exists()
