"""The import picture: operator -> api <- trainer, and no other arrow between the three parts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {
    "kubetune_api": REPO / "kubetune_api",
    "kubetune_operator": REPO / "operator" / "kubetune_operator",
    "kubetune_trainer": REPO / "trainer_image" / "kubetune_trainer",
}
ALLOWED = {
    "kubetune_api": {"kubetune_api"},
    "kubetune_operator": {"kubetune_operator", "kubetune_api"},
    "kubetune_trainer": {"kubetune_trainer", "kubetune_api"},
}
MAX_LINES = 400


def imported_parts(path: Path) -> set[str]:
    """The kubetune packages a module imports (at any depth, lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names if name.startswith("kubetune_")}
    return found


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_parts_import_only_the_api(package: str) -> None:
    wrong = {
        str(path.relative_to(REPO)): sorted(imported_parts(path) - ALLOWED[package])
        for path in sorted(PACKAGES[package].rglob("*.py"))
        if imported_parts(path) - ALLOWED[package]
    }
    assert wrong == {}, f"{package} imports across parts: {wrong}"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_modules_stay_small(package: str) -> None:
    big = {
        str(path.relative_to(REPO)): lines
        for path in sorted(PACKAGES[package].rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert big == {}, f"modules over {MAX_LINES} lines: split them by concept"


def test_no_module_name_means_two_things() -> None:
    """A file name names one concept: the same name in two parts is a trap for readers."""
    names: dict[str, list[str]] = {}
    for package, folder in PACKAGES.items():
        for path in folder.glob("*.py"):
            if path.name not in ("__init__.py", "__main__.py", "cli.py"):
                names.setdefault(path.name, []).append(package)
    assert {name: parts for name, parts in names.items() if len(parts) > 1} == {}
