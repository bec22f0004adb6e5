"""`kubetune estimate` and the estimate line of `kubetune validate`; config.json from a
folder, file://, a loopback stand-in for the hub (both download paths), and pvc://."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hub_config_server import ConfigServer, serve_configs
from huggingface_hub import constants as hub_constants
from published_models import LLAMA2_7B

from kubetune_api.cli import main
from kubetune_api.estimate_cli import EXIT_UNAVAILABLE
from kubetune_api.model_config import ConfigUnavailable, fetch_hub_config, read_model_config
from kubetune_api.outcomes import EXIT_FAILED, EXIT_INVALID_CONFIG


def manifest(tmp_path: Path, model: str, **spec: Any) -> str:
    document = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "llama"},
        "spec": {
            "task": "language-generation",
            "base": {"model": model},
            "data": {"train": "s3://bucket/train.jsonl"},
            "output": {"uri": "s3://bucket/out"},
            "maxLength": 512,
            "trainingArgs": {"bf16": True, "per_device_train_batch_size": 1, "gradient_checkpointing": True},
            **spec,
        },
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ConfigServer]:
    with serve_configs() as server:
        server.configs["meta-llama/Llama-2-7b-hf"] = LLAMA2_7B
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        # huggingface_hub reads these once, at import.
        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
        yield server


def test_estimate_prints_the_parts_and_fails_when_it_does_not_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA2_7B))
    path = manifest(tmp_path, str(folder), quantize=True, lora=True)
    assert main(["estimate", path, "--gpu-memory", "24Gi"]) == 0
    out = capsys.readouterr().out
    assert "llama: about 6." in out and "fits a GPU of 24.0 GiB" in out
    for part in ("weights", "gradients", "optimizer", "activations", "overhead"):
        assert part in out
    full = manifest(tmp_path, f"file://{folder}")
    assert main(["estimate", full, "--gpu-memory", "24Gi"]) == EXIT_FAILED
    assert "does not fit a GPU of 24.0 GiB; to fit: quantize: true" in capsys.readouterr().out


def test_estimate_reads_the_hub_config_only(hub: ConfigServer, tmp_path: Path, capsys: Any) -> None:
    path = manifest(tmp_path, "meta-llama/Llama-2-7b-hf", quantize=True, lora=True)
    assert main(["estimate", path]) == 0
    assert "about 6." in capsys.readouterr().out
    assert {request.split()[1].rsplit("/", 1)[-1] for request in hub.requests} == {"config.json"}


def test_plain_http_path_without_huggingface_hub(hub: ConfigServer) -> None:
    assert fetch_hub_config("meta-llama/Llama-2-7b-hf", None)["hidden_size"] == 4096
    assert hub.requests == ["GET /meta-llama/Llama-2-7b-hf/resolve/main/config.json"]
    with pytest.raises(ConfigUnavailable, match="HTTP 404"):
        fetch_hub_config("nobody/nothing", "v1")


def test_unreachable_hub_is_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(ConfigUnavailable, match=r"cannot get config\.json of org/model"):
        fetch_hub_config("org/model", None, timeout=2)


def test_offline_is_said() -> None:  # tests run with HF_HUB_OFFLINE=1
    with pytest.raises(ConfigUnavailable, match="HF_HUB_OFFLINE"):
        read_model_config("org/never-cached-model")


def test_pvc_model_needs_config_by_hand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = manifest(tmp_path, "pvc://models/llama-2-7b", lora=True)
    assert main(["estimate", path]) == EXIT_UNAVAILABLE
    assert "PersistentVolumeClaim, which only the cluster can read: pass a copy of its config.json with --config" in (
        capsys.readouterr().err
    )
    config = tmp_path / "config.json"
    config.write_text(json.dumps(LLAMA2_7B))
    assert main(["estimate", path, "--config", str(config), "--gpu-memory", "80Gi"]) == 0


def test_validate_prints_the_estimate_and_only_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(LLAMA2_7B))
    path = manifest(tmp_path, "meta-llama/Llama-2-7b-hf")
    assert main(["validate", path, "--config", str(config), "--gpu-memory", "40Gi"]) == 0
    captured = capsys.readouterr()
    assert "llama: valid" in captured.out and "llama: needs about " in captured.out
    assert "warning: llama: does not fit a GPU of 40.0 GiB" in captured.err
    # Offline (as the tests are): valid all the same, with a warning.
    assert main(["validate", path]) == 0
    assert "warning: llama: no memory estimate: " in capsys.readouterr().err
    assert main(["validate", path, "--no-estimate"]) == 0
    assert capsys.readouterr().err == ""


def test_bad_gpu_memory_and_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["estimate", "x.yaml", "--gpu-memory", "lots"])
    assert "not a size" in capsys.readouterr().err
    assert main(["estimate", str(tmp_path / "missing.yaml")]) == EXIT_INVALID_CONFIG
