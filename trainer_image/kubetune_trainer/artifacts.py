"""Where a job's model, checkpoints and metadata go, and how a retried run resumes.

Layout of an output location (the same locally and in an object store):

    <output>/
      kubetune-run.json  the run marker: which run owns the output (see ownership.py)
      config.json, model.safetensors, tokenizer files ...   the full model, or
      adapter_config.json, adapter_model.safetensors ...   the LoRA adapter (kind "adapter")
      merged/            base + adapter merged (only with output.mergeAdapter)
      checkpoint-N/      transformers Trainer checkpoints (save_steps / save_strategy)
      kubetune.json      metadata, written last: its presence marks a finished run

A local path or file:// is written in place. For an object store every process's Trainer
writes to a local staging directory of its own; every checkpoint is uploaded as soon as
the Trainer saves it (so a pod retried on another node can resume), and before training
every process downloads the newest complete remote checkpoint. A checkpoint counts as
complete once its trainer_state.json exists: the Trainer writes that file last, and it is
uploaded last, after every process's files (DeepSpeed and sharded FSDP write a part per
process).

When a run takes an output over, everything but its complete checkpoints and the marker
goes (`keep_only_resume_state`), so the model files, merged/ and kubetune.json found at
the end are this run's own.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from fsspec import AbstractFileSystem
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from kubetune_api.output_layout import (
    CHECKPOINT_DIR,
    FOREIGN_ENTRIES,
    METADATA_FILE,
    RUN_MARKER,
    TRAINER_STATE,
)
from kubetune_api.output_layout import MERGED_DIR as MERGED_DIR  # the runner names merged/ through this module
from kubetune_api.protocol import ENV_STAGING_DIR
from kubetune_api.uris import LOCAL_SCHEMES, OBJECT_STORE_SCHEMES, OCI_SCHEME, PVC_SCHEME, uri_scheme
from kubetune_trainer.distributed import all_gather
from kubetune_trainer.errors import ConfigError, unresolved_pvc
from kubetune_trainer.storage import filesystem


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
        raise ConfigError(f"output.uri: {unresolved_pvc(uri)}")
    if scheme == OCI_SCHEME:
        # A registry output without output.checkpointUri (a local run): the run works in a
        # temporary folder, and nothing survives it to resume from (see oci_output.py).
        return OutputLocation(uri=uri, local_dir=staging_dir("kubetune-output-"))
    if scheme not in OBJECT_STORE_SCHEMES:
        raise ConfigError(f"output.uri: unsupported URI scheme {scheme!r} in {uri}")
    fs, root = filesystem(uri)
    # A long-lived process (HFTrainer in a notebook, the tests) may hold listings of an
    # earlier run; what is there now decides ownership and resume.
    fs.invalidate_cache()
    return OutputLocation(uri=uri, local_dir=staging_dir("kubetune-output-"), remote=Remote(fs=fs, root=root))


def staging_dir(prefix: str) -> Path:
    """A new local folder for files on their way to a remote output."""
    staging_root = os.environ.get(ENV_STAGING_DIR)
    if staging_root:
        # The operator points it into the pod's /cache volume, which starts empty.
        Path(staging_root).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=staging_root or None))


def checkpoint_step(name: str) -> int | None:
    match = CHECKPOINT_DIR.match(name)
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


def upload_tree(output: OutputLocation, local: Path, skip: Iterable[str] = ()) -> None:
    """Copy a local folder (in output.local_dir) to the same place in the remote, but for `skip` (file names)."""
    if output.remote is None:
        return
    skipped = set(skip)
    for path in sorted(p for p in local.rglob("*") if p.is_file() and p.name not in skipped):
        upload_file(output, path)


def finish_checkpoint(output: OutputLocation, checkpoint: Path) -> None:
    """Upload trainer_state.json (the checkpoint is complete from then on), then drop the
    remote checkpoints the Trainer rotated away locally. Global rank 0 only."""
    if output.remote is None:
        return
    state = checkpoint / TRAINER_STATE
    if state.is_file():
        upload_file(output, state)
    remote = output.remote
    local_names = {p.name for p in output.local_dir.iterdir() if checkpoint_step(p.name) is not None}
    for step, path in _remote_checkpoints(remote).items():
        if f"checkpoint-{step}" not in local_names:
            remote.fs.rm(path, recursive=True)


def publish(output: OutputLocation) -> None:
    """Upload the final model files (checkpoints are already there), drop the remote files
    this run did not write, and upload the metadata last."""
    if output.remote is None:
        return
    local_names: set[str] = set()
    for entry in sorted(output.local_dir.iterdir()):
        local_names.add(entry.name)
        if checkpoint_step(entry.name) is not None or entry.name in (METADATA_FILE, RUN_MARKER):
            continue
        if entry.is_dir():
            upload_tree(output, entry)
        else:
            upload_file(output, entry)
    stale = [name for name in output_entries(output) if name not in local_names and _is_artifact(name)]
    remove_entries(output, stale)
    metadata = output.local_dir / METADATA_FILE
    if metadata.is_file():
        upload_file(output, metadata)


def _is_artifact(name: str) -> bool:
    """A top-level entry that belongs to a run's final model (not resume state, not the marker)."""
    return checkpoint_step(name) is None and name != RUN_MARKER and name not in FOREIGN_ENTRIES


