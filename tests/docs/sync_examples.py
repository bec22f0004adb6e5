"""Copy example files into the docs blocks that include them.

A fenced block right after a marker line

    <!-- example: examples/text-classification.yaml -->
    ```yaml
    ...
    ```

must hold exactly that file (tests/docs/test_docs.py checks it). After editing an
example, run `python tests/docs/sync_examples.py` to refresh the docs.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC_FILES = sorted((REPO / "docs").rglob("*.md"))
INCLUDE = re.compile(r"(<!-- example: (?P<path>[^ ]+) -->\n```(?P<lang>[a-z]*)\n)(?P<body>.*?)(```)", re.DOTALL)


def included(text: str) -> list[tuple[str, str]]:
    """(path, block body) for every include marker in a document."""
    return [(m["path"], m["body"]) for m in INCLUDE.finditer(text)]


def sync(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        body = (REPO / match["path"]).read_text()
        return match.group(1) + body + ("" if body.endswith("\n") else "\n") + match.group(5)

    return INCLUDE.sub(replace, text)


def main() -> int:
    changed = 0
    for path in DOC_FILES:
        text = path.read_text()
        new = sync(text)
        if new != text:
            path.write_text(new)
            changed += 1
            print(f"updated {path.relative_to(REPO)}")
    print(f"{changed} file(s) updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
