"""fsspec filesystems for object-store and web URIs, with errors a user can act on.

Credentials come from fsspec's own mechanisms, never from the job spec: s3fs reads the
AWS_* environment (or the pod's workload identity), gcsfs GOOGLE_APPLICATION_CREDENTIALS
or the metadata server, adlfs AZURE_STORAGE_ACCOUNT_NAME / AZURE_STORAGE_CONNECTION_STRING
and friends; any backend option can also be given as FSSPEC_<PROTOCOL>_<OPTION>
environment variables (fsspec's config). The backends are optional installs, so a
missing one is reported with the package to install.
"""

from __future__ import annotations

from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs

from kubetune_api.uris import BACKEND_PACKAGES, uri_scheme
from kubetune_trainer.errors import ConfigError


def filesystem(uri: str) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem for `uri` and the path within it."""
    try:
        return url_to_fs(uri)
    except ImportError as error:
        scheme = uri_scheme(uri)
        package = BACKEND_PACKAGES.get(scheme, "the fsspec backend for this scheme")
        raise ConfigError(
            f"{scheme}:// URIs need the Python package {package}, which is not installed in "
            f"this trainer image: pip install {package} ({error})"
        ) from None
