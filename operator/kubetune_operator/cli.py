"""The `kubetune` command line.

kubetune run FILE        train a FineTuneJob manifest on this machine
kubetune validate FILE   check a manifest without running it
kubetune operator ...    run the operator (kopf run -m kubetune_operator ...)
kubetune crd             print the CRD generated from the spec model

Heavy imports (torch, kopf) happen inside the subcommand that needs them, so
`kubetune validate` works in the operator image and on a laptop without torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from kubetune_operator.manifest import FineTuneJobManifest, ManifestError, load_manifests
from kubetune_trainer import __version__
from kubetune_trainer.protocol import EXIT_FAILED, EXIT_INVALID_CONFIG, EXIT_SUCCEEDED
from kubetune_trainer.spec import OutputSpec


def _load(path: str) -> list[FineTuneJobManifest]:
    try:
        return load_manifests(path)
    except (ManifestError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_INVALID_CONFIG) from None


def _cmd_validate(args: argparse.Namespace) -> int:
    for job in _load(args.file):
        print(f"{job.name}: valid ({job.spec.task}, base {job.spec.base.model})")
    return EXIT_SUCCEEDED


def _cmd_run(args: argparse.Namespace) -> int:
    from kubetune_operator.local_run import run_manifest

    jobs = _load(args.file)
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


def _cmd_operator(args: argparse.Namespace) -> int:
    from kopf.cli import main as kopf_main

    from kubetune_operator.settings import OperatorSettings, SettingsError

    try:
        settings = OperatorSettings.from_env()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID_CONFIG
    flags = list(args.kopf_args)
    # KUBETUNE_NAMESPACES becomes --namespace flags (or -A), unless given explicitly.
    if not any(
        flag in ("-A", "--all-namespaces", "-n", "--namespace") or flag.startswith("--namespace=") for flag in flags
    ):
        flags = settings.kopf_namespace_args() + flags
    # kopf's click entrypoint parses sys.argv itself; hand it our remaining flags.
    sys.argv = ["kopf", "run", "-m", "kubetune_operator", *flags]
    kopf_main()
    return EXIT_SUCCEEDED


def _cmd_crd(args: argparse.Namespace) -> int:
    from kubetune_operator.crd import render_crd_yaml

    sys.stdout.write(render_crd_yaml())
    return EXIT_SUCCEEDED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubetune", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"kubetune {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="train a FineTuneJob manifest locally")
    run.add_argument("file", help="FineTuneJob YAML, the same file you would kubectl apply")
    run.add_argument("--name", help="which FineTuneJob, when the file holds several")
    run.add_argument(
        "--output",
        help="where to save the model (overrides spec.output.uri; default outputs/NAME)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=_cmd_run)

    validate = commands.add_parser("validate", help="check a manifest without running it")
    validate.add_argument("file")
    validate.set_defaults(handler=_cmd_validate)

    operator = commands.add_parser(
        "operator", help="run the operator; extra flags go to `kopf run` (e.g. -A, --liveness)"
    )
    operator.add_argument("kopf_args", nargs=argparse.REMAINDER)
    operator.set_defaults(handler=_cmd_operator)

    crd = commands.add_parser("crd", help="print the FineTuneJob CRD generated from the spec model")
    crd.set_defaults(handler=_cmd_crd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume from the latest checkpoint", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
