"""`kubetune run FILE`: train a FineTuneJob manifest on this machine, no cluster needed.

The same training part the operator would hand to the trainer container runs in-process.
Relative paths in the manifest (data, output, a local base model) resolve against the
manifest's folder, so `kubetune run examples/quickstart.yaml` works from anywhere; the
output defaults to outputs/NAME under the current directory. Running the same command
again after an interruption resumes from the newest checkpoint in the output.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from kubetune_api.describe import describe_training
from kubetune_api.manifest import FineTuneJobManifest
from kubetune_api.protocol import Progress, Result
from kubetune_api.training import OutputSpec, TrainingSpec
from kubetune_api.uris import uri_scheme

# Eval metrics shown in the progress bar's postfix.
_HEADLINE = ("accuracy", "f1", "loss", "perplexity")


def run_manifest(
    job: FineTuneJobManifest,
    *,
    output: OutputSpec | None,
    show_progress: bool,
    base_dir: Path | None = None,
    stream: TextIO | None = None,
) -> int:
    """Train `job` locally; returns the trainer's exit code (0, 78 or 1).

    `output` overrides spec.output (default outputs/<name>); `base_dir` is the manifest's
    folder (default: the current directory); messages go to `stream` (default stderr,
    the summary to stdout).
    """
    from kubetune_api.protocol import exit_code
    from kubetune_trainer.runner import run_training

    spec = resolve_paths(job.spec.training_part(), base_dir or Path.cwd())
    if output is not None:
        spec = spec.model_copy(update={"output": output})
    elif spec.output is None:
        spec = spec.model_copy(update={"output": OutputSpec(uri=str(Path("outputs", job.name).absolute()))})
    assert spec.output is not None
    err = stream or sys.stderr
    job_name = f"{job.namespace}/{job.name}" if job.namespace else job.name
    what = describe_training(spec)
    print(f"kubetune: training {job_name} ({what}, base {spec.base.model}) -> {spec.output.uri}", file=err)

    with _progress_bar(show_progress, err) as on_progress:
        result = run_training(spec, job_name=job_name, on_progress=on_progress)
    print(summary(result), file=sys.stdout if stream is None else stream, flush=True)
    return exit_code(result)


def resolve_paths(spec: TrainingSpec, base_dir: Path) -> TrainingSpec:
    """The spec with relative local data, output and base paths made absolute from `base_dir`."""

    def absolute(uri: str) -> str:
        if uri_scheme(uri) != "" or Path(uri).expanduser().is_absolute():
            return uri
        return str((base_dir / uri).resolve())

    data = spec.data.model_copy(
        update={
            "train": absolute(spec.data.train),
            "validation": absolute(spec.data.validation) if spec.data.validation else None,
        }
    )
    update: dict[str, Any] = {"data": data}
    if spec.output is not None:
        checkpoints = spec.output.checkpoint_uri  # a registry output's work folder
        update["output"] = spec.output.model_copy(
            update={"uri": absolute(spec.output.uri), "checkpoint_uri": absolute(checkpoints) if checkpoints else None}
        )
    # A relative base is a hub id (org/name) unless a folder by that name sits beside the manifest.
    model = spec.base.model
    if uri_scheme(model) == "" and (model.startswith(("./", "../")) or (base_dir / model).is_dir()):
        update["base"] = spec.base.model_copy(update={"model": absolute(model)})
    return spec.model_copy(update=update)


@contextlib.contextmanager
def _progress_bar(show: bool, stream: TextIO) -> Iterator[Any]:
    """An on_progress callback driving a tqdm bar (or None when hidden).

    stdout is captured meanwhile: the Trainer prints its raw log dicts there
    (PrinterCallback), which would tear the bar apart, or break the quiet in --quiet.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        if not show:
            yield None
            return
        from tqdm.auto import tqdm

        bar = tqdm(total=0, unit="step", file=stream, dynamic_ncols=True, desc="training")

        def on_progress(progress: Progress) -> None:
            if bar.total != progress.max_steps:
                bar.total = progress.max_steps
            bar.n = progress.step
            postfix: dict[str, str] = {}
            if progress.epoch is not None:
                postfix["epoch"] = f"{progress.epoch:.2f}"
            if progress.loss is not None:
                postfix["loss"] = f"{progress.loss:.4f}"
            for name, value in progress.eval.items():
                if name in _HEADLINE:
                    postfix[f"eval_{name}"] = f"{value:.4f}"
            bar.set_postfix(postfix, refresh=False)
            bar.refresh()

        try:
            yield on_progress
        finally:
            bar.close()


def summary(result: Result) -> str:
    """What a person wants to read at the end: where the model is, and how good it is."""
    if result.outcome == "Failed":
        return f"FAILED ({result.reason}): {result.message}"
    assert result.artifact is not None
    lines = [f"Saved the {'LoRA adapter' if result.artifact.kind == 'adapter' else 'model'} to {result.artifact.uri}"]
    if result.artifact.merged_uri:
        lines.append(f"Merged model: {result.artifact.merged_uri}")
    metrics = result.metrics
    if "accuracy" in metrics:
        lines.append(f"Validation accuracy: {metrics['accuracy']:.1%}")
    # HFTrainer reports eval metrics unprefixed and training ones as train_*.
    shown = [
        f"validation {name} {value:.4g}"
        for name, value in sorted(metrics.items())
        if name != "accuracy" and not name.startswith("train_")
    ]
    shown += [f"{name} {value:.4g}" for name, value in sorted(metrics.items()) if name.startswith("train_")]
    if shown:
        lines.append("Metrics: " + ", ".join(shown))
    lines += [f"warning: {warning}" for warning in result.warnings]
    return "\n".join(lines)
