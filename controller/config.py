"""Every setting of podstore, in one place.

Flags win over ``PODSTORE_*`` environment variables, which win over the
defaults below. Nothing else in the package reads ``os.environ`` for settings:
the command line builds one :class:`Settings` and hands it down.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ENV_PREFIX = "PODSTORE_"

# containers/storage's own defaults, so that podstore sees the same store as
# podman and cri-o when nothing is said.
DEFAULT_ROOT = "/var/lib/containers/storage"
DEFAULT_RUNROOT = "/run/containers/storage"
DEFAULT_DRIVER = "overlay"
# The pause image that cri-o and containerd use for infra containers.
DEFAULT_INFRA_IMAGE = "registry.k8s.io/pause:3.10"
DEFAULT_HEALTH_PORT = 8080
DEFAULT_METRICS_PORT = 9090


@dataclass(frozen=True)
class Settings:
    # Graph root of the containers/storage store (--root, PODSTORE_ROOT).
    root: str = DEFAULT_ROOT
    # Run root of the store, where mounts and run dirs live (--runroot, PODSTORE_RUNROOT).
    run_root: str = DEFAULT_RUNROOT
    # Storage driver: overlay or vfs (--driver, PODSTORE_DRIVER).
    driver: str = DEFAULT_DRIVER
    # Kubeconfig file; empty: the in-cluster service account (--kubeconfig, KUBECONFIG).
    kubeconfig: str = ""
    # Node whose StoragePods/StorageContainers this agent owns (--node-name, PODSTORE_NODE_NAME).
    node_name: str = ""
    # Image for infra containers when a StoragePod names none (--infra-image).
    infra_image: str = DEFAULT_INFRA_IMAGE
    # Registries reached over plain HTTP or without TLS verification (--insecure-registry).
    insecure_registries: tuple[str, ...] = ()
    # Seconds between two full comparisons of spec and store (--resync-interval).
    resync_interval: float = 30.0
    # Seconds a podstore container whose object is gone is kept before removal (--orphan-grace).
    orphan_grace: float = 60.0
    # Seconds any one containers-storage or skopeo process may run (--command-timeout).
    command_timeout: float = 120.0
    # Seconds a pull may run (--pull-timeout).
    pull_timeout: float = 600.0
    # Port of the liveness endpoint /healthz (--health-port); 0 disables it.
    health_port: int = DEFAULT_HEALTH_PORT
    # Port of the Prometheus /metrics endpoint (--metrics-port); 0 disables it.
    metrics_port: int = DEFAULT_METRICS_PORT
    # Address both endpoints listen on (--listen-address).
    listen_address: str = "0.0.0.0"  # noqa: S104 - probes reach the pod IP
    # Log level name (--log-level).
    log_level: str = "INFO"
    # Log format: text or json (--log-format).
    log_format: str = "text"
    # Image GC starts when the store's filesystem is this full, in percent, as the
    # kubelet's flag of that name (--image-gc-high-threshold); 100 turns GC off.
    image_gc_high_threshold: int = 85
    # Image GC removes images until the filesystem is under this, in percent
    # (--image-gc-low-threshold).
    image_gc_low_threshold: int = 80
    # Seconds an image is in the store before GC may remove it (--image-minimum-gc-age,
    # a duration such as 2m).
    image_minimum_gc_age: float = 120.0
    # Images GC never removes, besides the infra image (--pinned-image, repeatable).
    pinned_images: tuple[str, ...] = ()
    # GC may remove images that another tool put in the store too (--image-gc-all).
    image_gc_all: bool = False
    # Seconds between two image-GC passes of the agent (--image-gc-interval; the kubelet's
    # period is 5 minutes).
    image_gc_interval: float = 300.0


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(ENV_PREFIX + name)
    return value if value not in (None, "") else None


def _number(
    environ: Mapping[str, str], name: str, kind: type[float] | type[int], default: float
) -> Any:
    """A numeric setting from the environment, with an error that names the variable."""
    raw = _env(environ, name)
    if raw is None:
        return kind(default)
    try:
        return kind(raw)
    except ValueError:
        raise SystemExit(
            f"podstore: environment variable {ENV_PREFIX}{name}={raw!r} is not a "
            f"{'whole number' if kind is int else 'number'}"
        ) from None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds of a Go duration such as ``2m``, ``1h30m``, ``90s`` (a bare number is seconds)."""
    value = text.strip() if isinstance(text, str) else ""
    try:
        seconds = float(value)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _DURATION.finditer(value):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT[match.group(2)]
            pos = match.end()
        if not value or pos != len(value):
            raise ValueError(f"{text!r} is not a duration such as 2m, 90s or 1h30m") from None
    if seconds < 0:
        raise ValueError(f"{text!r} is negative")
    return seconds


