"""Runtime configuration: the OCI runtime-spec ``config.json`` of a container.

:func:`build_template` makes the template kept in the container directory,
from the image config overlaid with the container spec, Kubernetes' way:
``command`` replaces the image's Entrypoint (and then the image's Cmd is not
used, as the kubelet does), ``args`` replaces Cmd, ``env`` is merged over the
image's Env, ``workingDir`` replaces WorkingDir; ``$(VAR)`` in the spec's env values,
command and args is expanded from the spec's env as the kubelet does
(:mod:`controller.storage.expansion`). :func:`render` makes the run
config from a template: the same document with ``root.path`` set to where
the container's layer is mounted. Both are pure functions.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.storage.errors import StorageError
from controller.storage.expansion import expand_all, expand_env
from controller.storage.images import ImageConfig

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ROOT_PLACEHOLDER = "rootfs"

# Docker's and cri-o's default capability set.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
)
READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)


class InvalidRuntimeConfig(StorageError):
    """A template or spec that cannot make a runnable config."""

    reason = "InvalidRuntimeConfig"


@dataclass(frozen=True)
class ProcessSpec:
    """What a container spec says about its process (the Kubernetes fields).

    ``env`` is in the spec's order: an entry's ``$(VAR)`` references see the ones before it.
    """

    command: Sequence[str] | None = None
    args: Sequence[str] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str | None = None


def process_args(image: ImageConfig | None, spec: ProcessSpec) -> list[str]:
    """The process's argv: Kubernetes' rules for command/args over Entrypoint/Cmd.

    The spec's command and args have their ``$(VAR)`` references expanded from the spec's
    env; the image's Entrypoint and Cmd are taken as they are (the kubelet's rules).
    """
    entrypoint = list(image.entrypoint) if image else []
    cmd = list(image.cmd) if image else []
    env = expand_env(spec.env.items())
    command = expand_all(spec.command, env)
    args = expand_all(spec.args, env)
    if command:
        argv = command + (args or [])
    elif args:
        argv = entrypoint + args
    else:
        argv = entrypoint + cmd
    if not argv:
        raise InvalidRuntimeConfig(
            "the container has no command: the image sets no Entrypoint or Cmd and the spec "
            "gives no command; set spec.command"
        )
    return argv


def merge_env(image_env: Sequence[str], overrides: Mapping[str, str]) -> list[str]:
    """Image Env with the spec's values over it, image order first, then new names."""
    merged: dict[str, str] = {}
    for item in image_env:
        name, _, value = item.partition("=")
        if name:
            merged[name] = value
    for name, value in overrides.items():
        merged[name] = value
    merged.setdefault("PATH", DEFAULT_PATH)
    return [f"{k}={v}" for k, v in merged.items()]


def parse_user(user: str) -> tuple[int, int] | None:
    """Numeric ``uid:gid``; None when the image's /etc/passwd must say (a name, or a
    bare uid whose group is its passwd entry's, as docker, podman and cri-o do)."""
    if not user or user == "0":
        return (0, 0)
    uid_text, _, gid_text = user.partition(":")
    if uid_text.isdigit() and gid_text.isdigit():
        return int(uid_text), int(gid_text)
    return None


def build_template(
    image: ImageConfig | None,
    spec: ProcessSpec,
    *,
    hostname: str = "",
    mount_label: str = "",
    annotations: Mapping[str, str] | None = None,
    readonly_rootfs: bool = False,
) -> dict[str, Any]:
    """A complete OCI runtime spec; ``root.path`` is a placeholder until :func:`render`."""
    env = merge_env(image.env if image else (), expand_env(spec.env.items()))
    cwd = spec.working_dir or (image.working_dir if image else "") or "/"
    if not cwd.startswith("/"):
        raise InvalidRuntimeConfig(f"workingDir {cwd!r} must be an absolute path")
    user_text = image.user if image else ""
    numeric = parse_user(user_text)
    user: dict[str, Any] = {"uid": 0, "gid": 0}
    if numeric is not None:
        user = {"uid": numeric[0], "gid": numeric[1]}
    caps = list(DEFAULT_CAPABILITIES)
    template: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": user,
            "args": process_args(image, spec),
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": ROOT_PLACEHOLDER, "readonly": readonly_rootfs},
        "hostname": hostname[:63],
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
            },
            {
                "destination": "/dev/shm",  # noqa: S108 - the container's own
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
        ],
        "annotations": dict(annotations or {}),
        "linux": {
            "namespaces": [
                {"type": "pid"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "network"},
            ],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
    if numeric is None:
        # Resolved against the image's /etc/passwd when the layer is mounted.
        template["annotations"]["io.podstore.user"] = user_text
    if mount_label:
        template["linux"]["mountLabel"] = mount_label
    return template


def render(template: Mapping[str, Any], mountpoint: str) -> dict[str, Any]:
    """The run config: the template with ``root.path`` replaced by the mountpoint."""
    if not os.path.isabs(mountpoint):
        raise InvalidRuntimeConfig(f"mountpoint {mountpoint!r} is not an absolute path")
    if not isinstance(template.get("root"), Mapping) or not isinstance(
        template.get("process"), Mapping
    ):
        raise InvalidRuntimeConfig("runtime config template has no root or no process section")
    config = copy.deepcopy(dict(template))
    config["root"] = dict(config["root"], path=mountpoint)
    named_user = config.get("annotations", {}).get("io.podstore.user")
    if named_user:
        uid, gid = resolve_user(mountpoint, named_user)
        config["process"] = dict(config["process"], user={"uid": uid, "gid": gid})
    return config


def resolve_user(rootfs: str, user: str) -> tuple[int, int]:
    """Look a ``name[:group]`` up in the container's own /etc/passwd and /etc/group."""
    name, _, group = user.partition(":")
    uid = gid = None
    for fields_ in _read_db(rootfs, "etc/passwd"):
        if len(fields_) < 4 or not fields_[2].isdigit() or not fields_[3].isdigit():
            continue
        if fields_[0] == name or (name.isdigit() and fields_[2] == name):
            uid, gid = int(fields_[2]), int(fields_[3])
            break
    if uid is None and name.isdigit():
        uid, gid = int(name), 0  # a uid the image does not know runs with group 0
    if uid is None or gid is None:
        raise InvalidRuntimeConfig(f"user {name!r} of the image is not in its /etc/passwd")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            for fields_ in _read_db(rootfs, "etc/group"):
                if len(fields_) >= 3 and fields_[0] == group:
                    gid = int(fields_[2])
                    break
            else:
                raise InvalidRuntimeConfig(f"group {group!r} of the image is not in its /etc/group")
    return uid, gid


def _read_db(rootfs: str, name: str) -> list[list[str]]:
    """A passwd-style file of the container; never one a symlink points at outside it."""
    root = os.path.realpath(rootfs)
    path = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, path]) != root:
        return []
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return [line.rstrip("\n").split(":") for line in handle if not line.startswith("#")]
    except OSError:
        return []
