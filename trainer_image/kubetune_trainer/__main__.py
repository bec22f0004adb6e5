"""The trainer container's entrypoint: `python -m kubetune_trainer`.

Input: the job's training part (`TrainingSpec`, camelCase JSON) from `--config FILE`,
else from the environment variable KUBETUNE_JOB; the FineTuneJob's namespace/name from
KUBETUNE_JOB_NAME and its uid from KUBETUNE_JOB_UID (recorded in the output's run marker
and in kubetune.json).

Output:
* stdout: one progress line per Trainer logging step, `{"kubetuneProgress": {...}}`
  (`protocol.format_progress`), flushed as written;
* the termination message (`/dev/termination-log`, or the path in
  KUBETUNE_TERMINATION_LOG): the final `protocol.Result` as compact JSON
  (`protocol.encode_result`, at most 4096 bytes), written on success and on failure.

Under torchrun (WORLD_SIZE > 1) every rank trains; only global rank 0 prints progress
lines and writes the Result. Each rank says on stderr how it finished, and a failed
rank's message starts with its place ("rank 1 of 2 (node 0, local rank 1): ..."). Under
the launcher (`kubetune_trainer.launch`, $KUBETUNE_RANK_RESULTS set) every rank leaves
its Result in a file for the launcher to pick from; under a plain torchrun every other
node's local rank 0 writes the termination message when it failed (see
kubetune_trainer.distributed).

Exit codes (the Job's podFailurePolicy keys on them):
*  0 (EXIT_SUCCEEDED): trained and saved; Result.outcome Succeeded.
* 78 (EXIT_INVALID_CONFIG): the job or its data is wrong (invalid JSON or spec, unknown
  trainingArgs, missing/empty/unreadable data, unresolvable base model or output, an
  output another run owns): Result.reason InvalidConfig, InvalidData or OutputInUse.
  Retrying cannot help.
*  1 (EXIT_FAILED): anything else (out of memory, I/O or hub trouble, a crash in
  training): Result.reason OutOfMemory or TrainingError. Worth a retry; the retry resumes
  from the newest checkpoint in the output.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from kubetune_api import __version__
from kubetune_api.protocol import (
    DEFAULT_TERMINATION_LOG,
    ENV_JOB,
    ENV_JOB_NAME,
    ENV_JOB_UID,
    ENV_TERMINATION_LOG,
    Progress,
    Result,
    encode_result,
    format_progress,
)
from kubetune_api.spec_base import describe_validation_error
from kubetune_api.training import TrainingSpec
from kubetune_trainer.distributed import ENV_RANK_RESULTS, DistributedEnv, leave_process_group


def print_progress(progress: Progress) -> None:
    # Flushed per line: the operator tails the pod log and a buffered line is a lost update.
    print(format_progress(progress), flush=True)


def write_result(result: Result) -> None:
    path = os.environ.get(ENV_TERMINATION_LOG, DEFAULT_TERMINATION_LOG)
    try:
        with open(path, "w") as handle:
            handle.write(encode_result(result))
    except OSError as error:  # e.g. a local run without /dev/termination-log
        print(f"kubetune: could not write the result to {path}: {error}", file=sys.stderr)


def report_result(result: Result, place: DistributedEnv) -> None:
    """Write `result` where this process's rank should (see the module docstring)."""
    folder = os.environ.get(ENV_RANK_RESULTS)
    if place.distributed and folder:
        path = Path(folder) / f"rank-{place.rank}.json"
        # Written to a temporary name and renamed: the launcher never reads half a file.
        partial = path.with_suffix(".partial")
        partial.write_text(encode_result(result))
        partial.replace(path)
    elif place.is_main_process or (place.is_local_main_process and result.outcome == "Failed"):
        write_result(result)


def read_job(config: str | None) -> TrainingSpec | Result:
    """The TrainingSpec to run, or a failed Result saying why there is none."""
    from kubetune_api.protocol import failed

    if config is not None:
        try:
            with open(config) as handle:
                text = handle.read()
        except OSError as error:
            return failed("InvalidConfig", f"cannot read the job config {config}: {error}")
    else:
        text = os.environ.get(ENV_JOB, "")
        if not text.strip():
            return failed("InvalidConfig", f"no job given: pass --config FILE or set {ENV_JOB}")
    try:
        return TrainingSpec.model_validate_json(text)
    except ValidationError as error:
        return failed("InvalidConfig", describe_validation_error(error))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kubetune_trainer",
        description="Run one kubetune training job (the trainer container's entrypoint).",
    )
    parser.add_argument("--config", help=f"job JSON file (default: the JSON in ${ENV_JOB})")
    parser.add_argument("--version", action="version", version=f"kubetune-trainer {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from kubetune_api.protocol import exit_code, failed
    from kubetune_trainer.runner import run_training

    try:
        place = DistributedEnv.from_environ()
    except ValueError as error:
        result = failed("InvalidConfig", f"torchrun environment: {error}")
        write_result(result)
        print(f"kubetune: {result.reason}: {result.message}", file=sys.stderr)
        return exit_code(result)
    job = read_job(args.config)
    if isinstance(job, Result):
        result = job
    else:
        # Progress from global rank 0 only (ProgressCallback checks too): one stream per job.
        progress = print_progress if place.is_main_process else None
        result = run_training(
            job,
            job_name=os.environ.get(ENV_JOB_NAME, "local"),
            job_uid=os.environ.get(ENV_JOB_UID),
            on_progress=progress,
        )
    if place.distributed:
        if result.outcome == "Failed":
            result = result.model_copy(update={"message": f"{place.describe()}: {result.message}"})
        # One line per rank in the pod log: shows that every rank ran, and how it ended.
        print(f"kubetune: {place.describe()} finished: {result.outcome}", file=sys.stderr, flush=True)
    report_result(result, place)
    if place.distributed:
        leave_process_group()
    if result.outcome == "Failed":
        print(f"kubetune: {result.reason}: {result.message}", file=sys.stderr)
    return exit_code(result)


if __name__ == "__main__":
    raise SystemExit(main())