def _duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _percent_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{value} is not a percentage between 0 and 100")
    return value


def _env_parsed(environ: Mapping[str, str], name: str, parse: Any, default: Any) -> Any:
    raw = _env(environ, name)
    if raw is None:
        return default
    try:
        return parse(raw)
    except (argparse.ArgumentTypeError, ValueError) as err:
        raise SystemExit(f"podstore: environment variable {ENV_PREFIX}{name}: {err}") from None


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def add_image_gc_arguments(
    parser: argparse.ArgumentParser, environ: Mapping[str, str], *, interval: bool = False
) -> None:
    """The kubelet's image-GC flags (agent, run, rmi --prune); ``interval`` for the agent."""
    parser.add_argument(
        "--image-gc-high-threshold",
        type=_percent_arg,
        default=_env_parsed(environ, "IMAGE_GC_HIGH_THRESHOLD", _percent_arg, 85),
        metavar="PERCENT",
        help="filesystem usage that starts image GC; 100 disables it "
        "(env PODSTORE_IMAGE_GC_HIGH_THRESHOLD)",
    )
    parser.add_argument(
        "--image-gc-low-threshold",
        type=_percent_arg,
        default=_env_parsed(environ, "IMAGE_GC_LOW_THRESHOLD", _percent_arg, 80),
        metavar="PERCENT",
        help="filesystem usage image GC brings the store under "
        "(env PODSTORE_IMAGE_GC_LOW_THRESHOLD)",
    )
    parser.add_argument(
        "--image-minimum-gc-age",
        type=_duration_arg,
        default=_env_parsed(environ, "IMAGE_MINIMUM_GC_AGE", parse_duration, 120.0),
        metavar="DURATION",
        help="how long an image is kept at least, e.g. 2m (env PODSTORE_IMAGE_MINIMUM_GC_AGE)",
    )
    env_pinned = _env(environ, "PINNED_IMAGES")
    parser.add_argument(
        "--pinned-image",
        dest="pinned_images",
        action="append",
        default=[r for r in (env_pinned or "").split(",") if r],
        metavar="REF",
        help="image GC never removes; repeatable; the infra image is always pinned "
        "(env PODSTORE_PINNED_IMAGES, comma-separated)",
    )
    parser.add_argument(
        "--image-gc-all",
        action="store_true",
        default=_env_parsed(environ, "IMAGE_GC_ALL", _boolean, False),
        help="let image GC remove images that podstore did not pull (env PODSTORE_IMAGE_GC_ALL)",
    )
    if interval:
        parser.add_argument(
            "--image-gc-interval",
            type=_duration_arg,
            default=_env_parsed(environ, "IMAGE_GC_INTERVAL", parse_duration, 300.0),
            metavar="DURATION",
            help="time between two image-GC passes, e.g. 5m (env PODSTORE_IMAGE_GC_INTERVAL)",
        )


def check_arguments(args: argparse.Namespace) -> str | None:
    """What is wrong with flags that only make sense together; None when nothing."""
    high = getattr(args, "image_gc_high_threshold", None)
    low = getattr(args, "image_gc_low_threshold", None)
    if high is not None and low is not None and low > high:
        return (
            f"--image-gc-low-threshold ({low}) must not be above --image-gc-high-threshold ({high})"
        )
    return None