def output_entries(output: OutputLocation) -> list[str]:
    """The names at the top of the output: the remote's for an object store."""
    if output.remote is None:
        return sorted(entry.name for entry in output.local_dir.iterdir())
    remote = output.remote
    root = remote.root.rstrip("/")
    try:
        listed = remote.fs.ls(root, detail=False)
    except FileNotFoundError:
        return []
    return sorted({PurePosixPath(path.rstrip("/")).name for path in listed if path.rstrip("/") != root})


def read_output_file(output: OutputLocation, name: str) -> bytes | None:
    """A file at the top of the output (the remote's for an object store), None when missing."""
    if output.remote is None:
        path = output.local_dir / name
        return path.read_bytes() if path.is_file() else None
    try:
        return bytes(output.remote.fs.cat_file(output.remote.path(name)))
    except FileNotFoundError:
        return None


def write_output_file(output: OutputLocation, name: str, content: bytes) -> None:
    """Write (and upload) a file at the top of the output; a reader sees the old or the new one, whole."""
    path = output.local_dir / name
    partial = path.with_name(f".{name}.partial")
    partial.write_bytes(content)
    partial.replace(path)
    upload_file(output, path)


def remove_entries(output: OutputLocation, names: Iterable[str]) -> None:
    """Remove files or folders at the top of the output, locally and in the remote."""
    for name in names:
        local = output.local_dir / name
        if local.is_dir() and not local.is_symlink():
            shutil.rmtree(local, ignore_errors=True)
        else:
            local.unlink(missing_ok=True)
        if output.remote is not None:
            path = output.remote.path(name)
            if output.remote.fs.exists(path):
                output.remote.fs.rm(path, recursive=True)


def keep_only_resume_state(output: OutputLocation) -> list[str]:
    """Remove everything but complete checkpoints and the run marker; returns what went.

    Run by the process that takes the output over (global rank 0), before training: a
    previous run's model files, merged/ and kubetune.json (which would claim a finished
    run), and checkpoints cut off mid-upload.
    """
    if output.remote is None:
        complete = {
            entry.name
            for entry in output.local_dir.iterdir()
            if checkpoint_step(entry.name) is not None and (entry / TRAINER_STATE).is_file()
        }
    else:
        complete = {f"checkpoint-{step}" for step in _remote_checkpoints(output.remote)}
    stale = [name for name in output_entries(output) if name not in complete | {RUN_MARKER, *FOREIGN_ENTRIES}]
    remove_entries(output, stale)
    return stale


def upload_file(output: OutputLocation, path: Path) -> None:
    """Copy one file (in output.local_dir) to the same place in the remote."""
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
    """Uploads each checkpoint right after the Trainer saves it, from every process.

    Every process uploads the files it wrote into its own staging folder (global rank 0
    the model, optimizer and scheduler; each rank its RNG state; with DeepSpeed or a
    sharded FSDP state dict, each rank its shard). Then the processes compare notes
    (one all_gather, which is also the barrier), and only when every upload went through
    does global rank 0 upload trainer_state.json, which makes the checkpoint a resume
    point. A failed upload fails every process, so no rank trains on with a checkpoint
    missing. Other ranks drop their local copy once it is uploaded (the Trainer rotates
    only rank 0's), so sharded checkpoints do not pile up on their disks.
    """

    def __init__(self, output: OutputLocation) -> None:
        self.output = output

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.output.remote is None:
            return
        checkpoint = Path(str(args.output_dir)) / f"checkpoint-{state.global_step}"
        problem = None
        try:
            if checkpoint.is_dir():
                upload_tree(self.output, checkpoint, skip=[TRAINER_STATE])
        except Exception as error:  # reported to every rank below, then raised
            problem = f"{type(error).__name__}: {error}"
        failures = [f"rank {rank}: {report}" for rank, report in enumerate(all_gather(problem)) if report]
        if failures:
            raise RuntimeError(
                f"upload of {checkpoint.name} to {self.output.uri} failed ({'; '.join(failures)}); "
                "it stays incomplete, so a retry resumes from the checkpoint before it"
            )
        if state.is_world_process_zero:
            finish_checkpoint(self.output, checkpoint)
        else:
            shutil.rmtree(checkpoint, ignore_errors=True)
