"""Output locations: local and object-store layouts, checkpoint upload, resume points."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from runtime_helpers import FakeS3, fake_s3

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


def test_remote_checkpoints_come_back_on_another_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(artifacts.ENV_STAGING_DIR, str(tmp_path))
    with fake_s3() as fs:
        first = open_output("s3://bucket/runs/a")
        assert first.remote is not None and first.local_dir.parent == tmp_path
        uploader = CheckpointUploader(first)
        args = SimpleNamespace(output_dir=str(first.local_dir))
        for step in (2, 4):
            fake_checkpoint(first.local_dir, step)
            uploader.on_save(args, SimpleNamespace(global_step=step, is_world_process_zero=True), None)  # type: ignore[arg-type]
        assert fs.exists("/bucket/runs/a/checkpoint-4/trainer_state.json")
        assert fs.cat_file("/bucket/runs/a/checkpoint-4/model.safetensors") == b"weights-4"

        # The Trainer rotated checkpoint-2 away locally (save_total_limit): the remote follows.
        import shutil

        shutil.rmtree(first.local_dir / "checkpoint-2")
        fake_checkpoint(first.local_dir, 6)
        uploader.on_save(args, SimpleNamespace(global_step=6, is_world_process_zero=True), None)  # type: ignore[arg-type]
        assert sorted(p.rsplit("/", 1)[1] for p in fs.ls("/bucket/runs/a", detail=False)) == [
            "checkpoint-4",
            "checkpoint-6",
        ]
        # An upload cut off before trainer_state.json: not a resume point.
        fs.pipe_file("/bucket/runs/a/checkpoint-8/model.safetensors", b"partial")

        # A retried pod on another node: fresh staging dir, newest complete checkpoint fetched.
        second = open_output("s3://bucket/runs/a")
        assert second.local_dir != first.local_dir
        checkpoint, _ = prepare_resume(second)
        assert checkpoint == second.local_dir / "checkpoint-6"
        assert (checkpoint / "model.safetensors").read_bytes() == b"weights-6"
        assert (checkpoint / "optimizer.pt").is_file()
        assert not (second.local_dir / "checkpoint-4").exists()  # only the newest is downloaded


def test_publish_uploads_model_then_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(artifacts.ENV_STAGING_DIR, str(tmp_path))
    with fake_s3() as fs:
        output = open_output("s3://bucket/model")
        (output.local_dir / "config.json").write_text("{}")
        (output.local_dir / "merged").mkdir()
        (output.local_dir / "merged" / "model.safetensors").write_bytes(b"merged")
        fake_checkpoint(output.local_dir, 3)
        write_metadata(output, {"task": "text-classification"})
        uploads: list[str] = []
        original = FakeS3.put_file

        def recording_put(self: FakeS3, lpath: str, rpath: str, **kwargs: object) -> None:
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
