"""The trainer's `kubetune` command: `kubetune run FILE`, a FineTuneJob trained on this machine.

Mounted by `kubetune_api.cli` through the `kubetune.commands` entry point.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kubetune_api.protocol import EXIT_INVALID_CONFIG
from kubetune_api.training import OutputSpec


def _cmd_run(args: argparse.Namespace) -> int:
    from kubetune_api.cli import load
    from kubetune_api.validation import LOCAL_POLICY
    from kubetune_trainer.local_run import run_manifest

    jobs = load(args.file, LOCAL_POLICY)
    if args.name:
        jobs = [job for job in jobs if job.name == args.name]
        if not jobs:
            print(f"error: no FineTuneJob named {args.name} in {args.file}", file=sys.stderr)
            return EXIT_INVALID_CONFIG
    elif len(jobs) > 1:
        names = ", ".join(job.name for job in jobs)
        print(f"error: {args.file} holds several FineTuneJobs ({names}); pick one with --name", file=sys.stderr)
        return EXIT_INVALID_CONFIG
    job = jobs[0]
    output = OutputSpec(uri=args.output) if args.output else None
    # Relative paths in the manifest (data, output) are relative to the manifest's folder.
    base_dir = Path(args.file).resolve().parent
    return run_manifest(job, output=output, show_progress=not args.quiet, base_dir=base_dir)


def register(commands: Any) -> None:
    """Add `run` to the `kubetune` command line."""
    run = commands.add_parser("run", help="train a FineTuneJob manifest locally")
    run.add_argument("file", help="FineTuneJob YAML, the same file you would kubectl apply")
    run.add_argument("--name", help="which FineTuneJob, when the file holds several")
    run.add_argument(
        "--output",
        help="where to save the model (overrides spec.output.uri; default outputs/NAME)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=_cmd_run)
