"""The `kubetune` command line: this module's own commands plus those the installed parts add.

kubetune validate FILE   check a manifest without running it (here: no torch, no Kopf)
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
from importlib.metadata import entry_points
from typing import Any

from kubetune_api import __version__
from kubetune_api.describe import describe_training
from kubetune_api.manifest import FineTuneJobManifest, ManifestError, load_manifests
from kubetune_api.protocol import EXIT_FAILED, EXIT_INVALID_CONFIG, EXIT_SUCCEEDED

COMMANDS_GROUP = "kubetune.commands"
# A part's register function adds its sub-commands to argparse's subparsers object.
Register = Callable[[Any], None]


def load(path: str) -> list[FineTuneJobManifest]:
    """Every FineTuneJob in a file, or exit EXIT_INVALID_CONFIG saying why not."""
    try:
        return load_manifests(path)
    except (ManifestError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_INVALID_CONFIG) from None


def _cmd_validate(args: argparse.Namespace) -> int:
    for job in load(args.file):
        print(f"{job.name}: valid ({describe_training(job.spec)}, base {job.spec.base.model})")
    return EXIT_SUCCEEDED


def _register_validate(commands: Any) -> None:
    validate = commands.add_parser("validate", help="check a manifest without running it")
    validate.add_argument("file")
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
