"""Registry credentials for one pull, never kept.

Image pull secrets arrive as ``.dockerconfigjson`` documents. For a pull they
are merged into one containers-auth.json held in an anonymous memory file
(``memfd_create``): it has no name on any filesystem, only this process and the
skopeo it starts (given the descriptor, read through ``/proc/self/fd/N``) can
open it, and it is gone when both are, however they end, even by SIGKILL.
Nothing of them is logged.

Where memory files are not available, a fresh private directory (mode 0700,
file 0600) is used and removed when the pull is done; directories such a pull
left behind when it was killed are swept the next time credentials are used.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from controller.storage.errors import StorageError


class InvalidAuth(StorageError):
    """An image pull secret that is not a docker config."""

    reason = "InvalidImagePullSecret"


def merge_docker_configs(configs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One ``{"auths": {...}}`` from several; the first secret naming a registry wins,
    as the kubelet does with a pod's imagePullSecrets."""
    auths: dict[str, Any] = {}
    for i, config in enumerate(configs):
        if not isinstance(config, Mapping):
            raise InvalidAuth(f"image pull secret #{i} is not a JSON object")
        entries = config.get("auths", config)  # .dockercfg has no "auths" level
        if not isinstance(entries, Mapping):
            raise InvalidAuth(f"image pull secret #{i} has no 'auths' object")
        for registry, entry in entries.items():
            if isinstance(entry, Mapping):
                auths.setdefault(str(registry), dict(entry))
    return {"auths": auths}


DIR_PREFIX = "podstore-auth-"
# A directory of a killed pull is removed once it is this old (longer than any pull).
STALE_SECONDS = 3600.0
_FD_PATH = re.compile(r"/proc/self/fd/([0-9]+)")


def inherited_fd(path: str | None) -> int | None:
    """The descriptor a child must inherit for ``path`` to mean the same file to it
    (``/proc/self/fd/N``), or None for an ordinary path."""
    match = _FD_PATH.fullmatch(path or "")
    return int(match.group(1)) if match else None


@contextlib.contextmanager
def temporary_auth_file(
    configs: Sequence[Mapping[str, Any]], *, directory: str | None = None
) -> Iterator[str | None]:
    """A private auth file holding ``configs`` while the block runs; None if no configs.

    The path is ``/proc/self/fd/N`` of a memory file: a command given it needs the
    descriptor N (see :func:`inherited_fd`), which ``controller.storage`` passes on.
    """
    if not configs:
        yield None
        return
    merged = merge_docker_configs(configs)
    data = json.dumps(merged).encode()
    sweep_stale(directory)  # what a pull killed before left (older podstores wrote files)
    try:
        fd = os.memfd_create("podstore-auth", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    except (AttributeError, OSError):
        with _auth_directory(data, directory) as path:
            yield path
        return
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        # Nobody may change or grow it from here on.
        seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def sweep_stale(directory: str | None = None, *, now: float | None = None) -> list[str]:
    """Remove the auth directories of pulls that were killed; returns those removed."""
    base = directory or tempfile.gettempdir()
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return []
    for entry in entries:
        if not entry.name.startswith(DIR_PREFIX):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not entry.is_dir(follow_symlinks=False) or st.st_uid != os.geteuid():
            continue
        if now - st.st_mtime < STALE_SECONDS:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
    return removed


@contextlib.contextmanager
def _auth_directory(data: bytes, directory: str | None) -> Iterator[str]:
    private = tempfile.mkdtemp(prefix=DIR_PREFIX, dir=directory)
    try:
        os.chmod(private, 0o700)
        path = os.path.join(private, "auth.json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        yield path
    finally:
        shutil.rmtree(private, ignore_errors=True)
