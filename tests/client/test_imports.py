"""The contract stays light: importing kubetune_api, its CLI shell or the client module loads
neither torch nor Kopf, nor the client's own libraries until a client connects."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "kopf", "kubernetes", "urllib3", "fsspec", "transformers")


def loaded_after(statement: str) -> list[str]:
    probe = f"import sys, json; {statement}; print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    result = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    return list(json.loads(result.stdout))


def test_the_contract_and_the_cli_shell_load_no_heavy_library() -> None:
    assert loaded_after("import kubetune_api, kubetune_api.cli") == []


def test_the_client_loads_its_libraries_only_when_it_connects() -> None:
    assert loaded_after("from kubetune_api import Client") == []
