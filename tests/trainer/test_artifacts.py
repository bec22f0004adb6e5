"""Output locations: local and object-store layouts, checkpoint upload, resume points.

Object-store tests run against moto's S3 server through s3fs (the `s3` fixture); one
ordering test uses an in-memory filesystem, where every upload can be recorded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from moto_s3 import Bucket
from runtime_helpers import FakeS3, fake_s3

from kubetune_api.protocol import ENV_STAGING_DIR
from kubetune_trainer import artifacts
from kubetune_trainer.artifacts import CheckpointUploader, open_output, prepare_resume, publish, write_metadata
from kubetune_trainer.errors import ConfigError


def fake_checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    """A checkpoint folder as the Trainer leaves it (trainer_state.json written last)."""
    checkpoint = folder / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.safetensors").write_bytes(b"weights-%d" % step)
    (checkpoint / "optimizer.pt").write_bytes(b"optimizer")
    if complete:
        (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return checkpoint


def test_local_output_is_created_in_place(tmp_path: Path) -> None:
    output = open_output(str(tmp_path / "models" / "run"))
    assert output.local_dir == tmp_path / "models" / "run" and output.local_dir.is_dir()
    assert output.remote is None
    file_output = open_output(f"file://{tmp_path / 'other'}")
    assert file_output.local_dir == tmp_path / "other"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("pvc://models/run", "was not resolved: pvc://"),
        ("https://example.com/out", "unsupported URI scheme 'https'"),
    ],
)
def test_unusable_outputs(uri: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_output(uri)


def test_output_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    with pytest.raises(ConfigError, match="is a file; give a directory"):
        open_output(str(tmp_path / "taken"))


def test_local_resume_picks_newest_complete_checkpoint(tmp_path: Path) -> None:
    output = open_output(str(tmp_path))
    assert prepare_resume(output) == (None, [])
    fake_checkpoint(tmp_path, 4)
    fake_checkpoint(tmp_path, 10)
    fake_checkpoint(tmp_path, 12, complete=False)  # the pod died while saving this one
    checkpoint, warnings = prepare_resume(output)
    assert checkpoint == tmp_path / "checkpoint-10"
    assert warnings == ["removed incomplete checkpoint checkpoint-12 (interrupted while saving)"]
    assert not (tmp_path / "checkpoint-12").exists()


def save(uploader: CheckpointUploader, output_dir: Path, step: int, main: bool = True) -> None:
    """What the Trainer does after writing checkpoint-STEP: call on_save on every process."""
    args = SimpleNamespace(output_dir=str(output_dir))
    uploader.on_save(args, SimpleNamespace(global_step=step, is_world_process_zero=main), None)  # type: ignore[arg-type]


def test_remote_checkpoints_come_back_on_another_node(
    s3: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_STAGING_DIR, str(tmp_path))
    first = open_output(s3.uri("runs/a"))
    assert first.remote is not None and first.local_dir.parent == tmp_path
    uploader = CheckpointUploader(first)
    for step in (2, 4):
        fake_checkpoint(first.local_dir, step)
        save(uploader, first.local_dir, step)
    assert s3.exists("runs/a/checkpoint-4/trainer_state.json")
    assert s3.fs.cat_file(s3.path("runs/a/checkpoint-4/model.safetensors")) == b"weights-4"

    # The Trainer rotated checkpoint-2 away locally (save_total_limit): the remote follows.
    shutil.rmtree(first.local_dir / "checkpoint-2")
    fake_checkpoint(first.local_dir, 6)
    save(uploader, first.local_dir, 6)
    assert s3.names("runs/a") == ["checkpoint-4", "checkpoint-6"]
    # An upload cut off before trainer_state.json: not a resume point.
    s3.fs.pipe_file(s3.path("runs/a/checkpoint-8/model.safetensors"), b"partial")

    # A retried pod on another node: fresh staging dir, newest complete checkpoint fetched.
    second = open_output(s3.uri("runs/a"))
    assert second.local_dir != first.local_dir
    checkpoint, _ = prepare_resume(second)
    assert checkpoint == second.local_dir / "checkpoint-6"
    assert (checkpoint / "model.safetensors").read_bytes() == b"weights-6"
    assert (checkpoint / "optimizer.pt").is_file()
    assert not (second.local_dir / "checkpoint-4").exists()  # only the newest is downloaded


def test_every_rank_uploads_its_shard_before_the_checkpoint_counts(
    s3: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DeepSpeed / sharded FSDP: each process stages its own part; the checkpoint is complete
    only once every part is in and rank 0 has added trainer_state.json."""
    monkeypatch.setenv(ENV_STAGING_DIR, str(tmp_path))
    rank0, rank1 = open_output(s3.uri("run")), open_output(s3.uri("run"))
    fake_checkpoint(rank0.local_dir, 5)
    shard = rank1.local_dir / "checkpoint-5" / "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    shard.parent.mkdir(parents=True)
    shard.write_bytes(b"rank 1 partition")

    # Rank 1 goes first (the all_gather lets neither finish before both uploaded).
    monkeypatch.setattr(artifacts, "all_gather", lambda report: [None, report])
    save(CheckpointUploader(rank1), rank1.local_dir, 5, main=False)
    assert s3.names("run/checkpoint-5") == ["zero_pp_rank_1_mp_rank_00_optim_states.pt"]
    assert not (rank1.local_dir / "checkpoint-5").exists()  # uploaded: no pile-up on rank 1's disk
    monkeypatch.setattr(artifacts, "all_gather", lambda report: [report, None])
    save(CheckpointUploader(rank0), rank0.local_dir, 5)
    assert s3.names("run/checkpoint-5") == [
        "model.safetensors",
        "optimizer.pt",
        "trainer_state.json",
        "zero_pp_rank_1_mp_rank_00_optim_states.pt",
    ]

    # A retried run: every process downloads the whole checkpoint, both parts.
    checkpoint, _ = prepare_resume(open_output(s3.uri("run")))
    assert checkpoint is not None and (checkpoint / shard.name).read_bytes() == b"rank 1 partition"


