"""Running an OCI bundle once with ``runc``, as the contract promises it can be.

The contract says a started container's run directory is a valid OCI bundle;
:func:`run_bundle` is how the tests prove it. State goes to a runc ``--root`` of its
own (so tests never see each other's containers) and the container is always deleted.
(``crun`` does not work on these machines; ``runc`` does.)
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("tests.support.runc")

RUNC = "runc"
#: podman's default set. Without CAP_DAC_OVERRIDE even root cannot write to "/" of a
#: containers-storage layer, whose root directory is mode 0555.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID",
    "CAP_SYS_CHROOT",
)  # fmt: skip


@contextlib.contextmanager
def _state_root(runc_root: Path | None) -> Iterator[Path]:
    if runc_root is not None:
        runc_root.mkdir(parents=True, exist_ok=True)
        yield runc_root
        return
    with tempfile.TemporaryDirectory(prefix="podstore-runc-") as tmp:
        yield Path(tmp)


def run_bundle(
    bundle_dir: Path | str,
    container_id: str,
    timeout: float = 30,
    *,
    runc_root: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``runc run --bundle DIR ID`` with no terminal; return its exit status and output.

    The bundle's ``config.json`` must have ``process.terminal`` false. The process's
    exit status is the returned ``returncode``. Past ``timeout`` the container is killed
    and :class:`subprocess.TimeoutExpired` raised. The container is deleted afterwards in
    every case. Give IDs unique to the test: cgroups are named after them.
    """
    with _state_root(runc_root) as root:
        base = [RUNC, "--root", str(root)]
        args = [*base, "run", "--bundle", str(bundle_dir), container_id]
        log.debug("run: %s", " ".join(args))
        try:
            return subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        finally:
            # Also reaps a container left running by a timeout or an interrupted test.
            subprocess.run(
                [*base, "delete", "--force", container_id],
                capture_output=True,
                timeout=30,
                check=False,
            )


def minimal_config(
    args: Sequence[str],
    *,
    root: str = "rootfs",
    env: Sequence[str] = ("PATH=/bin",),
    cwd: str = "/",
    readonly: bool = False,
    hostname: str = "podstore-test",
    capabilities: Sequence[str] = DEFAULT_CAPABILITIES,
) -> dict[str, Any]:
    """A small OCI runtime config that ``runc`` accepts: no terminal, root user with
    podman's default capabilities, private namespaces, ``/proc``, a tmpfs ``/dev`` and
    ``/sys``. ``root`` may be relative to the bundle or absolute (a mountpoint)."""
    caps = list(capabilities)
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": list(env),
            "cwd": cwd,
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
            },
            "noNewPrivileges": True,
        },
        "root": {"path": root, "readonly": readonly},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
        ],
        "linux": {
            "namespaces": [
                {"type": "pid"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "network"},
            ],
        },
    }


def write_config(bundle_dir: Path, config: dict[str, Any]) -> Path:
    """Write ``config`` as the bundle's ``config.json``; return its path."""
    path = Path(bundle_dir) / "config.json"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path
