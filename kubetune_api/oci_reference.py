"""`oci://REGISTRY/REPOSITORY:TAG` output URIs and the digest-pinned references a push gives back.

The forms are the OCI distribution spec's: a repository is lower-case path components
(`[a-z0-9]+` joined by `.`, `_`, `__` or dashes), a tag at most 128 characters of
`[A-Za-z0-9_.-]` not starting with `.` or `-`. kubetune adds two rules of its own:

* the registry host is always written out (`ghcr.io`, `registry.internal:5000`,
  `localhost:5000`): no Docker Hub default, so a typo cannot push a model to a public
  registry;
* an output names a tag: the push sets it, and `status.artifact.uri` then pins the
  digest it got (`oci://REGISTRY/REPOSITORY@sha256:...`). A digest cannot be an output,
  since nobody knows it before the push.

Plain RE2 patterns: the CRD's CEL rule uses `OCI_OUTPUT_PATTERN` as well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OCI_SCHEME = "oci"
_LABEL = r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?"
_PORT = r"(:[0-9]{1,5})"
# A registry is a dotted host name, any host with a port, or localhost: a bare word is a
# Docker Hub namespace to other tools, and kubetune has no default registry.
_HOST = rf"(localhost{_PORT}?|{_LABEL}([.]{_LABEL})+{_PORT}?|{_LABEL}{_PORT})"
_COMPONENT = r"[a-z0-9]+(([.]|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = rf"{_COMPONENT}(/{_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"sha256:[a-f0-9]{64}"
OCI_OUTPUT_PATTERN = rf"^oci://{_HOST}/{_REPOSITORY}:{_TAG}$"
_PINNED_PATTERN = rf"^oci://{_HOST}/{_REPOSITORY}@{_DIGEST}$"
OCI_FORM = "oci://REGISTRY/REPOSITORY:TAG (e.g. oci://ghcr.io/team/sentiment-adapter:v1; REPOSITORY in lower case)"


@dataclass(frozen=True)
class OciReference:
    """A parsed oci:// reference: a tag (an output) or a digest (a pushed artifact)."""

    registry: str  # host[:port]
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """REGISTRY/REPOSITORY, as registries and oras name it."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What the registry's manifests endpoint takes: the digest, else the tag."""
        return self.digest or self.tag or ""

    def pinned(self, digest: str) -> OciReference:
        return OciReference(self.registry, self.repository, digest=digest)

    def uri(self) -> str:
        """oci://REGISTRY/REPOSITORY@DIGEST or oci://REGISTRY/REPOSITORY:TAG."""
        return f"{OCI_SCHEME}://{self.name}" + (f"@{self.digest}" if self.digest else f":{self.tag}")

    def image(self) -> str:
        """The same reference without the scheme: what KAITO, crane, skopeo and image volumes take."""
        return self.uri().removeprefix(f"{OCI_SCHEME}://")


def check_oci_output(uri: str) -> OciReference:
    """The output URI's parts; a ValueError saying what is missing and the form to write."""
    rest = uri.removeprefix(f"{OCI_SCHEME}://")
    host, _, path = rest.partition("/")
    if not path:
        raise ValueError(f"{uri} names no repository: write {OCI_FORM}")
    if "@" in path:
        raise ValueError(
            f"{uri}: an output names a tag, not a digest (the digest is known only after the push, and "
            f"status.artifact.uri gives it): write {OCI_FORM}"
        )
    if not re.fullmatch(_HOST, host):
        raise ValueError(
            f"{uri}: {host!r} is not a registry host; write the registry out (ghcr.io, "
            f"registry.example.com:5000, localhost:5000), kubetune has no default registry: write {OCI_FORM}"
        )
    repository, colon, tag = path.rpartition(":")
    if not colon:
        raise ValueError(f"{uri} names no tag: add one (…:v1); write {OCI_FORM}")
    if not re.fullmatch(_REPOSITORY, repository):
        raise ValueError(f"{uri}: {repository!r} is not a repository name: write {OCI_FORM}")
    if not re.fullmatch(_TAG, tag):
        raise ValueError(
            f"{uri}: {tag!r} is not a tag (at most 128 letters, digits, '_', '.', '-', not starting with '.' "
            f"or '-'): write {OCI_FORM}"
        )
    return OciReference(host, repository, tag=tag)


def parse_pinned(uri: str) -> OciReference:
    """oci://REGISTRY/REPOSITORY@sha256:... (what status.artifact.uri holds); a tag works too."""
    if re.fullmatch(_PINNED_PATTERN, uri):
        name, _, digest = uri.removeprefix(f"{OCI_SCHEME}://").partition("@")
        registry, _, repository = name.partition("/")
        return OciReference(registry, repository, digest=digest)
    return check_oci_output(uri)
