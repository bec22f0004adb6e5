"""The `kubetune` command line: this module's own commands plus those the installed parts add.

kubetune validate FILE   check a manifest without running it (here: no torch, no Kopf)
kubetune estimate FILE   the GPU memory its runs need (kubetune_api.estimate_cli)
kubetune submit FILE, get, status, logs, wait, fetch, delete
                         runs on a cluster, through the Python client (kubetune_api.cluster_cli)
kubetune run FILE        train a FineTuneJob manifest on this machine (kubetune_trainer.cli)
kubetune operator ...    run the operator (kubetune_operator.cli)
kubetune crd             print the CRD generated from the spec models (kubetune_operator.cli)

The trainer and the operator add their commands through the `kubetune.commands` entry
point group (pyproject.toml), so this package imports neither. Each part imports its
heavy libraries (torch, kopf) only inside the command that needs them, so `kubetune
validate` works in the operator image and on a laptop without torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml

from kubetune_api import __version__
from kubetune_api.cluster_cli import register as register_cluster_commands
from kubetune_api.describe import describe_training
from kubetune_api.estimate_cli import add_estimate_flags, validate_estimate_lines
from kubetune_api.estimate_cli import register as register_estimate_command
from kubetune_api.manifest import FineTuneJobManifest, ManifestError, load_manifests
from kubetune_api.protocol import EXIT_FAILED, EXIT_INVALID_CONFIG, EXIT_SUCCEEDED
from kubetune_api.validation import LOCAL_POLICY, ClusterPolicy

COMMANDS_GROUP = "kubetune.commands"
# A part's register function adds its sub-commands to argparse's subparsers object.
Register = Callable[[Any], None]


def load(path: str, policy: ClusterPolicy, hint: str = "") -> list[FineTuneJobManifest]:
    """Every FineTuneJob in a file, or exit EXIT_INVALID_CONFIG saying why not."""
    try:
        return load_manifests(path, policy)
    except (ManifestError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        if hint:
            print(hint, file=sys.stderr)
        raise SystemExit(EXIT_INVALID_CONFIG) from None


def policy_from_args(args: argparse.Namespace) -> tuple[ClusterPolicy, str]:
    """The policy `kubetune validate` checks with, and how to say where it came from."""
    if args.local:
        return LOCAL_POLICY, ""
    policy, source = ClusterPolicy(), "the operator's default settings"
    if args.values:
        values = yaml.safe_load(Path(args.values).read_text()) or {}
        trainer = values.get("trainer") or {}
        policy = replace(
            policy,
            max_gpus_per_node=int(trainer.get("maxGpusPerNode") or 8),
            default_output=(values.get("defaultOutput") or "").rstrip("/") or None,
        )
        source = f"the operator settings of {args.values}"
    if args.max_gpus_per_node is not None:
        policy = replace(policy, max_gpus_per_node=args.max_gpus_per_node)
    if args.default_output is not None:
        policy = replace(policy, default_output=args.default_output.rstrip("/") or None)
    hint = (
        f"(checked as the operator would, with {source}: pass --values (the chart's values file), "
        "--default-output or --max-gpus-per-node for yours, or --local for `kubetune run`)"
    )
    return policy, hint


def _cmd_validate(args: argparse.Namespace) -> int:
    policy, hint = policy_from_args(args)
    for job in load(args.file, policy, hint):
        output = job.spec.output.uri if job.spec.output else "outputs/NAME (kubetune run)"
        print(f"{job.name}: valid ({describe_training(job.spec)}, base {job.spec.base.model}, output {output})")
        validate_estimate_lines(job, args)
    return EXIT_SUCCEEDED


def _register_validate(commands: Any) -> None:
    validate = commands.add_parser(
        "validate", help="check a manifest as the operator would (or, with --local, as kubetune run would)"
    )
    validate.add_argument("file")
    validate.add_argument("--local", action="store_true", help="check for `kubetune run` on this machine")
    validate.add_argument("--values", help="the Helm values file the operator was installed with")
    validate.add_argument("--max-gpus-per-node", type=int, help="the operator's trainer.maxGpusPerNode")
    validate.add_argument("--default-output", help="the operator's defaultOutput (a URI prefix)")
    add_estimate_flags(validate)
    validate.add_argument("--no-estimate", action="store_true", help="skip the memory estimate (reads config.json)")
    validate.set_defaults(handler=_cmd_validate)


def installed_commands() -> list[Register]:
    """The register functions of the installed parts, sorted by entry point name."""
    found = sorted(entry_points(group=COMMANDS_GROUP), key=lambda point: point.name)
    return [point.load() for point in found]


def build_parser(extra: Sequence[Register] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubetune", description="Fine-tune Hugging Face models on Kubernetes.")
    parser.add_argument("--version", action="version", version=f"kubetune {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _register_validate(commands)
    register_estimate_command(commands)
    register_cluster_commands(commands)
    for register in installed_commands() if extra is None else extra:
        register(commands)
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
