"""Copying an artifact out of an object store (s3://, gs://, az://) with fsspec, directly from
this machine: no pod, and this machine's own credentials (the AWS_* environment, gcloud's
application default credentials, AZURE_STORAGE_*; any backend option as
FSSPEC_<PROTOCOL>_<OPTION>, as in the trainer).

fsspec and its backends are optional installs; a missing one is named with its package.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from kubetune_api.fetch_pvc import FetchError
from kubetune_api.output_layout import wanted
from kubetune_api.uris import BACKEND_PACKAGES, uri_scheme


def fetch_from_store(uri: str, destination: Path, *, checkpoints: bool = False) -> list[Path]:
    """Copy every file under `uri` (checkpoints only when asked) into `destination`."""
    scheme = uri_scheme(uri)
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise FetchError(f"copying {scheme}:// artifacts needs fsspec: pip install 'kubetune[client]'") from None
    try:
        filesystem, root = url_to_fs(uri)
    except (ImportError, ValueError) as error:
        package = BACKEND_PACKAGES.get(scheme, f"an fsspec backend for {scheme}://")
        raise FetchError(
            f"copying {scheme}:// artifacts needs the Python package {package}: pip install {package} ({error})"
        ) from None

    root = root.rstrip("/")
    remote_files = [path for path in filesystem.find(root) if path.rstrip("/") != root]
    written: list[Path] = []
    for remote in sorted(remote_files):
        relative = PurePosixPath(remote[len(root) :].lstrip("/"))
        if not relative.parts or ".." in relative.parts or not wanted(relative, checkpoints):
            continue
        target = destination.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        filesystem.get_file(remote, str(target))
        written.append(target)
    if not written:
        raise FetchError(f"nothing to copy at {uri}: the artifact holds no files")
    return written
