"""oci:// outputs through run_training against a real registry (Debian's docker-registry on 127.0.0.1).

A LoRA adapter is trained, pushed, and pulled back byte-identical; the Result names the
digest-pinned reference; the manifest is KAITO's adapter image layout. What cannot work
fails at preflight, before any model is loaded, with a reason that says whether a retry helps.
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from registry_server import Registry
from test_runtime_outputs import refuse_model_loads
from test_runtime_runner import make_spec
from tiny_models import TinyModels

from kubetune_api.fetch_oci import fetch_from_registry
from kubetune_api.oci_layout import ANNOTATION_FILE, ARTIFACT_TYPES, CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPE
from kubetune_api.oci_reference import parse_pinned
from kubetune_api.oci_registry import RegistrySession
from kubetune_api.protocol import ENV_REGISTRY_AUTH, EXIT_FAILED, EXIT_INVALID_CONFIG, exit_code
from kubetune_api.training import TrainingSpec
from kubetune_trainer.runner import run_training

LORA = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
JOB = "team/chat-adapter"


def registry_spec(
    tiny_models: TinyModels, data: dict[str, str], uri: str, checkpoints: Path, **output: Any
) -> TrainingSpec:
    spec = make_spec(
        tiny_models.llama,
        {"train": data["train"]},
        uri,
        task="language-generation",
        lora=LORA,
        trainingArgs={"max_steps": 2},
    )
    assert spec.output is not None
    fields = {"checkpoint_uri": str(checkpoints), "insecure_registry": True, **output}
    return spec.model_copy(update={"output": spec.output.model_copy(update=fields)})


@pytest.fixture()
def logged_in(registry: Registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Registry:
    """The trainer's credentials as the operator passes them; the client's as docker login leaves them."""
    monkeypatch.setenv(ENV_REGISTRY_AUTH, registry.docker_config())
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text(registry.docker_config())
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    return registry


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_adapter_round_trips_byte_identical_and_the_result_pins_the_digest(
    tiny_models: TinyModels, data: dict[str, str], tmp_path: Path, logged_in: Registry
) -> None:
    checkpoints = tmp_path / "checkpoints"
    spec = registry_spec(tiny_models, data, logged_in.uri("team/chat-adapter", "v1"), checkpoints)
    result = run_training(spec, job_name=JOB, job_uid="uid-1")
    assert result.outcome == "Succeeded", result.message
    assert result.artifact is not None and result.artifact.kind == "adapter"
    pinned = parse_pinned(result.artifact.uri)
    assert result.artifact.uri == f"oci://{logged_in.host}/team/chat-adapter@{pinned.digest}"

    # What was pushed is what the run published to its checkpoint location, minus resume state.
    published = {
        name: content
        for name, content in files_under(checkpoints).items()
        if not name.startswith("checkpoint-") and name != "kubetune-run.json"
    }
    assert {"adapter_config.json", "adapter_model.safetensors", "kubetune.json"} <= set(published)
    pulled = tmp_path / "pulled"
    fetch_from_registry(result.artifact.uri, pulled, insecure=True)
    assert files_under(pulled) == published
    # kubetune.json says where the model went: the tag (its own digest cannot be inside it).
    assert json.loads(published["kubetune.json"])["artifact"]["uri"] == spec.output.uri  # type: ignore[union-attr]

    # The tag points at that digest; the manifest is KAITO's adapter image layout.
    session = RegistrySession(pinned, insecure=True, credentials=(logged_in.user, logged_in.password))
    session.check()
    by_tag = session.manifest("v1")
    assert by_tag is not None
    manifest, raw = by_tag
    assert f"sha256:{hashlib.sha256(raw).hexdigest()}" == pinned.digest
    assert manifest["artifactType"] == ARTIFACT_TYPES["adapter"]
    assert manifest["config"]["mediaType"] == CONFIG_MEDIA_TYPE
    assert {layer["mediaType"] for layer in manifest["layers"]} == {LAYER_MEDIA_TYPE}
    assert sorted(layer["annotations"][ANNOTATION_FILE] for layer in manifest["layers"]) == sorted(published)
    assert manifest["annotations"]["io.kubetune.kind"] == "adapter"
    assert manifest["annotations"]["io.kubetune.job"] == JOB
    config_blob = tmp_path / "config.json"
    session.download_blob(manifest["config"]["digest"], config_blob)
    config = json.loads(config_blob.read_text())
    assert config == {"rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in manifest["layers"]]}}

    # The same spec again: the tag moves to the new push, and says so.
    again = run_training(spec, job_name=JOB, job_uid="uid-1")
    assert again.outcome == "Succeeded", again.message
    assert any("holds an earlier push of this spec" in warning for warning in again.warnings)


def test_another_spec_may_not_overwrite_the_tag(
    tiny_models: TinyModels, data: dict[str, str], tmp_path: Path, logged_in: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = logged_in.uri("team/taken", "v1")
    first = run_training(registry_spec(tiny_models, data, uri, tmp_path / "a"), job_name=JOB)
    assert first.outcome == "Succeeded", first.message

    refuse_model_loads(monkeypatch)
    other = registry_spec(tiny_models, data, uri, tmp_path / "b")
    other = other.model_copy(update={"training_args": {**other.training_args, "learning_rate": 3e-4}})
    result = run_training(other, job_name="team/other")
    assert (result.reason, exit_code(result)) == ("OutputInUse", EXIT_INVALID_CONFIG), result.message
    assert f"output.uri {uri} holds the model of FineTuneJob {JOB}, trained from another spec" in (result.message or "")


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ("wrong-password", "the registry refused the credentials (HTTP 401); give spec.registrySecret"),
        (None, "wants credentials and none were given; give spec.registrySecret"),
    ],
)
def test_refused_credentials_fail_at_preflight_and_are_not_retried(
    tiny_models: TinyModels,
    data: dict[str, str],
    tmp_path: Path,
    registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
    auth: str | None,
    expected: str,
) -> None:
    refuse_model_loads(monkeypatch)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    if auth is None:
        monkeypatch.delenv(ENV_REGISTRY_AUTH, raising=False)
    else:
        monkeypatch.setenv(ENV_REGISTRY_AUTH, registry.docker_config(password=auth))
    spec = registry_spec(tiny_models, data, registry.uri("team/denied", "v1"), tmp_path / "c")
    result = run_training(spec, job_name=JOB)
    assert (result.reason, exit_code(result)) == ("InvalidConfig", EXIT_INVALID_CONFIG)
    assert result.message is not None and result.message.startswith("output.uri: registry ")
    assert expected in result.message


def test_an_unreachable_registry_is_a_retryable_failure(
    tiny_models: TinyModels, data: dict[str, str], tmp_path: Path, logged_in: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse_model_loads(monkeypatch)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    spec = registry_spec(tiny_models, data, f"oci://127.0.0.1:{port}/team/x:v1", tmp_path / "d")
    result = run_training(spec, job_name=JOB)
    assert (result.reason, exit_code(result)) == ("TrainingError", EXIT_FAILED)
    assert f"registry 127.0.0.1:{port} cannot be reached: ConnectionError" in (result.message or "")


def test_a_plain_http_registry_needs_insecure_registry(
    tiny_models: TinyModels, data: dict[str, str], tmp_path: Path, logged_in: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse_model_loads(monkeypatch)
    spec = registry_spec(tiny_models, data, logged_in.uri("team/x", "v1"), tmp_path / "e", insecure_registry=False)
    result = run_training(spec, job_name=JOB)
    assert (result.reason, exit_code(result)) == ("InvalidConfig", EXIT_INVALID_CONFIG)
    assert "TLS failed" in (result.message or "") and "set spec.output.insecureRegistry: true" in (result.message or "")


def test_large_files_go_up_in_chunks_and_come_back_whole(
    logged_in: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above CHUNKED_ABOVE a blob is uploaded in PATCH chunks (oras-py reads a monolithic one into memory)."""
    from kubetune_api import oci_registry
    from kubetune_api.oci_layout import blob, file_layer, image_config, image_manifest

    monkeypatch.setattr(oci_registry, "CHUNKED_ABOVE", 1024)
    target = parse_pinned(logged_in.uri("team/big", "v1"))
    session = RegistrySession(target, insecure=True, credentials=(logged_in.user, logged_in.password))
    session.check()
    (tmp_path / "model").mkdir()
    shard = tmp_path / "model" / "model.safetensors"
    shard.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    layer = file_layer(shard, "model.safetensors", tmp_path / "layer.tar")
    session.push_blob(layer)
    config = blob(image_config([layer]), CONFIG_MEDIA_TYPE, tmp_path / "config.json")
    session.push_blob(config)
    digest = session.push_manifest(image_manifest(config, [layer], "full", {}), "v1")
    fetch_from_registry(target.pinned(digest).uri(), tmp_path / "pulled", insecure=True)
    assert files_under(tmp_path / "pulled") == files_under(tmp_path / "model")