def add_store_arguments(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """The flags every command takes: where the store is."""
    parser.add_argument(
        "--root",
        default=_env(environ, "ROOT") or DEFAULT_ROOT,
        help="graph root of the containers/storage store (env PODSTORE_ROOT)",
    )
    parser.add_argument(
        "--runroot",
        default=_env(environ, "RUNROOT") or DEFAULT_RUNROOT,
        help="run root of the store (env PODSTORE_RUNROOT)",
    )
    parser.add_argument(
        "--driver",
        default=_env(environ, "DRIVER") or DEFAULT_DRIVER,
        help="storage driver, overlay or vfs (env PODSTORE_DRIVER)",
    )
    parser.add_argument(
        "--command-timeout",
        type=float,
        default=_number(environ, "COMMAND_TIMEOUT", float, 120.0),
        help="seconds any one storage command may run (env PODSTORE_COMMAND_TIMEOUT)",
    )
    parser.add_argument(
        "--log-level",
        default=_env(environ, "LOG_LEVEL") or "INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level (env PODSTORE_LOG_LEVEL)",
    )
    parser.add_argument(
        "--log-format",
        default=_env(environ, "LOG_FORMAT") or "text",
        choices=["text", "json"],
        help="log format (env PODSTORE_LOG_FORMAT)",
    )


def add_infra_image_argument(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    parser.add_argument(
        "--infra-image",
        default=_env(environ, "INFRA_IMAGE") or DEFAULT_INFRA_IMAGE,
        help="image of infra containers when a StoragePod names none; image GC never "
        "removes it (env PODSTORE_INFRA_IMAGE)",
    )


def add_reconciler_arguments(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """The flags of the commands that reconcile (agent and run)."""
    add_infra_image_argument(parser, environ)
    env_insecure = _env(environ, "INSECURE_REGISTRIES")
    parser.add_argument(
        "--insecure-registry",
        dest="insecure_registries",
        action="append",
        default=[r for r in (env_insecure or "").split(",") if r],
        metavar="HOST[:PORT]",
        help="registry reached over plain HTTP or without TLS verification; repeatable "
        "(env PODSTORE_INSECURE_REGISTRIES, comma-separated)",
    )
    parser.add_argument(
        "--pull-timeout",
        type=float,
        default=_number(environ, "PULL_TIMEOUT", float, 600.0),
        help="seconds one image pull may run (env PODSTORE_PULL_TIMEOUT)",
    )


def add_agent_arguments(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """The flags of the node agent alone."""
    parser.add_argument(
        "--node-name",
        default=_env(environ, "NODE_NAME"),
        required=_env(environ, "NODE_NAME") is None,
        help="node whose StoragePods this agent owns (env PODSTORE_NODE_NAME)",
    )
    parser.add_argument(
        "--kubeconfig",
        default=environ.get("KUBECONFIG", ""),
        help="kubeconfig file; without one the in-cluster service account is used (env KUBECONFIG)",
    )
    parser.add_argument(
        "--resync-interval",
        type=float,
        default=_number(environ, "RESYNC_INTERVAL", float, 30.0),
        help="seconds between two comparisons of spec and store (env PODSTORE_RESYNC_INTERVAL)",
    )
    parser.add_argument(
        "--orphan-grace",
        type=float,
        default=_number(environ, "ORPHAN_GRACE", float, 60.0),
        help="seconds before a container whose object is gone is removed "
        "(env PODSTORE_ORPHAN_GRACE)",
    )
    parser.add_argument(
        "--health-port",
        type=int,
        default=_number(environ, "HEALTH_PORT", int, DEFAULT_HEALTH_PORT),
        help="port of the /healthz liveness endpoint, 0 to disable (env PODSTORE_HEALTH_PORT)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=_number(environ, "METRICS_PORT", int, DEFAULT_METRICS_PORT),
        help="port of the Prometheus /metrics endpoint, 0 to disable (env PODSTORE_METRICS_PORT)",
    )
    parser.add_argument(
        "--listen-address",
        default=_env(environ, "LISTEN_ADDRESS") or "0.0.0.0",  # noqa: S104
        help="address of the health and metrics endpoints (env PODSTORE_LISTEN_ADDRESS)",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """One Settings from parsed flags; flags a command lacks keep their defaults."""
    values = vars(args)
    known = set(Settings.__dataclass_fields__)
    renamed = {"runroot": "run_root"}
    kwargs: dict[str, object] = {}
    for key, value in values.items():
        target = renamed.get(key, key)
        if target in known and value is not None:
            kwargs[target] = tuple(value) if isinstance(value, list) else value
    return Settings(**kwargs)  # type: ignore[arg-type]


def environ_snapshot(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The PODSTORE_* part of the environment (and KUBECONFIG); the only place that reads
    os.environ."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k.startswith(ENV_PREFIX) or k == "KUBECONFIG"}


def split_csv(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())
