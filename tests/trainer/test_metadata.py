"""kubetune.json: no credential survives into it, wherever the spec held one."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from kubetune_api.protocol import Artifact
from kubetune_api.training import TrainingSpec
from kubetune_trainer.metadata import build_metadata


def test_credentials_are_redacted_in_kubetune_json() -> None:
    # The spec refuses credential keys at the top of trainingArgs, lora and quantize; a nested
    # one (inside an inline DeepSpeed config) gets through, and an object stored before the
    # rule existed may hold any: redaction is the second line.
    spec = TrainingSpec.model_validate(
        {
            "base": {"model": "org/base"},
            "data": {"train": "t.csv"},
            "trainingArgs": {"deepspeed": {"comms_logger": {"api_key": "ds-key"}}},
            "lora": {"r": 4},
            "quantize": {"load_in_4bit": True},
        }
    )
    spec = spec.model_copy(
        update={
            "training_args": {**spec.training_args, "hub_token": "hf_live"},
            "lora": {"r": 4, "private_key": "lora-secret"},
            "quantize": {"load_in_4bit": True, "auth_token": "bnb-token"},
        }
    )
    now = datetime.now(timezone.utc)
    metadata = build_metadata(
        spec,
        job_name="team/x",
        job_uid="uid-1",
        training_hash="sha256:abc",
        artifact=Artifact(uri="/out", kind="adapter"),
        metrics={},
        warnings=[],
        train_rows=1,
        validation_rows=None,
        quantized=False,
        trainer_args=None,
        global_step=1,
        resumed_from=None,
        started_at=now,
        finished_at=now,
        duration=1.0,
    )
    written = json.dumps(metadata)
    for secret in ("hf_live", "ds-key", "lora-secret", "bnb-token"):
        assert secret not in written
    assert metadata["trainingArgs"]["hub_token"] == "<redacted>"
    assert metadata["trainingArgs"]["deepspeed"] == {"comms_logger": {"api_key": "<redacted>"}}
    assert metadata["lora"] == {"r": 4, "private_key": "<redacted>"}
    assert metadata["quantize"]["requested"] == {"load_in_4bit": True, "auth_token": "<redacted>"}
    assert (metadata["jobUid"], metadata["trainingHash"]) == ("uid-1", "sha256:abc")
