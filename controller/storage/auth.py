"""Registry credentials for one pull, never kept.

Image pull secrets arrive as ``.dockerconfigjson`` documents. For a pull they
are merged into one containers-auth.json in a fresh private directory
(mode 0700, file 0600) that is removed as soon as the pull is done. Nothing
of them is logged.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
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


@contextlib.contextmanager
def temporary_auth_file(
    configs: Sequence[Mapping[str, Any]], *, directory: str | None = None
) -> Iterator[str | None]:
    """A private auth file holding ``configs`` while the block runs; None if no configs."""
    if not configs:
        yield None
        return
    merged = merge_docker_configs(configs)
    private = tempfile.mkdtemp(prefix="podstore-auth-", dir=directory)
    try:
        os.chmod(private, 0o700)
        path = os.path.join(private, "auth.json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(merged, handle)
        yield path
    finally:
        shutil.rmtree(private, ignore_errors=True)
