"""A real S3 endpoint for the object-store tests: moto's server over HTTP on 127.0.0.1.

The trainer reaches it the way it reaches AWS in a pod: s3fs -> aiobotocore -> HTTP, with
credentials and the endpoint from the environment (AWS_ENDPOINT_URL, dummy keys), so the
listing, upload, download and delete paths run through the real client stack; the way
s3fs tests itself. Subprocesses (torchrun workers) inherit the environment and reach it too.
"""

from __future__ import annotations

import itertools
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import fsspec
import pytest
from fsspec import AbstractFileSystem

# What botocore needs to talk to moto and nothing else: no profile, no config files, no IMDS.
DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
_buckets = itertools.count()


@contextmanager
def moto_server() -> Iterator[str]:
    """Run moto's S3 server on a free port of 127.0.0.1 with the environment pointed at it; yields its URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request in the test log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in {**DUMMY_AWS_ENV, "AWS_ENDPOINT_URL": endpoint}.items():
                patch.setenv(name, value)
            patch.delenv("AWS_PROFILE", raising=False)
            # s3fs instances made before (a cache per process) would not know the endpoint.
            fsspec.get_filesystem_class("s3").clear_instance_cache()
            yield endpoint
    finally:
        fsspec.get_filesystem_class("s3").clear_instance_cache()
        server.stop()


@dataclass(frozen=True)
class Bucket:
    """One empty bucket of the moto server, and the s3fs filesystem the trainer itself uses."""

    name: str
    fs: AbstractFileSystem

    def uri(self, *parts: str) -> str:
        """s3://BUCKET/PARTS..."""
        return "/".join([f"s3://{self.name}", *parts])

    def path(self, *parts: str) -> str:
        """BUCKET/PARTS..., as s3fs names keys."""
        return "/".join([self.name, *parts])

    def names(self, *parts: str) -> list[str]:
        """The entries directly under a prefix, fresh from the server."""
        self.fs.invalidate_cache()
        return sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in self.fs.ls(self.path(*parts), detail=False))

    def exists(self, *parts: str) -> bool:
        self.fs.invalidate_cache()
        return bool(self.fs.exists(self.path(*parts)))


def new_bucket() -> Bucket:
    """A fresh bucket (moto keeps them for the session: each test gets its own)."""
    fs = fsspec.filesystem("s3")
    name = f"kubetune-{next(_buckets)}-{uuid.uuid4().hex[:8]}"
    fs.mkdir(name)
    return Bucket(name=name, fs=fs)
