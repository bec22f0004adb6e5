"""Talking to an OCI registry (oras-py underneath): credentials, the first contact, pushes and pulls.

Used by the trainer (push) and by `kubetune fetch` (pull). oras-py is an optional install
(the `oci` extra; the trainer image has it), imported when a session starts.

Credentials are a Docker config (`{"auths": {"HOST": {"auth": base64(user:password)}}}`):
the trainer's comes from spec.registrySecret (`$KUBETUNE_REGISTRY_AUTH`, the Secret's
`.dockerconfigjson`); elsewhere, as docker and oras read it, `$DOCKER_CONFIG/config.json`
or `~/.docker/config.json`. Credential helpers are not run.

`RegistrySession.check` makes the first contact itself, with a short timeout, so that the
answer is a clear `RegistryError` before any upload: unreachable or 5xx/429 (retryable:
an outage may pass), or refused credentials, no registry there, TLS to a plain-HTTP
registry (not retryable: the spec must change).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubetune_api.oci_layout import MANIFEST_MEDIA_TYPE, Descriptor
from kubetune_api.oci_reference import OciReference
from kubetune_api.protocol import ENV_REGISTRY_AUTH

CONTACT_TIMEOUT_S = 15.0
# Blobs above this size go up in chunks: oras-py reads a monolithic upload into memory.
CHUNKED_ABOVE = 64 << 20
Credentials = tuple[str, str]


class RegistryError(RuntimeError):
    """The registry refused or could not be reached; `retryable` says whether waiting may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def registry_credentials(registry: str, environ: Mapping[str, str] | None = None) -> Credentials | None:
    """(user, password) for `registry` from the Docker config in force; None: anonymous."""
    env = os.environ if environ is None else environ
    text = env.get(ENV_REGISTRY_AUTH)
    where = f"${ENV_REGISTRY_AUTH} (spec.registrySecret)"
    if text is None:
        path = Path(env.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
        if not path.is_file():
            return None
        text, where = path.read_text(), str(path)
    try:
        auths = json.loads(text).get("auths") or {}
    except (ValueError, AttributeError):
        raise RegistryError(f"{where} is not a Docker config JSON", retryable=False) from None
    for key, entry in auths.items():
        host = key.removeprefix("https://").removeprefix("http://").rstrip("/").split("/", 1)[0]
        if host == registry and isinstance(entry, dict):
            return _entry_credentials(entry, registry, where)
    return None


def _entry_credentials(entry: Mapping[str, Any], registry: str, where: str) -> Credentials:
    if entry.get("username") and entry.get("password"):
        return str(entry["username"]), str(entry["password"])
    try:
        user, _, password = base64.b64decode(str(entry.get("auth") or "")).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        user = password = ""
    if not user or not password:
        raise RegistryError(f"{where}: the entry for {registry} holds no usable auth (user:password)", retryable=False)
    return user, password


def _status_error(status: int, what: str, hint: str) -> RegistryError:
    if status in (401, 403):
        return RegistryError(f"{what}: the registry refused the credentials (HTTP {status}); {hint}", retryable=False)
    retryable = status >= 500 or status == 429
    return RegistryError(f"{what}: the registry answered HTTP {status}", retryable=retryable)


class RegistrySession:
    """One repository of one registry, authenticated once (`check`) and then used for blobs and manifests."""

    def __init__(
        self,
        reference: OciReference,
        *,
        insecure: bool,
        credentials: Credentials | None,
        credentials_hint: str = "check the Docker config's entry for the registry",
    ) -> None:
        try:
            import oras.provider
            import requests
        except ImportError:
            raise RegistryError(
                "oci:// artifacts need the Python package oras: pip install 'kubetune[oci]'", retryable=False
            ) from None
        self.reference = reference
        self.insecure = insecure
        self.credentials = credentials
        self.hint = credentials_hint
        self._scheme = "http" if insecure else "https"
        self._requests = requests
        self._oras = oras.provider
        self.registry: Any = None
        self.container: Any = None

    @property
    def base_url(self) -> str:
        return f"{self._scheme}://{self.reference.registry}/v2/{self.reference.repository}"

    def check(self) -> None:
        """Reach the registry and prove the credentials; RegistryError saying what is wrong."""
        requests = self._requests
        url = f"{self._scheme}://{self.reference.registry}/v2/"
        where = f"registry {self.reference.registry}"
        try:
            answer = requests.get(url, timeout=CONTACT_TIMEOUT_S)
            challenge = answer.headers.get("WWW-Authenticate", "")
            if answer.status_code == 401 and challenge.lower().startswith("basic"):
                answer = requests.get(url, timeout=CONTACT_TIMEOUT_S, auth=self.credentials)
            elif answer.status_code == 401 and challenge.lower().startswith("bearer"):
                answer = self._token(challenge)
        except requests.exceptions.SSLError as error:
            raise RegistryError(
                f"{where}: TLS failed ({error}); if it speaks plain HTTP (a test or in-cluster registry), "
                "set spec.output.insecureRegistry: true",
                retryable=False,
            ) from None
        except requests.exceptions.RequestException as error:
            raise RegistryError(f"{where} cannot be reached: {type(error).__name__}: {error}", retryable=True) from None
        if answer.status_code == 401 and self.credentials is None:
            raise RegistryError(f"{where} wants credentials and none were given; {self.hint}", retryable=False)
        if answer.status_code == 404:
            raise RegistryError(f"{where}: no OCI registry API at {url} (HTTP 404)", retryable=False)
        if answer.status_code != 200:
            raise _status_error(answer.status_code, where, self.hint)
        backend = "basic" if challenge.lower().startswith("basic") else "token"
        self.registry = self._oras.Registry(
            hostname=self.reference.registry, insecure=self.insecure, auth_backend=backend
        )
        if self.credentials is not None:
            self.registry.auth.set_basic_auth(*self.credentials)
            if backend == "basic":
                # Sent up front: oras-py would send each upload once without, take the 401, and send it again.
                encoded = base64.b64encode(":".join(self.credentials).encode()).decode()
                self.registry.set_header("Authorization", f"Basic {encoded}")
        self.container = self.registry.get_container(self.reference.image())

    def _token(self, challenge: str) -> Any:
        """A bearer-token registry: ask its token service for pull and push on this repository."""
        import oras.auth.utils

        parsed = oras.auth.utils.parse_auth_header(challenge)
        scope = f"repository:{self.reference.repository}:pull,push"
        params = {"service": parsed.service, "scope": scope} if parsed.service else {"scope": scope}
        return self._requests.get(str(parsed.realm), params=params, auth=self.credentials, timeout=CONTACT_TIMEOUT_S)

    def _request(self, method: str, url: str, what: str, **kwargs: Any) -> Any:
        kwargs["headers"] = {**self.registry.headers, **(kwargs.get("headers") or {})}
        try:
            return self.registry.do_request(url, method, **kwargs)
        except self._requests.exceptions.RequestException as error:
            raise RegistryError(f"{what}: {type(error).__name__}: {error}", retryable=True) from None
        except ValueError as error:  # oras-py: an auth challenge it cannot answer, a 500 after retries
            raise RegistryError(f"{what}: {error}", retryable=True) from None

    def manifest(self, reference: str) -> tuple[dict[str, Any], bytes] | None:
        """The manifest at a tag or digest (parsed, and its bytes); None when there is none."""
        what = f"reading {self.reference.name}:{reference}"
        answer = self._request(
            "GET", f"{self.base_url}/manifests/{reference}", what, headers={"Accept": MANIFEST_MEDIA_TYPE}
        )
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise _status_error(answer.status_code, what, self.hint)
        return json.loads(answer.content), bytes(answer.content)

    def push_blob(self, blob: Descriptor) -> None:
        what = f"uploading {blob.digest} to {self.reference.name}"
        layer = blob.to_json()
        try:
            answer = self.registry.upload_blob(
                str(blob.path), self.container, layer, do_chunked=blob.size > CHUNKED_ABOVE
            )
        except self._requests.exceptions.RequestException as error:
            raise RegistryError(f"{what}: {type(error).__name__}: {error}", retryable=True) from None
        except ValueError as error:  # oras-py found no upload session: usually a refused push
            raise RegistryError(f"{what}: {error}; {self.hint}", retryable=False) from None
        if answer.status_code not in (200, 201, 202):
            raise _status_error(answer.status_code, what, self.hint)

    def push_manifest(self, manifest: bytes, tag: str) -> str:
        """Put the manifest's exact bytes under `tag`; the digest the registry gives it."""
        import hashlib

        what = f"tagging {self.reference.name}:{tag}"
        headers = {"Content-Type": MANIFEST_MEDIA_TYPE}
        answer = self._request("PUT", f"{self.base_url}/manifests/{tag}", what, data=manifest, headers=headers)
        if answer.status_code not in (200, 201):
            raise _status_error(answer.status_code, what, self.hint)
        digest = f"sha256:{hashlib.sha256(manifest).hexdigest()}"
        told = answer.headers.get("Docker-Content-Digest")
        if told and told != digest:
            raise RegistryError(f"{what}: the registry stored digest {told}, not {digest}", retryable=True)
        return digest

    def download_blob(self, digest: str, target: Path) -> None:
        what = f"downloading {digest} from {self.reference.name}"
        try:
            self.registry.download_blob(self.container, digest, str(target))
        except self._requests.exceptions.HTTPError as error:
            status = error.response.status_code if error.response is not None else 0
            raise _status_error(status, what, self.hint) from None
        except self._requests.exceptions.RequestException as error:
            raise RegistryError(f"{what}: {type(error).__name__}: {error}", retryable=True) from None
