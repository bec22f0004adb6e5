"""The pieces of a PVC fetch: the pod (valid, restricted, not a trainer pod to the operator),
the command run in it (run here with this machine's sh, find and tar), and a safe unpack."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import kubernetes_validate
import pytest

from kubetune_api.fetch_pvc import FetchError, claim_and_path, extract, fetch_pod, tar_command
from kubetune_api.run_status import RunStatus
from kubetune_api.trainer_pod import WATCH_SELECTOR
from tests.operator.cluster import _selected

RUN = RunStatus.from_object({"metadata": {"name": "sentiment.v2", "namespace": "ml", "uid": "u-1"}, "spec": {}})


def test_claim_and_path() -> None:
    assert claim_and_path("pvc://models/runs/ml/sentiment") == ("models", "runs/ml/sentiment")
    assert claim_and_path("pvc://models") == ("models", "")
    with pytest.raises(ValueError, match="leave the claim"):
        claim_and_path("pvc://models/../etc")


def test_the_pod_is_valid_restricted_and_no_trainer_pod() -> None:
    pod = fetch_pod(RUN, "models", "busybox:1.36")
    kubernetes_validate.validate({**pod, "metadata": {**pod["metadata"], "name": "x"}}, "1.31.0", strict=True)
    assert pod["metadata"]["generateName"] == "sentiment.v2-fetch-"
    assert not _selected(WATCH_SELECTOR, pod)  # the operator's pod watch does not see it
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["automountServiceAccountToken"] is False
    container = spec["containers"][0]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert spec["activeDeadlineSeconds"] > 0  # ends itself if the client dies


def model_folder(root: Path) -> Path:
    folder = root / "claim" / "runs" / "sentiment"
    (folder / "checkpoint-20").mkdir(parents=True)
    (folder / "checkpoint-20" / "optimizer.pt").write_bytes(b"o" * 100)
    (folder / "merged").mkdir()
    (folder / "merged" / "model.safetensors").write_bytes(b"m")
    (folder / "model.safetensors").write_bytes(b"w" * 3000)
    (folder / "with space.txt").write_text("kept")
    return folder


@pytest.mark.parametrize("checkpoints", [False, True])
def test_the_pods_command_writes_the_artifact_as_tar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkpoints: bool
) -> None:
    model_folder(tmp_path)
    monkeypatch.setattr("kubetune_api.fetch_pvc.MOUNT", str(tmp_path / "claim"))
    command = tar_command("runs/sentiment", checkpoints)
    stdout = subprocess.run(command, check=True, capture_output=True).stdout
    written = extract([stdout[:700], stdout[700:]], tmp_path / "out", checkpoints)
    names = sorted(str(path.relative_to(tmp_path / "out")) for path in written)
    expected = ["merged/model.safetensors", "model.safetensors", "with space.txt"]
    assert names == sorted([*expected, "checkpoint-20/optimizer.pt"] if checkpoints else expected)
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == b"w" * 3000


def archive(*members: tarfile.TarInfo, data: bytes = b"x") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return buffer.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, target, 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize("name", ["../evil.txt", "./a/../../evil.txt", "/etc/evil"])
def test_an_archive_cannot_write_outside_the_destination(tmp_path: Path, name: str) -> None:
    with pytest.raises(FetchError, match="outside the destination"):
        extract([archive(entry(name))], tmp_path / "out", checkpoints=False)
    assert not (tmp_path / "evil.txt").exists()


def test_links_and_devices_are_left_out(tmp_path: Path) -> None:
    data = archive(
        entry("./config.json"),
        entry("./link", tarfile.SYMTYPE, "/etc/passwd"),
        entry("./hard", tarfile.LNKTYPE, "config.json"),
        entry("./lost+found/x"),
    )
    written = extract([data], tmp_path / "out", checkpoints=False)
    assert [path.name for path in written] == ["config.json"]
    assert not (tmp_path / "out" / "link").exists()


def test_an_empty_artifact_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="holds no files"):
        extract([archive()], tmp_path / "out", checkpoints=False)
