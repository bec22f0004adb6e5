"""The operator's `kubetune` commands: `kubetune operator` and `kubetune crd`.

Mounted by `kubetune_api.cli` through the `kubetune.commands` entry point.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kubetune_api.protocol import EXIT_INVALID_CONFIG, EXIT_SUCCEEDED


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


def register(commands: Any) -> None:
    """Add `operator` and `crd` to the `kubetune` command line."""
    operator = commands.add_parser(
        "operator", help="run the operator; extra flags go to `kopf run` (e.g. -A, --liveness)"
    )
    operator.add_argument("kopf_args", nargs=argparse.REMAINDER)
    operator.set_defaults(handler=_cmd_operator)

    crd = commands.add_parser("crd", help="print the FineTuneJob CRD generated from the spec models")
    crd.set_defaults(handler=_cmd_crd)
