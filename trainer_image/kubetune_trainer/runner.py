"""Run one job's training part end to end and say how it went as a `protocol.Result`.

Order matters: everything a user can get wrong is checked before the (slow, costly)
model load — trainingArgs names, the output location and who owns it, the data, the
base model's location — so a bad job fails in seconds. Then HFTrainer trains, the output
gets the model (or adapter, and merged/ on request) plus kubetune.json, and the Result
names the artifact. A rerun of the same job (or of the same spec under a new FineTuneJob)
picks up the newest checkpoint in the output by itself; an output another spec wrote is
refused as OutputInUse (see ownership.py).

Under torchrun every rank runs this: every rank checks the job, loads the data and
picks the checkpoint to resume from, then the ranks compare notes (one all_gather) so
a bad job fails on every rank with the same InvalidConfig/InvalidData, and all ranks
resume from the same checkpoint step or none starts. Every rank trains (the Trainer
does DDP / FSDP / DeepSpeed from trainingArgs); only global rank 0 merges, writes
kubetune.json and publishes. All ranks resume from the same explicit checkpoint folder
(not "the latest"), so a rank cannot see another rank's half-removed checkpoint.

Failures are returned, not raised (failure_kinds.py tells them apart): `ConfigError` ->
InvalidConfig / InvalidData / OutputInUse (exit 78, never retried), out of memory ->
OutOfMemory, anything else -> TrainingError (both exit 1, retried by the Job's
backoffLimit); SIGTERM -> a checkpoint at
the next step boundary, then Interrupted (exit 1; see graceful_stop.py). A registry output
(oci://) works in output.checkpointUri and is pushed last (see oci_output.py).
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune_api.arguments import UNCHECKED_FIELD
from kubetune_api.output_layout import MERGED_DIR
from kubetune_api.protocol import CONFIG_FAILURES, Artifact, Progress, Result, failed
from kubetune_api.training import Task, TrainingSpec
from kubetune_api.uris import PVC_SCHEME, uri_scheme
from kubetune_trainer.distributed import DistributedEnv
from kubetune_trainer.errors import ConfigError, config_error_class, unresolved_pvc
from kubetune_trainer.eval_metrics import EVAL_TIMINGS, finite_number

if TYPE_CHECKING:  # imported when a run starts: it pulls in transformers
    from kubetune_trainer.graceful_stop import SignalWatch

# What kubetune sets unless the job says otherwise, and why:
# - logging_steps 0.05: a progress report every 5% of training (a ratio when < 1), so the
#   operator's status moves on short and long runs alike (the Trainer's default is 500 steps);
# - save_strategy steps / save_steps 0.2 / save_total_limit 2: a checkpoint every 20% of
#   training, the last two kept, so a retried pod loses at most a fifth of the run;
# - disable_tqdm: progress goes out as JSON lines, not as terminal bars in the pod log;
# - average_tokens_across_devices False: with it on (transformers' default) the Trainer
#   multiplies each rank's loss by the world size, expecting the model to divide by the
#   global item count; heads that take **kwargs but compute a plain mean loss (BERT's
#   sequence classification in transformers 5.23, and others) then train and report with
#   a loss world-size times too large (gradient clipping bites early, train_loss doubles
#   on 2 ranks). Off, each rank's mean loss is averaged by DDP: right for every head. No
#   effect on one process.
RUN_DEFAULTS: dict[str, Any] = {
    "average_tokens_across_devices": False,
    "logging_steps": 0.05,
    "save_strategy": "steps",
    "save_steps": 0.2,
    "save_total_limit": 2,
    "disable_tqdm": True,
}

# Files of other frameworks a pinned-revision download can skip.
_SNAPSHOT_IGNORE = ["*.onnx", "onnx/*", "openvino/*", "*.h5", "*.msgpack", "*.ot", "*.tflite", "coreml/*"]


def run_training(
    spec: TrainingSpec,
    *,
    job_name: str,
    job_uid: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> Result:
    """Train `spec`, save the artifact and metadata; never raises for a failed run.

    `job_name` (namespace/name) and `job_uid` (the FineTuneJob's uid; None for a local
    run) go into the output's run marker and kubetune.json.
    """
    from kubetune_trainer.failure_kinds import is_missing_on_hub, is_out_of_memory
    from kubetune_trainer.graceful_stop import SignalWatch, StopRequested

    try:
        with SignalWatch() as watch:
            return _run(spec, job_name, job_uid, on_progress, watch)
    except StopRequested as stop:
        return failed("Interrupted", stop.describe(spec.output.work_uri if spec.output else "the output"))
    except ConfigError as error:
        return failed(error.reason, str(error))
    except Exception as error:
        if is_out_of_memory(error):
            return failed("OutOfMemory", f"out of memory: {error}")
        if is_missing_on_hub(error):
            return failed("InvalidConfig", f"base model not found: {error}")
        return failed("TrainingError", f"{type(error).__name__}: {error}")


def check_training_args(args: dict[str, Any], output_dir: str, unchecked: dict[str, Any] | None = None) -> None:
    """ConfigError for trainingArgs a TrainingArguments would reject (names and values).

    Built once here, with the defaults the real run gets, so a typo fails before the data
    and the model are loaded; HFTrainer builds the real one (same helper) later. `unchecked`
    (spec.uncheckedTrainingArgs) has passed no catalogue: this is where its names meet the
    transformers actually installed in this image.
    """
    import transformers

    from kubetune_trainer.training_args import build_training_args, unknown_names

    unchecked = unchecked or {}
    twice = sorted(set(unchecked) & set(args))
    if twice:
        raise ConfigError(f"{UNCHECKED_FIELD}: {', '.join(twice)} also set in trainingArgs; set each in one place")
    problem = unknown_names(unchecked)
    if problem is not None:
        raise ConfigError(f"{UNCHECKED_FIELD}: {problem} (transformers {transformers.__version__} in this image)")
    try:
        build_training_args({**RUN_DEFAULTS, **args, **unchecked, "output_dir": output_dir})
    except ConfigError as error:
        raise ConfigError(f"trainingArgs: {error}") from None


def resolve_base(spec: TrainingSpec, warnings: list[str]) -> str:
    """What to hand HFTrainer as `base`: a local folder or a hub id, checked to exist."""
    model, revision = spec.base.model, spec.base.revision
    scheme = uri_scheme(model)
    if scheme == PVC_SCHEME:
        raise ConfigError(f"base.model: {unresolved_pvc(model)}")
    if scheme not in ("", "file"):
        raise ConfigError(f"base.model: unsupported URI scheme {scheme!r} in {model}; use a hub id or a path")
    from kubetune_trainer.data_sources import local_path

    path = local_path(model)
    looks_local = scheme == "file" or model.startswith(("/", "./", "../", "~")) or path.is_dir()
    if looks_local:
        if not path.is_dir():
            raise ConfigError(f"base.model: no model folder at {model} (looked for {path.absolute()})")
        if revision is not None:
            warnings.append(f"base.revision {revision} ignored: {model} is a local folder")
        return str(path)
    if revision is None:
        return model
    # HFTrainer loads hub ids at their default branch; a pinned revision is fetched here
    # and handed over as a local snapshot folder.
    from huggingface_hub import snapshot_download

    return snapshot_download(model, revision=revision, ignore_patterns=_SNAPSHOT_IGNORE)


def check_output_fits(spec: TrainingSpec, place: DistributedEnv) -> None:
    """ConfigError for trainingArgs this output cannot serve on this many processes (kubetune_api.sharding)."""
    from kubetune_api.sharding import sharded_checkpoint_problem

    assert spec.output is not None
    problem = sharded_checkpoint_problem(spec.training_args, spec.output.work_uri, place.world_size)
    if problem is not None:
        raise ConfigError(problem)


def _run(
    spec: TrainingSpec,
    job_name: str,
    job_uid: str | None,
    on_progress: Callable[[Progress], None] | None,
    watch: SignalWatch,
) -> Result:
    from kubetune_trainer import artifacts, metadata, ownership
    from kubetune_trainer.data_sources import load_data
    from kubetune_trainer.graceful_stop import StopAtStepBoundary
    from kubetune_trainer.labels import max_labels_from
    from kubetune_trainer.oci_output import RegistryOutput
    from kubetune_trainer.progress_callback import ProgressCallback

    started_at = datetime.now(timezone.utc)
    started = time.monotonic()
    warnings: list[str] = []
    _quiet_library_bars()

    # 1. Everything checkable without touching a model.
    if spec.output is None:
        raise ConfigError("output.uri: required (the operator sets a default; kubetune run uses outputs/NAME)")
    output = artifacts.open_output(spec.output.work_uri)
    # Also sets up the process group under torchrun (TrainingArguments does, through accelerate).
    check_training_args(spec.training_args, str(output.local_dir), spec.unchecked_training_args)
    place = DistributedEnv.from_environ()
    check_output_fits(spec, place)
    max_labels = max_labels_from(os.environ)
    run = ownership.RunIdentity.of(spec, job=job_name, uid=job_uid, processes=place.world_size)
    try:
        # Who owns the output first: nothing in another run's output is read or removed.
        warnings += ownership.check_owner(output, run)
        registry = RegistryOutput.of(spec)
        if registry is not None:
            warnings += registry.preflight(run)
        data = load_data(spec.data)
        base = resolve_base(spec, warnings)
        checkpoint, resume_warnings = artifacts.prepare_resume(output)
    except Exception as error:
        agree_before_training(place, error, None)
        raise
    agree_before_training(place, None, checkpoint)
    if place.is_main_process:
        removed = ownership.claim(output, run, started_at)
        if removed:
            warnings.append(f"removed from the output what an earlier run of this spec left: {', '.join(removed)}")
    warnings += resume_warnings
    resumed_from = _trainer_step(checkpoint) if checkpoint is not None else None
    if checkpoint is not None:
        # Worth saying: the same spec resumes, also under a new FineTuneJob (ownership.py).
        warnings.append(
            f"resumed from {checkpoint.name} (step {resumed_from}) found in the output; "
            "use another output.uri to start from scratch"
        )

    # 2. Train.
    task = Task(spec.task).value
    from kubetune_trainer.eval_metrics import default_metrics
    from kubetune_trainer.hftrainer import HFTrainer

    # The stop callback after the uploader: it stops the run once the checkpoint is uploaded.
    callbacks: list[Any] = [artifacts.CheckpointUploader(output), StopAtStepBoundary(watch)]
    if on_progress is not None:
        callbacks.append(ProgressCallback(on_progress))
    training_args = {**RUN_DEFAULTS, **spec.all_training_args(), "output_dir": str(output.local_dir)}
    trainer = HFTrainer()
    model, tokenizer = trainer(
        base,
        data.train,
        validation=data.validation,
        columns=tuple(spec.data.columns) if spec.data.columns else None,
        maxlength=spec.max_length,
        stride=spec.stride,
        task=task,
        prefix=spec.prefix,
        metrics=default_metrics(task) if data.validation is not None else None,
        checkpoint=str(checkpoint) if checkpoint is not None else None,
        quantize=spec.quantize,
        lora=spec.lora,
        callbacks=callbacks,
        maxlabels=max_labels,
        format=spec.data.format,
        chat_template=spec.chat_template,
        train_on_prompt=bool(spec.train_on_prompt),
        packing=spec.packing,
        attn_implementation=spec.attn_implementation,
        **training_args,
    )
    warnings += list(trainer.warnings)

    # 3. Save: the final model is in output.local_dir (HFTrainer saved it, on rank 0); add merged/.
    kind = "adapter" if trainer.adapter else "full"
    merged_uri = None
    if spec.output.merge_adapter:
        if trainer.adapter:
            if place.is_main_process:
                save_merged(model, tokenizer, base, output.local_dir / MERGED_DIR, trainer.quantized)
            merged_uri = output.uri_of(MERGED_DIR)
        else:
            warnings.append("output.mergeAdapter ignored: no LoRA adapter was trained")
    # Eval timings (runtime, samples_per_second, ...) say nothing about the model.
    metrics = {
        key: number
        for key, value in trainer.metrics.items()
        if (number := finite_number(value)) is not None and key not in EVAL_TIMINGS
    }
    artifact = Artifact(uri=spec.output.uri, kind=kind, merged_uri=merged_uri)
    if not place.is_main_process:
        # Rank 0 writes and publishes; this rank's Result is only read when it fails.
        return Result(outcome="Succeeded", artifact=artifact, metrics=metrics, warnings=warnings)
    finished_at = datetime.now(timezone.utc)
    artifacts.write_metadata(
        output,
        metadata.build_metadata(
            spec,
            job_name=job_name,
            job_uid=run.uid,
            training_hash=run.training_hash,
            artifact=artifact,
            metrics=metrics,
            warnings=warnings,
            train_rows=len(data.train),
            validation_rows=len(data.validation) if data.validation is not None else None,
            quantized=trainer.quantized,
            sft=trainer.sft,
            gpu_defaults=trainer.gpu_defaults,
            trainer_args=getattr(getattr(trainer, "trainer", None), "args", None),
            global_step=_global_step(trainer),
            resumed_from=resumed_from,
            place=place,
            started_at=started_at,
            finished_at=finished_at,
            duration=time.monotonic() - started,
        ),
    )
    artifacts.publish(output)
    if registry is not None:
        artifact = artifact.model_copy(update={"uri": registry.push(output, kind, run)})
    return Result(outcome="Succeeded", artifact=artifact, metrics=metrics, warnings=warnings)


def _quiet_library_bars() -> None:
    """No download / "Writing model shards" bars: progress is reported as JSON lines."""
    import datasets
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as transformers_logging

    disable_progress_bars()
    transformers_logging.disable_progress_bar()
    datasets.disable_progress_bars()  # "Tokenizing" bars of Dataset.map


def save_merged(model: Any, tokenizer: Any, base: str, target: Path, quantized: bool) -> None:
    """Save the base model with the LoRA adapter folded in.

    A quantized base cannot take the merge without losing precision, so it is reloaded
    unquantized from `base` and the trained adapter weights applied to it first.
    """
    if quantized:
        from peft import PeftModel

        base_model = model.get_base_model()
        # The trained config (label count and names) without its quantization settings.
        config = copy.deepcopy(base_model.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        full = type(base_model).from_pretrained(base, config=config)
        model = PeftModel.from_pretrained(full, str(target.parent))
    merged = model.merge_and_unload()
    merged.save_pretrained(str(target))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(target))


def agree_before_training(place: DistributedEnv, error: BaseException | None, checkpoint: Path | None) -> None:
    """Compare every rank's preflight outcome; raise the same failure on every rank.

    Called by every rank exactly once (it is a collective) with this rank's error, if
    any, or the checkpoint it would resume from. A ConfigError on any rank becomes a
    ConfigError of the same reason everywhere, so all ranks exit 78; another error makes the
    other ranks fail as TrainingError; ranks that would resume from different steps
    (a changing output location) fail rather than train out of step.
    """
    if not place.distributed:
        return
    from kubetune_trainer.distributed import all_gather

    mine: tuple[str, str] | None = None
    if error is not None:
        kind: str = error.reason if isinstance(error, ConfigError) else "Other"
        mine = (kind, str(error) if isinstance(error, ConfigError) else f"{type(error).__name__}: {error}")
    reports = all_gather((mine, checkpoint.name if checkpoint is not None else None))
    if error is not None:
        return  # the caller raises its own error
    for rank, (report, _) in enumerate(reports):
        if report is None:
            continue
        found, message = report
        if found in CONFIG_FAILURES:
            raise config_error_class(found)(f"(found by rank {rank}) {message}")
        raise RuntimeError(f"rank {rank} failed before training: {message}")
    chosen = {name for _, name in reports}
    if len(chosen) > 1:
        names = ", ".join(f"rank {rank}: {name or 'none'}" for rank, (_, name) in enumerate(reports))
        raise RuntimeError(f"ranks disagree on the checkpoint to resume from ({names})")


def _global_step(trainer: Any) -> int | None:
    inner = getattr(trainer, "trainer", None)
    state = getattr(inner, "state", None)
    return getattr(state, "global_step", None)


def _trainer_step(checkpoint: Path) -> int | None:
    from kubetune_trainer.artifacts import TRAINER_STATE

    try:
        return int(json.loads((checkpoint / TRAINER_STATE).read_text())["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
