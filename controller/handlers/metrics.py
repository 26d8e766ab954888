"""Prometheus metrics of the agent, served on their own port.

Reconciles (count and duration by kind and result), image pulls (count by
result, bytes pulled), storage commands (count and duration by tool, verb
and result, told by the storage layer's command observer) and managed
containers by phase.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from controller.storage.command import CommandEvent, add_observer
from controller.storage.images import PullEvent, add_pull_observer

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "podstore_reconciles",
    "Reconciles of podstore objects, by kind and result.",
    ["kind", "result"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "podstore_reconcile_duration_seconds",
    "How long a reconcile took, by kind.",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
PULLS = Counter(
    "podstore_image_pulls",
    "Image pulls, by result.",
    ["result"],
    registry=REGISTRY,
)
PULL_BYTES = Counter(
    "podstore_image_pull_bytes",
    "Bytes of images pulled into the store (compressed size of each pulled image's layers).",
    registry=REGISTRY,
)
STORAGE_OPS = Counter(
    "podstore_storage_operations",
    "Commands run against containers/storage and containers/image, by tool, verb and result.",
    ["tool", "verb", "result"],
    registry=REGISTRY,
)
STORAGE_SECONDS = Histogram(
    "podstore_storage_operation_duration_seconds",
    "How long storage commands took, by tool and verb.",
    ["tool", "verb"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120),
    registry=REGISTRY,
)
MANAGED = Gauge(
    "podstore_managed_containers",
    "Containers podstore keeps on this node, by phase.",
    ["phase"],
    registry=REGISTRY,
)
GONE = Gauge(
    "podstore_gone_objects",
    "Objects kopf still holds that the API server no longer has (their resyncs are ignored).",
    registry=REGISTRY,
)
IMAGE_GC_REMOVED = Counter(
    "podstore_image_gc_removed",
    "Images removed by image garbage collection.",
    registry=REGISTRY,
)
IMAGE_GC_BYTES = Counter(
    "podstore_image_gc_bytes",
    "Bytes image garbage collection expected to free by its removals (layer sizes on disk).",
    registry=REGISTRY,
)
IMAGE_FS_USAGE = Gauge(
    "podstore_image_fs_usage_ratio",
    "How full the filesystem holding the store's graph root is, from 0 to 1.",
    registry=REGISTRY,
)


def _observe(event: CommandEvent) -> None:
    result = "ok" if event.ok else "error"
    STORAGE_OPS.labels(event.tool, event.verb, result).inc()
    STORAGE_SECONDS.labels(event.tool, event.verb).observe(event.seconds)


def _observe_pull(event: PullEvent) -> None:
    PULLS.labels("ok" if event.ok else "error").inc()
    PULL_BYTES.inc(event.bytes)


def install(port: int, address: str) -> None:
    """Count storage commands, and serve /metrics on ``address:port`` (0: don't serve)."""
    add_observer(_observe)
    add_pull_observer(_observe_pull)
    if port:
        start_http_server(port, addr=address, registry=REGISTRY)
        log.info("metrics on http://%s:%d/metrics", address, port)
