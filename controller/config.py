"""Every setting of podstore, in one place.

Flags win over ``PODSTORE_*`` environment variables, which win over the
defaults below. Nothing else in the package reads ``os.environ`` for settings:
the command line builds one :class:`Settings` and hands it down.
"""

from __future__ import annotations

import argparse
import os
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


def add_reconciler_arguments(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """The flags of the commands that reconcile (agent and run)."""
    parser.add_argument(
        "--infra-image",
        default=_env(environ, "INFRA_IMAGE") or DEFAULT_INFRA_IMAGE,
        help="image of infra containers when a StoragePod names none (env PODSTORE_INFRA_IMAGE)",
    )
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
