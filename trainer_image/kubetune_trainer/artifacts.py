"""Where a job's model, checkpoints and metadata go, and how a retried run resumes.

Layout of an output location (the same locally and in an object store):

    <output>/
      config.json, model.safetensors, tokenizer files ...   the full model, or
      adapter_config.json, adapter_model.safetensors ...   the LoRA adapter (kind "adapter")
      merged/            base + adapter merged (only with output.mergeAdapter)
      checkpoint-N/      transformers Trainer checkpoints (save_steps / save_strategy)
      kubetune.json      metadata, written last: its presence marks a finished run

A local path or file:// is written in place. For an object store the Trainer writes to a
local staging directory; every checkpoint is uploaded as soon as the Trainer saves it
(so a pod retried on another node can resume), and before training the newest complete
remote checkpoint is downloaded. A checkpoint counts as complete once its
trainer_state.json exists: the Trainer writes that file last, and we upload it last.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from fsspec import AbstractFileSystem
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from kubetune_api.uris import LOCAL_SCHEMES, OBJECT_STORE_SCHEMES, PVC_SCHEME, uri_scheme
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.storage import filesystem

METADATA_FILE = "kubetune.json"
MERGED_DIR = "merged"
TRAINER_STATE = "trainer_state.json"  # transformers.trainer.TRAINER_STATE_NAME
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")  # transformers' PREFIX_CHECKPOINT_DIR + step
ENV_STAGING_DIR = "KUBETUNE_STAGING_DIR"  # where remote outputs are staged (default: temp dir)


@dataclass(frozen=True)
class Remote:
    """An object-store location: its fsspec filesystem and the root path in it."""

    fs: AbstractFileSystem
    root: str

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])


@dataclass(frozen=True)
class OutputLocation:
    """A job's output: the directory the Trainer writes to, and the remote it mirrors."""

    uri: str
    local_dir: Path
    remote: Remote | None = None

    def uri_of(self, *parts: str) -> str:
        """The user-facing URI of a file or folder in the output."""
        return "/".join([self.uri.rstrip("/"), *parts]) if parts else self.uri


def open_output(uri: str) -> OutputLocation:
    """Resolve an output URI; a local one is created, a remote one gets a staging dir."""
    scheme = uri_scheme(uri)
    if scheme in LOCAL_SCHEMES:
        from kubetune_trainer.data_sources import local_path

        path = local_path(uri).absolute()
        if path.exists() and not path.is_dir():
            raise ConfigError(f"output.uri: {uri} is a file; give a directory")
        path.mkdir(parents=True, exist_ok=True)
        return OutputLocation(uri=uri, local_dir=path)
    if scheme == PVC_SCHEME:
        raise ConfigError(
            f"output.uri: {uri} was not resolved: pvc:// URIs are mounted into the trainer by "
            "the kubetune operator; give a local path for a local run"
        )
    if scheme not in OBJECT_STORE_SCHEMES:
        raise ConfigError(f"output.uri: unsupported URI scheme {scheme!r} in {uri}")
    fs, root = filesystem(uri)
    staging = Path(tempfile.mkdtemp(prefix="kubetune-output-", dir=os.environ.get(ENV_STAGING_DIR)))
    return OutputLocation(uri=uri, local_dir=staging, remote=Remote(fs=fs, root=root))


def checkpoint_step(name: str) -> int | None:
    match = CHECKPOINT.match(name)
    return int(match.group(1)) if match else None


def latest_local_checkpoint(output: OutputLocation) -> Path | None:
    """The newest complete checkpoint in the local directory, if any."""
    steps = [
        (step, entry)
        for entry in output.local_dir.iterdir()
        if (step := checkpoint_step(entry.name)) is not None and (entry / TRAINER_STATE).is_file()
    ]
    return max(steps)[1] if steps else None


