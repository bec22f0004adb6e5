"""The run marker: who owns an output, who may resume it, and what a new owner clears out.

Every case runs on a local folder and on S3 (moto over HTTP), the two ways an output is
written (a pvc:// output is a local folder in the pod).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
from moto_s3 import Bucket

from kubetune_api.protocol import ENV_STAGING_DIR
from kubetune_api.training import TrainingSpec
from kubetune_trainer import artifacts
from kubetune_trainer.artifacts import RUN_MARKER, OutputLocation, open_output, prepare_resume
from kubetune_trainer.errors import OutputInUseError
from kubetune_trainer.ownership import RunIdentity, check_owner, claim

STARTED = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)


class Place:
    """An output location under test: open it (a fresh staging dir each time, as a new pod
    gets), put files there as an earlier run or another tool left them, and list it."""

    def __init__(self, uri: str, put: Callable[[str, bytes], None], names: Callable[[], list[str]]) -> None:
        self.uri, self.put, self.names = uri, put, names

    def open(self) -> OutputLocation:
        return open_output(self.uri)


@pytest.fixture(params=["local", "s3"])
def place(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Place:
    if request.param == "local":
        root = tmp_path / "out"

        def put_local(name: str, content: bytes) -> None:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(content)

        return Place(str(root), put_local, lambda: sorted(p.name for p in root.iterdir()))
    monkeypatch.setenv(ENV_STAGING_DIR, str(tmp_path))
    bucket: Bucket = request.getfixturevalue("s3")
    return Place(
        bucket.uri("models/run"),
        lambda name, content: bucket.fs.pipe_file(bucket.path("models/run", name), content),
        lambda: bucket.names("models/run") if bucket.exists("models/run") else [],
    )


def spec(**training_args: object) -> TrainingSpec:
    return TrainingSpec.model_validate(
        {
            "base": {"model": "org/base"},
            "data": {"train": "s3://data/train.csv"},
            "trainingArgs": {"learning_rate": 1e-3, **training_args},
        }
    )


def identity(uid: str | None = "uid-1", job: str = "team/sentiment", **training_args: object) -> RunIdentity:
    return RunIdentity.of(spec(**training_args), job=job, uid=uid, processes=1)


def leave_finished_run(place: Place, owner: RunIdentity) -> None:
    """What a finished run leaves: its marker, checkpoints, model files, kubetune.json."""
    output = place.open()
    claim(output, owner, STARTED)
    for name in ("model.safetensors", "config.json", "kubetune.json", "merged/model.safetensors"):
        place.put(name, b"old run")
    place.put("checkpoint-4/model.safetensors", b"weights")
    place.put("checkpoint-4/trainer_state.json", json.dumps({"global_step": 4}).encode())
    place.put("checkpoint-6/model.safetensors", b"cut off before trainer_state.json")


def test_a_fresh_output_is_claimed_with_a_marker(place: Place) -> None:
    output = place.open()
    run = identity()
    assert check_owner(output, run) == []
    assert claim(output, run, STARTED) == []
    assert place.names() == [RUN_MARKER]
    marker = json.loads(artifacts.read_output_file(place.open(), RUN_MARKER) or b"")
    assert marker["kubetuneRun"] == 1 and marker["job"] == "team/sentiment" and marker["uid"] == "uid-1"
    assert marker["trainingHash"] == run.training_hash and marker["trainingHash"].startswith("sha256:")
    assert marker["startedAt"] == "2026-12-01T09:30:00+00:00"
    assert marker["spec"]["trainingArgs"] == {"learning_rate": 1e-3}


def test_the_same_spec_recreated_resumes_and_takes_the_output_over(place: Place) -> None:
    leave_finished_run(place, identity(uid="uid-old"))
    output = place.open()
    # The same spec; a bookkeeping argument (logging cadence) changed, which is allowed.
    newcomer = RunIdentity.of(spec(logging_steps=7), job="team/sentiment", uid="uid-new", processes=1)
    warnings = check_owner(output, newcomer)
    assert warnings == [
        f"output.uri {place.uri} was started by FineTuneJob team/sentiment (uid uid-old, started "
        "2026-12-01T09:30:00+00:00) with the same training spec: taken over"
    ]
    checkpoint, _ = prepare_resume(output)
    assert checkpoint is not None and checkpoint.name == "checkpoint-4"
    removed = claim(output, newcomer, STARTED)
    # The stale kubetune.json goes (its presence means "this run finished"), so do the old
    # model files and a checkpoint cut off mid-upload; the resume point stays.
    assert "kubetune.json" in removed and "merged" in removed
    assert place.names() == ["checkpoint-4", RUN_MARKER]
    marker = json.loads(artifacts.read_output_file(place.open(), RUN_MARKER) or b"")
    assert marker["uid"] == "uid-new"


def test_a_retried_pod_of_the_same_run_resumes_quietly(place: Place) -> None:
    run = identity()
    leave_finished_run(place, run)
    assert check_owner(place.open(), run) == []


def test_another_spec_is_refused_naming_the_owner_and_the_fix(place: Place) -> None:
    leave_finished_run(place, identity(uid="uid-old"))
    before = place.names()
    changed = identity(uid="uid-new", learning_rate=5e-5, num_train_epochs=3)
    with pytest.raises(OutputInUseError) as refused:
        check_owner(place.open(), changed)
    assert str(refused.value) == (
        f"output.uri {place.uri} belongs to FineTuneJob team/sentiment (uid uid-old, started "
        "2026-12-01T09:30:00+00:00), whose training spec differs in trainingArgs.learning_rate, "
        "trainingArgs.num_train_epochs; kubetune never trains on top of another run's checkpoints: give this "
        f"run another output.uri, or delete the old output ({place.uri}) to start over"
    )
    assert refused.value.reason == "OutputInUse"
    assert place.names() == before  # nothing of the other run was touched


def test_another_number_of_processes_is_another_run(place: Place) -> None:
    leave_finished_run(place, identity())
    eight = RunIdentity.of(spec(), job="team/sentiment", uid="uid-1", processes=8)
    with pytest.raises(OutputInUseError, match="whose training spec differs in processes;"):
        check_owner(place.open(), eight)


def test_files_without_a_marker_are_refused(place: Place) -> None:
    place.put("checkpoint-100/trainer_state.json", b'{"global_step": 100}')
    place.put("model.safetensors", b"of unknown origin")
    with pytest.raises(OutputInUseError) as refused:
        check_owner(place.open(), identity())
    message = str(refused.value)
    assert f"output.uri {place.uri} already holds files no kubetune run has marked as its own" in message
    assert f"(no {RUN_MARKER}; found checkpoint-100, model.safetensors)" in message
    assert "another output.uri, or delete the old output" in message


def test_an_unreadable_marker_is_refused(place: Place) -> None:
    place.put(RUN_MARKER, b"{half a file")
    with pytest.raises(OutputInUseError, match=rf"its run marker {RUN_MARKER} cannot be read \(.*JSON"):
        check_owner(place.open(), identity())


def test_a_fresh_volume_root_is_empty(tmp_path: Path) -> None:
    """pvc://claim/ mounts a volume's root, which holds lost+found: not another run's files."""
    (tmp_path / "lost+found").mkdir()
    output = open_output(str(tmp_path))
    assert check_owner(output, identity()) == []
    claim(output, identity(), STARTED)
    assert sorted(p.name for p in tmp_path.iterdir()) == [RUN_MARKER, "lost+found"]


def test_credentials_never_reach_the_marker(place: Place) -> None:
    run = RunIdentity.of(
        TrainingSpec.model_validate(
            {"base": {"model": "b"}, "data": {"train": "t.csv"}, "trainingArgs": {"deepspeed": {"api_key": "s3cr3t"}}}
        ),
        job="j",
        uid=None,
        processes=1,
    )
    claim(place.open(), run, STARTED)
    raw = artifacts.read_output_file(place.open(), RUN_MARKER) or b""
    assert b"s3cr3t" not in raw and json.loads(raw)["spec"]["trainingArgs"]["deepspeed"] == {"api_key": "<redacted>"}