def test_a_failed_upload_on_any_rank_leaves_the_checkpoint_incomplete(
    s3: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_STAGING_DIR, str(tmp_path))
    output = open_output(s3.uri("run"))
    fake_checkpoint(output.local_dir, 5)
    monkeypatch.setattr(artifacts, "all_gather", lambda report: [report, "OSError: [Errno 28] No space left"])
    with pytest.raises(RuntimeError, match=r"upload of checkpoint-5 to s3://.*failed \(rank 1: OSError: \[Errno 28\]"):
        save(CheckpointUploader(output), output.local_dir, 5)
    assert s3.exists("run/checkpoint-5/model.safetensors")
    assert not s3.exists("run/checkpoint-5/trainer_state.json")  # so no retry resumes from it
    checkpoint, _ = prepare_resume(open_output(s3.uri("run")))
    assert checkpoint is None


def test_publish_removes_files_this_run_did_not_write(
    s3: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A LoRA adapter found in the output must not sit beside the new full model."""
    monkeypatch.setenv(ENV_STAGING_DIR, str(tmp_path))
    for name in ("adapter_config.json", "adapter_model.safetensors", "merged/model.safetensors", "kubetune.json"):
        s3.fs.pipe_file(s3.path("model", name), b"old")
    output = open_output(s3.uri("model"))
    (output.local_dir / "config.json").write_text("{}")
    (output.local_dir / "model.safetensors").write_bytes(b"new")
    fake_checkpoint(output.local_dir, 3)
    save(CheckpointUploader(output), output.local_dir, 3)
    write_metadata(output, {"task": "text-classification"})
    publish(output)
    assert s3.names("model") == ["checkpoint-3", "config.json", "kubetune.json", "model.safetensors"]
    assert json.loads(s3.fs.cat_file(s3.path("model/kubetune.json"))) == {"task": "text-classification"}


def test_publish_uploads_model_then_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In memory: every upload is recorded, in order."""
    monkeypatch.setenv(ENV_STAGING_DIR, str(tmp_path))
    with fake_s3() as fs:
        output = open_output("s3://bucket/model")
        (output.local_dir / "config.json").write_text("{}")
        (output.local_dir / "merged").mkdir()
        (output.local_dir / "merged" / "model.safetensors").write_bytes(b"merged")
        fake_checkpoint(output.local_dir, 3)
        write_metadata(output, {"task": "text-classification"})
        uploads: list[str] = []
        original = FakeS3.put_file

        def recording_put(self: FakeS3, lpath: str, rpath: str, **kwargs: Any) -> None:
            uploads.append(rpath)
            original(self, lpath, rpath, **kwargs)

        monkeypatch.setattr(FakeS3, "put_file", recording_put)
        publish(output)
        assert json.loads(fs.cat_file("/bucket/model/kubetune.json")) == {"task": "text-classification"}
        assert fs.cat_file("/bucket/model/merged/model.safetensors") == b"merged"
        assert uploads[-1] == "/bucket/model/kubetune.json"  # metadata last: it marks a finished run
        assert not any("checkpoint-" in path for path in uploads)


def test_output_uri_of() -> None:
    output = artifacts.OutputLocation(uri="s3://bucket/model/", local_dir=Path("/tmp/x"))
    assert output.uri_of("merged") == "s3://bucket/model/merged"
    assert output.uri_of() == "s3://bucket/model/"


def test_a_missing_staging_folder_is_created(s3: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator stages on the pod's /cache volume, which starts empty."""
    staging = tmp_path / "cache" / "staging"
    monkeypatch.setenv(ENV_STAGING_DIR, str(staging))
    output = open_output(s3.uri("runs/fresh"))
    assert output.local_dir.parent == staging and output.remote is not None
    assert output.remote.root.endswith("runs/fresh")