def prepare_resume(output: OutputLocation) -> tuple[Path | None, list[str]]:
    """Make the newest complete checkpoint available locally; (its path, warnings).

    A checkpoint without trainer_state.json was cut off mid-save (the pod was killed):
    the Trainer would crash resuming from it, so it is removed and the one before used.
    """
    warnings: list[str] = []
    if output.remote is not None:
        _download_latest_checkpoint(output)
    for entry in sorted(output.local_dir.iterdir()):
        if checkpoint_step(entry.name) is not None and not (entry / TRAINER_STATE).is_file():
            # Several ranks may clean a shared output at once: a folder another rank
            # removed first is not an error.
            shutil.rmtree(entry, ignore_errors=True)
            warnings.append(f"removed incomplete checkpoint {entry.name} (interrupted while saving)")
    return latest_local_checkpoint(output), warnings


def _remote_checkpoints(remote: Remote) -> dict[int, str]:
    """step -> remote path of every complete checkpoint."""
    if not remote.fs.exists(remote.root):
        return {}
    found = {}
    for entry in remote.fs.ls(remote.root, detail=False):
        name = PurePosixPath(entry.rstrip("/")).name
        step = checkpoint_step(name)
        if step is not None and remote.fs.exists(remote.path(name, TRAINER_STATE)):
            found[step] = remote.path(name)
    return found


def _download_latest_checkpoint(output: OutputLocation) -> None:
    assert output.remote is not None
    remote = output.remote
    checkpoints = _remote_checkpoints(remote)
    if not checkpoints:
        return
    step = max(checkpoints)
    target = output.local_dir / f"checkpoint-{step}"
    if (target / TRAINER_STATE).is_file():
        return  # already staged (same node, same staging dir)
    source = checkpoints[step].rstrip("/")
    for remote_file in remote.fs.find(source):
        relative = PurePosixPath(remote_file).relative_to(PurePosixPath(source))
        local = target / relative
        local.parent.mkdir(parents=True, exist_ok=True)
        remote.fs.get_file(remote_file, str(local))


def upload_tree(output: OutputLocation, local: Path, last: Iterable[str] = ()) -> None:
    """Copy a local folder (in output.local_dir) to the same place in the remote.

    Files named in `last` go after the rest, so a reader never sees them before the
    files they vouch for.
    """
    if output.remote is None:
        return
    remote = output.remote
    last = set(last)
    files = sorted(p for p in local.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.name in last)  # stable: everything else keeps its order
    for path in files:
        relative = path.relative_to(output.local_dir).as_posix()
        target = remote.path(relative)
        remote.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        remote.fs.put_file(str(path), target)


def upload_checkpoint(output: OutputLocation, checkpoint: Path) -> None:
    """Upload one checkpoint, then drop remote checkpoints the Trainer rotated away locally."""
    if output.remote is None:
        return
    upload_tree(output, checkpoint, last=[TRAINER_STATE])
    remote = output.remote
    local_names = {p.name for p in output.local_dir.iterdir() if checkpoint_step(p.name) is not None}
    for step, path in _remote_checkpoints(remote).items():
        if f"checkpoint-{step}" not in local_names:
            remote.fs.rm(path, recursive=True)


def publish(output: OutputLocation) -> None:
    """Upload the final model files (checkpoints are already there), metadata last."""
    if output.remote is None:
        return
    for entry in sorted(output.local_dir.iterdir()):
        if checkpoint_step(entry.name) is not None or entry.name == METADATA_FILE:
            continue
        if entry.is_dir():
            upload_tree(output, entry)
        else:
            upload_file(output, entry)
    metadata = output.local_dir / METADATA_FILE
    if metadata.is_file():
        upload_file(output, metadata)


def upload_file(output: OutputLocation, path: Path) -> None:
    if output.remote is None:
        return
    target = output.remote.path(path.relative_to(output.local_dir).as_posix())
    output.remote.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
    output.remote.fs.put_file(str(path), target)


def write_metadata(output: OutputLocation, metadata: dict[str, Any]) -> Path:
    """Write kubetune.json locally (publish() uploads it)."""
    path = output.local_dir / METADATA_FILE
    path.write_text(json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n")
    return path


class CheckpointUploader(TrainerCallback):
    """Uploads each checkpoint right after the Trainer saves it (main process only)."""

    def __init__(self, output: OutputLocation) -> None:
        self.output = output

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.output.remote is None or not state.is_world_process_zero:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if checkpoint.is_dir():
            upload_checkpoint(self.output, checkpoint)
