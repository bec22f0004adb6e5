"""A base model's config.json, and nothing else of it: the memory estimate's input.

`read_model_config(model, revision)` reads it from a local folder or file:// URI, or
downloads only `config.json` from the hub: through huggingface_hub when it is installed
(its cache, token and offline mode apply), else with one plain HTTP GET of
`{HF_ENDPOINT or https://huggingface.co}/{repo}/resolve/{revision or main}/config.json`
(the operator image has no huggingface_hub). A pvc:// model lives on a claim that
only the cluster can read. Every failure is a `ConfigUnavailable` saying why, never a
traceback: the estimate is advice, and a run does not need it.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kubetune_api.uris import PVC_SCHEME, uri_scheme

DEFAULT_ENDPOINT = "https://huggingface.co"
TIMEOUT_S = 5.0
MAX_CONFIG_BYTES = 4 * 2**20  # real configs are a few KiB


class ConfigUnavailable(RuntimeError):
    """The model's config.json cannot be read here (the message says why and what to do)."""


def is_hub_id(model: str) -> bool:
    """Whether `model` names a hub repository rather than a path or a URI."""
    return uri_scheme(model) == "" and not model.startswith((".", "/", "~")) and not Path(model).exists()


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A config.json, or the one in a model folder."""
    file = Path(path).expanduser()
    if file.is_dir():
        file = file / "config.json"
    try:
        config = json.loads(file.read_text())
    except OSError as error:
        raise ConfigUnavailable(f"cannot read {file}: {error.strerror or error}") from None
    except ValueError as error:
        raise ConfigUnavailable(f"{file} is not JSON: {error}") from None
    if not isinstance(config, dict):
        raise ConfigUnavailable(f"{file} holds no JSON object")
    return config


def read_model_config(model: str, revision: str | None = None, timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """The config.json of spec.base.model; ConfigUnavailable when it cannot be had here."""
    scheme = uri_scheme(model)
    if scheme == PVC_SCHEME:
        raise ConfigUnavailable(
            f"{model} is on a PersistentVolumeClaim, which only the cluster can read: "
            "pass a copy of its config.json with --config PATH"
        )
    if scheme == "file":
        return read_config_file(model.removeprefix("file://"))
    if scheme:
        raise ConfigUnavailable(f"the estimate reads hub ids, local paths and file:// only, not {scheme}://")
    if not is_hub_id(model):
        return read_config_file(model)
    return _from_hub(model, revision, timeout)


def _from_hub(repo: str, revision: str | None, timeout: float) -> dict[str, Any]:
    try:
        import huggingface_hub
    except ImportError:
        return fetch_hub_config(repo, revision, timeout)
    try:
        path = huggingface_hub.hf_hub_download(
            repo,
            "config.json",
            revision=revision,
            endpoint=os.environ.get("HF_ENDPOINT") or None,
            etag_timeout=timeout,
        )
    except Exception as error:  # the hub client's errors have no common base worth naming
        raise ConfigUnavailable(_hub_message(repo, error)) from None
    return read_config_file(path)


def _hub_message(repo: str, error: Exception) -> str:
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if hub_offline():
        detail = f"HF_HUB_OFFLINE is set and config.json of {repo} is not in the hub cache ({detail})"
    return f"cannot get config.json of {repo} from the hub: {detail} (pass a copy with --config PATH)"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def fetch_hub_config(repo: str, revision: str | None, timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """config.json of a hub repository over plain HTTP (no huggingface_hub, no cache)."""
    if hub_offline():
        raise ConfigUnavailable(f"HF_HUB_OFFLINE is set: config.json of {repo} is not fetched")
    return _over_http(repo, revision, timeout)


def _over_http(repo: str, revision: str | None, timeout: float) -> dict[str, Any]:
    endpoint = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    url = f"{endpoint}/{quote(repo)}/resolve/{quote(revision or 'main', safe='')}/config.json"
    request = urllib.request.Request(url, headers={"User-Agent": "kubetune"})
    token = os.environ.get("HF_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_CONFIG_BYTES + 1)
    except urllib.error.HTTPError as error:
        raise ConfigUnavailable(f"cannot get config.json of {repo}: {url} answered HTTP {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ConfigUnavailable(f"cannot get config.json of {repo} from {endpoint}: {reason}") from None
    if len(body) > MAX_CONFIG_BYTES:
        raise ConfigUnavailable(f"{url} is larger than any config.json")
    try:
        config = json.loads(body)
    except ValueError:
        raise ConfigUnavailable(f"{url} did not return JSON") from None
    if not isinstance(config, dict):
        raise ConfigUnavailable(f"{url} holds no JSON object")
    return config
