"""Validation of every name, ID and reference before it reaches a command line.

Arguments to ``containers-storage`` and ``skopeo`` are argument lists, so no
shell can misread them; what remains is that a value must not be taken for an
option (a leading ``-``), must not carry control characters, and must have the
shape the tools expect. Each check raises the contract's error for that kind
of value with a message that says what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from controller.storage.errors import (
    InvalidContainerID,
    InvalidContainerName,
    InvalidImageName,
    InvalidName,
    InvalidPodName,
    InvalidSandboxID,
)

# Names and IDs as containers/storage keeps them: no separators, no leading
# dash or dot, bounded length (they become directory names).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_HEX64 = re.compile(r"^[a-f0-9]{64}$")
_IMAGE_ID = re.compile(r"^(sha256:)?[a-f0-9]{64}$")
_SHORT_IMAGE_ID = re.compile(r"^[a-f0-9]{12,64}$")

# The distribution reference grammar, in its parts.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?",
    re.ASCII,
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

DEFAULT_DOMAIN = "docker.io"
LOCAL_TRANSPORTS = ("oci:", "oci-archive:", "docker-archive:", "dir:")


def _check(value: object, pattern: re.Pattern[str], error: type[InvalidName], what: str) -> str:
    if not isinstance(value, str) or not value:
        raise error(f"{what} is empty; give a non-empty {what}")
    if not pattern.fullmatch(value):
        raise error(
            f"{what} {value!r} is not valid: use letters, digits, '_', '.' and '-', "
            "starting with a letter or digit"
        )
    return value


def pod_name(value: object) -> str:
    return _check(value, _NAME, InvalidPodName, "pod name")


def container_name(value: object) -> str:
    return _check(value, _NAME, InvalidContainerName, "container name")


def sandbox_id(value: object) -> str:
    return _check(value, _ID, InvalidSandboxID, "pod ID")


def container_id(value: object) -> str:
    return _check(value, _ID, InvalidContainerID, "container ID")


def id_or_name(value: object) -> str:
    """An argument that names a container by ID or by name."""
    return _check(value, _NAME, InvalidContainerID, "container ID or name")


def is_full_id(value: str) -> bool:
    return bool(_HEX64.fullmatch(value))


def text(value: object, what: str, error: type[InvalidName] = InvalidName) -> str:
    """Free text that only goes into JSON (metadata), never onto a command line."""
    if not isinstance(value, str):
        raise error(f"{what} must be a string, not {type(value).__name__}")
    if _CONTROL.search(value):
        raise error(f"{what} {value!r} contains control characters")
    return value


def image_id(value: object) -> str:
    """An image ID as the store keeps it: 64 hex digits, ``sha256:`` optional."""
    if not isinstance(value, str) or not value:
        raise InvalidImageName("image ID is empty")
    if _IMAGE_ID.fullmatch(value):
        return value.removeprefix("sha256:")
    if _SHORT_IMAGE_ID.fullmatch(value):
        return value
    raise InvalidImageName(f"image ID {value!r} is not a sha256 digest (64 hex digits)")


@dataclass(frozen=True)
class ImageReference:
    """A parsed image reference: a registry one or one of the local transports."""

    transport: str  # "docker" for registries, else "oci", "oci-archive", ...
    name: str  # registry: domain/path; local: the path on disk
    tag: str = ""
    digest: str = ""

    @property
    def domain(self) -> str:
        return self.name.split("/", 1)[0] if self.transport == "docker" else ""

    def skopeo_source(self) -> str:
        """The reference in the form skopeo takes as a source."""
        if self.transport == "docker":
            return "docker://" + self.store_name()
        suffix = f":{self.tag}" if self.tag else ""
        return f"{self.transport}:{self.name}{suffix}"

    def store_name(self) -> str:
        """The name the image gets in containers/storage."""
        if self.transport == "docker":
            if self.digest:
                return f"{self.name}@{self.digest}"
            return f"{self.name}:{self.tag or 'latest'}"
        # Local transports have no registry name: name them under localhost/,
        # as podman does for images without one.
        base = self.name.rstrip("/").rsplit("/", 1)[-1].lower()
        base = re.sub(r"\.(tar|tgz|tar\.gz)$", "", base)
        base = re.sub(r"[^a-z0-9._-]+", "-", base).strip("._-") or "image"
        tag = re.sub(r"[^\w.-]+", "-", self.tag.split(":")[-1]) if self.tag else "latest"
        return f"localhost/{base}:{tag[:128]}"

    def __str__(self) -> str:
        if self.transport == "docker":
            return self.store_name()
        return self.skopeo_source()


def image_reference(value: object) -> ImageReference:
    """Parse a reference the way containers/image normalizes it.

    Registry references without a domain get ``docker.io`` (and ``library/``
    for one-part names); no tag means ``latest``.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidImageName("image reference is empty; give a name like registry/name:tag")
    if _CONTROL.search(value) or value.startswith("-") or len(value) > 4096:
        raise InvalidImageName(f"image reference {value!r} is not valid")
    for prefix in LOCAL_TRANSPORTS:
        if value.startswith(prefix):
            return _local_reference(prefix[:-1], value[len(prefix) :], value)
    if value.startswith("docker://"):
        value = value[len("docker://") :]
    elif "://" in value or value.startswith(("containers-storage:", "docker-daemon:")):
        raise InvalidImageName(
            f"image reference {value!r} uses a transport podstore does not pull from; use a "
            "registry reference or one of oci:, oci-archive:, docker-archive:, dir:"
        )
    match = _REFERENCE.fullmatch(value)
    if not match:
        raise InvalidImageName(
            f"image reference {value!r} is not valid: expected [registry/]name[:tag][@digest] "
            "with a lower-case name"
        )
    domain, path = match.group("domain"), match.group("path")
    if domain is None or not ("." in domain or ":" in domain or domain == "localhost"):
        # The first component is part of the path, not a registry: lower case, then.
        if domain and not re.fullmatch(_PATH_COMPONENT, domain, re.ASCII):
            raise InvalidImageName(
                f"image reference {value!r} is not valid: repository names must be lower-case"
            )
        path = f"{domain}/{path}" if domain else path
        domain = DEFAULT_DOMAIN
    if domain == "index.docker.io":  # the legacy name of Docker Hub
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    if len(f"{domain}/{path}") > 255:
        raise InvalidImageName(f"image name in {value!r} is longer than 255 characters")
    tag = match.group("tag") or ""
    digest = match.group("digest") or ""
    if not tag and not digest:
        tag = "latest"
    return ImageReference("docker", f"{domain}/{path}", tag, digest)


def _local_reference(transport: str, rest: str, original: str) -> ImageReference:
    if not rest:
        raise InvalidImageName(f"image reference {original!r} names no path")
    path, tag = rest, ""
    if transport in ("oci", "oci-archive", "docker-archive") and ":" in rest:
        path, tag = rest.split(":", 1)
    if not path.startswith("/"):
        raise InvalidImageName(
            f"image reference {original!r} must use an absolute path ({transport}:/path...)"
        )
    if "\x00" in path or "/../" in f"{path}/":
        raise InvalidImageName(f"image reference {original!r} has an unsafe path")
    return ImageReference(transport, path, tag)


def registry_host(value: object) -> str:
    """A ``host[:port]`` as given to --insecure-registry."""
    if not isinstance(value, str) or not re.fullmatch(_DOMAIN, value, re.ASCII):
        raise InvalidName(f"registry {value!r} is not a host or host:port")
    return value
