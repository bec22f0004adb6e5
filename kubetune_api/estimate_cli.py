"""`kubetune estimate FILE`: will the run fit its GPU? Also the estimate line of `kubetune validate`.

kubetune estimate FILE [--config PATH] [--gpu-memory 80Gi]

Reads each FineTuneJob's base model config (config.json only: a local folder, file://,
or the hub; a pvc:// model needs --config) and prints the memory estimate's parts.
Exit codes: 0 fits (or no --gpu-memory to compare with), 1 does not fit, 69 no estimate
could be made (config unreachable, a model family the estimate does not model), 78 the
file does not validate.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kubetune_api.manifest import FineTuneJobManifest, ManifestError, load_manifests
from kubetune_api.memory_estimate import EstimateError, MemoryEstimate, estimate_memory
from kubetune_api.model_config import ConfigUnavailable, read_config_file, read_model_config
from kubetune_api.outcomes import EXIT_FAILED, EXIT_INVALID_CONFIG, EXIT_SUCCEEDED
from kubetune_api.quantity import format_bytes, parse_bytes
from kubetune_api.validation import LOCAL_POLICY

EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE from sysexits: no estimate could be made

HOW_TO_FIT = (
    "to fit: quantize: true with lora: true (QLoRA), lora: true, "
    "trainingArgs.gradient_checkpointing: true, a smaller per_device_train_batch_size or maxLength"
)


def estimate_job(job: FineTuneJobManifest, config_path: str | None = None) -> MemoryEstimate:
    """The estimate for one manifest; ConfigUnavailable or EstimateError when there is none."""
    base = job.spec.base
    config = read_config_file(config_path) if config_path else read_model_config(base.model, base.revision)
    return estimate_memory(config, job.spec)


def gpu_bytes(text: str | None) -> int | None:
    """--gpu-memory as bytes; argparse turns the ValueError into a usage message."""
    try:
        return None if text is None else parse_bytes(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def fit_line(estimate: MemoryEstimate, gpu: int | None) -> str | None:
    """What to say about a GPU of `gpu` bytes, or None without one."""
    if gpu is None:
        return None
    if estimate.fits(gpu):
        return f"fits a GPU of {format_bytes(gpu)}"
    return f"does not fit a GPU of {format_bytes(gpu)}; {HOW_TO_FIT}"


def validate_estimate_lines(job: FineTuneJobManifest, args: argparse.Namespace) -> None:
    """`kubetune validate`'s estimate: printed when it can be had, a warning when not."""
    if args.no_estimate:
        return
    try:
        estimate = estimate_job(job, args.config)
    except (ConfigUnavailable, EstimateError) as error:
        print(f"warning: {job.name}: no memory estimate: {error}", file=sys.stderr)
        return
    print(f"{job.name}: needs {estimate.describe()}")
    line = fit_line(estimate, args.gpu_memory)
    if line is not None and not estimate.fits(args.gpu_memory):
        print(f"warning: {job.name}: {line}", file=sys.stderr)
    elif line is not None:
        print(f"{job.name}: {line}")


def add_estimate_flags(parser: Any) -> None:
    parser.add_argument(
        "--config", help="the base model's config.json (or its folder), instead of reading it from spec.base.model"
    )
    parser.add_argument(
        "--gpu-memory", type=gpu_bytes, metavar="SIZE", help="memory of one GPU to compare with, e.g. 80Gi or 24Gi"
    )


def _cmd_estimate(args: argparse.Namespace) -> int:
    try:
        # The most permissive policy: the estimate does not depend on where the run goes.
        jobs = load_manifests(args.file, LOCAL_POLICY)
    except (ManifestError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID_CONFIG
    code = EXIT_SUCCEEDED
    for job in jobs:
        try:
            estimate = estimate_job(job, args.config)
        except (ConfigUnavailable, EstimateError) as error:
            print(f"error: {job.name}: no memory estimate: {error}", file=sys.stderr)
            code = max(code, EXIT_UNAVAILABLE)
            continue
        print(f"{job.name}: about {format_bytes(estimate.total)} of GPU memory")
        for part in ("weights", "gradients", "optimizer", "activations", "overhead"):
            print(f"  {part:<12} {format_bytes(getattr(estimate, part)):>10}")
        print(f"  parameters   {estimate.parameters:,} ({estimate.trainable:,} trainable)")
        for note in estimate.notes:
            print(f"  note: {note}")
        line = fit_line(estimate, args.gpu_memory)
        if line is not None:
            print(f"  {line}")
            if not estimate.fits(args.gpu_memory):
                code = max(code, EXIT_FAILED)
    return code


def register(commands: Any) -> None:
    estimate = commands.add_parser(
        "estimate", help="estimate the GPU memory a manifest's runs need (from the model's config.json only)"
    )
    estimate.add_argument("file")
    add_estimate_flags(estimate)
    estimate.set_defaults(handler=_cmd_estimate)
