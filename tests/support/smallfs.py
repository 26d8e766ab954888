"""A small filesystem to fill, and images big enough to fill it, for image-GC tests.

:func:`small_filesystem` mounts a tmpfs of a few tens of MiB (unmounted at the end,
however the test ended); :func:`build_filler_images` makes, with ``umoci``, an OCI
layout whose tags ``fill-0``, ``fill-1``, ... each hold one layer of random (so
incompressible) bytes, no layer shared between two of them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from tests.support.commands import run


@contextlib.contextmanager
def small_filesystem(path: Path, mib: int) -> Iterator[Path]:
    """A tmpfs of ``mib`` MiB mounted on ``path`` while the block runs."""
    path.mkdir(parents=True, exist_ok=True)
    run(["mount", "-t", "tmpfs", "-o", f"size={mib}m,mode=0700", "tmpfs", path], timeout=30)
    try:
        yield path
    finally:
        done = run(["umount", path], timeout=60, check=False)
        if done.returncode != 0:  # something still holds it: detach it, never leave it
            run(["umount", "--lazy", path], timeout=60, check=False)


def build_filler_images(workdir: Path, count: int, mib: float) -> Path:
    """An OCI layout with ``count`` images of one ``mib`` MiB random layer each."""
    layout = workdir / "fill-layout"
    umoci = ["umoci", "--log=error"]
    run([*umoci, "init", "--layout", layout], timeout=30)
    blob = workdir / "fill-data"
    for index in range(count):
        blob.write_bytes(os.urandom(int(mib * 1024 * 1024)))
        tag = f"{layout}:fill-{index}"
        run([*umoci, "new", "--image", tag], timeout=30)
        run([*umoci, "insert", "--image", tag, blob, "/data"], timeout=60)
        run(
            [*umoci, "config", "--image", tag, "--config.cmd=/data", "--config.env=PATH=/"],
            timeout=30,
        )
    blob.unlink()
    return layout
