"""Helpers for the data, artifact, runtime and entrypoint tests: no network services.

* `FakeS3`: an in-memory fsspec filesystem registered for s3://, for the one test that
  records every upload in order; the object-store tests use moto's real S3 (moto_s3.py);
* `serve_directory`: a local http.server on 127.0.0.1 in a thread, for https-style sources;
* `toy_rows` / `write_csv`: a small labelled set the tiny BERT's vocabulary covers.
"""

from __future__ import annotations

import csv
import functools
import http.server
import random
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import fsspec
from fsspec.implementations.memory import MemoryFileSystem


class FakeS3(MemoryFileSystem):
    """MemoryFileSystem answering to s3://, with a store of its own."""

    protocol = ("s3", "s3a")
    store: ClassVar[dict[str, Any]] = {}
    pseudo_dirs: ClassVar[list[str]] = [""]

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        path = str(path)
        for prefix in ("s3://", "s3a://"):
            path = path.removeprefix(prefix)
        return super()._strip_protocol(path)


@contextmanager
def fake_s3() -> Iterator[FakeS3]:
    """Register FakeS3 for s3:// (empty), and put the previous registration back after."""
    # fsspec.registry (the attribute) is a read-only view; the module holds the dict.
    registry: dict[str, type] = sys.modules["fsspec.registry"]._registry
    previous = registry.get("s3")
    fsspec.register_implementation("s3", FakeS3, clobber=True)
    FakeS3.store.clear()
    FakeS3.pseudo_dirs[:] = [""]
    FakeS3.clear_instance_cache()
    try:
        yield FakeS3()
    finally:
        FakeS3.store.clear()
        FakeS3.clear_instance_cache()
        if previous is None:
            registry.pop("s3", None)
        else:
            registry["s3"] = previous


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """Serve `root` over HTTP on 127.0.0.1; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


CAT = ["the cat sat on the mat", "my kitten purrs on the sofa", "the cat meows at the window", "a feline sleeps"]
DOG = ["the dog barks in the park", "my puppy wags its tail", "the dog chased the ball", "a canine plays fetch"]


def toy_rows(count: int, seed: int = 0) -> list[dict[str, str]]:
    """Cat vs dog sentences with string labels, built from the tiny BERT's vocabulary."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        label = "cat" if index % 2 == 0 else "dog"
        words = rng.choice(CAT if label == "cat" else DOG).split()
        extra = rng.choice(["", " today", " very happy", " in the garden", " at night"])
        rows.append({"text": " ".join(words) + extra, "label": label})
    return rows


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
