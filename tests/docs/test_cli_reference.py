"""docs/cli.md documents every cluster command and each of its flags, as the parser has them."""

from __future__ import annotations

import argparse

import pytest
from sync_examples import REPO

from kubetune_api.cli import build_parser

REFERENCE = (REPO / "docs" / "cli.md").read_text()
CLUSTER_COMMANDS = ("submit", "get", "status", "logs", "wait", "fetch", "delete")


def subcommand(name: str) -> argparse.ArgumentParser:
    parser = build_parser(extra=[])
    [commands] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return commands.choices[name]


@pytest.mark.parametrize("name", CLUSTER_COMMANDS)
def test_each_command_has_a_section_naming_its_flags(name: str) -> None:
    assert f"\n## kubetune {name}\n" in REFERENCE, f"docs/cli.md has no section for kubetune {name}"
    section = REFERENCE.split(f"\n## kubetune {name}\n", 1)[1].split("\n## ", 1)[0]
    for action in subcommand(name)._actions:
        flags = [flag for flag in action.option_strings if flag.startswith("--")]
        if not flags or flags[0] in ("--help", "--namespace", "--context", "--kubeconfig"):
            continue  # the shared flags have a section of their own
        assert flags[0] in section, f"docs/cli.md, kubetune {name}: {flags[0]} is not described"


def test_the_shared_flags_are_described() -> None:
    for flag in ("--namespace", "--context", "--kubeconfig"):
        assert f"`{flag}" in REFERENCE or f"`-n`, `{flag}" in REFERENCE
