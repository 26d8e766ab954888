"""StorageContainers applied without a node: given to the one agent whose node has their pod.

Each agent's kopf watch selects the containers labelled ``podstore.dev/node=<node>``
(children carry the label from birth). A container a user or a GitOps tool applies naming
only ``spec.podName`` has no label: every agent sees it here, on a watch of the unassigned
containers (``!podstore.dev/node``), and only the agent whose node has the pod acts:

- the pod is on this node: label the container with the node (a label the manifest does
  not set, added by another field manager: not drift for Argo CD or Flux); from then on it
  is in that agent's kopf watch only, and leaves every other agent's watch;
- the pod does not exist: write ``PodNotFound`` once, with the version read as a
  precondition (one agent wins, the others see the conflict and the status), no finalizer
  and no node; nothing is retried: the pod's creation is what brings it to its node
  (:func:`claim_for_pod`), so nothing is written while nothing changes and a deletion
  waits for nobody;
- the pod is on another node: nothing.

The watch's objects are kept by pod (what the LIST returned, then every event), so a new
pod finds its waiting containers without a request; only while the watch is not in step
(before its first LIST, after a failure) does a new pod LIST its own. What an agent holds
here scales with the unassigned containers, not with the cluster.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, MutableSet
from typing import Any

from controller.handlers import kube, release
from controller.handlers.health import ApiHealth, Backoff, describe
from controller.reconcile import status_patch
from controller.sync import Reconciler

log = logging.getLogger(__name__)

WATCH_TIMEOUT = 60


class Claims:
    """One agent's side of the unassigned containers."""

    def __init__(
        self,
        node: str,
        reconciler: Reconciler,
        own_pods: MutableSet[Any],
        health: ApiHealth | None = None,
    ) -> None:
        self.node = node
        self.health = health if health is not None else ApiHealth()  # what /healthz reads
        self.reconciler = reconciler
        self.own_pods = own_pods  # (namespace, name) of this node's StoragePods, from kopf
        self.stop = threading.Event()
        self.sweep_due = threading.Event()  # a release failed: look again at the next cycle
        self._stop_watch: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None
        # The unassigned containers as the watch has them: (namespace, podName) -> {name:
        # object}; ``_synced`` while it is in step with the API (listed, then watched).
        self._lock = threading.Lock()
        self._by_pod: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
        self._pod_of: dict[tuple[str, str], str] = {}
        self._synced = False

    # -- deciding -------------------------------------------------------------------------

    def consider(self, ctr: Mapping[str, Any]) -> str:
        """Act on one unassigned container; says what was done (for tests and logs)."""
        meta = ctr.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
        pod_name = (ctr.get("spec") or {}).get("podName")
        rv = str(meta.get("resourceVersion") or "")
        if meta.get("deletionTimestamp") or not isinstance(pod_name, str) or not pod_name:
            return "skipped"
        if (namespace, pod_name) not in self.own_pods:
            if (ctr.get("status") or {}).get("reason") == "PodNotFound":
                return "waiting"  # told already; its pod's creation brings it to its node
            pod = kube.get_pod(namespace, pod_name)
            if pod is not None:
                if (pod.get("spec") or {}).get("nodeName") != self.node:
                    return "other node"
            else:
                return "told" if self._tell_pod_not_found(ctr, namespace, name, rv) else "raced"
        if kube.label_container(namespace, name, rv, self.node):
            log.info("StorageContainer %s/%s is kept on node %s", namespace, name, self.node)
            return "claimed"
        return "raced"

    def _tell_pod_not_found(
        self, ctr: Mapping[str, Any], namespace: str, name: str, rv: str
    ) -> bool:
        outcome = self.reconciler.reconcile_container(ctr, None)
        if outcome is None:
            return False
        status = dict(outcome.status)
        status.pop("nodeName", None)  # no agent keeps it yet
        changes = status_patch(ctr.get("status") or {}, status)
        return not changes or kube.patch_container_status_if(namespace, name, rv, changes)

    def claim_for_pod(self, namespace: str, pod_name: str) -> list[str]:
        """Label the unassigned containers of one of this node's pods (when the pod appears).

        A container whose event comes after this is claimed by that event: the pod is in
        ``own_pods`` by then (kopf indexes an object before its handlers run)."""
        with self._lock:
            kept = self._by_pod.get((namespace, pod_name), {})
            items = list(kept.values()) if self._synced else None
        if items is None:
            items, _ = kube.list_unassigned(namespace, pod_name)
        return [self.consider(item) for item in items]

    # -- the watch's objects --------------------------------------------------------------

    def _relisted(self, items: list[Mapping[str, Any]]) -> None:
        with self._lock:
            self._by_pod.clear()
            self._pod_of.clear()
            for item in items:
                self._keep(item)
            self._synced = True

    def _seen(self, type_: str, obj: Mapping[str, Any]) -> None:
        with self._lock:
            if type_ == "DELETED":  # gone, or labelled for a node: out of the selection
                self._drop(obj)
            else:
                self._keep(obj)

    def _out_of_step(self) -> None:
        with self._lock:
            self._synced = False

    def _keep(self, obj: Mapping[str, Any]) -> None:
        self._drop(obj)
        meta = obj.get("metadata") or {}
        pod_name = (obj.get("spec") or {}).get("podName")
        if isinstance(pod_name, str) and pod_name:
            namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name"))
            self._by_pod.setdefault((namespace, pod_name), {})[name] = obj
            self._pod_of[(namespace, name)] = pod_name

    def _drop(self, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace") or "default"), str(meta.get("name")))
        pod_name = self._pod_of.pop(key, None)
        if pod_name is not None:
            kept = self._by_pod.get((key[0], pod_name), {})
            kept.pop(key[1], None)
            if not kept:
                self._by_pod.pop((key[0], pod_name), None)

    # -- watching -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="podstore-claims", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.stop.set()
        if self._stop_watch is not None:
            self._stop_watch()

    def _run(self) -> None:
        rv = ""
        backoff = Backoff()
        while not self.stop.is_set():
            try:
                if not rv:
                    self._out_of_step()
                    items, rv = kube.list_unassigned()
                    self._relisted(items)
                    self.health.ok()
                    backoff.ok()
                    for item in items:
                        self._consider_safely(item)
                    self.sweep_due.set()
                if self.sweep_due.is_set():
                    self.sweep_due.clear()
                    self._sweep_safely()
                events, self._stop_watch = kube.watch_unassigned(rv, WATCH_TIMEOUT)
                for type_, obj in events:
                    self.health.ok()
                    if self.stop.is_set():
                        break
                    if not isinstance(obj, Mapping):
                        continue
                    if type_ == "ERROR":
                        rv = ""  # expired: list again
                        self._out_of_step()
                        break
                    rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                    if type_ in ("ADDED", "MODIFIED", "DELETED"):
                        self._seen(type_, obj)
                    if type_ in ("ADDED", "MODIFIED"):
                        self._consider_safely(obj)
                else:  # the server held the watch to its end: it is there
                    self.health.ok()
            except Exception as err:  # the API went away: list again after a pause
                if self.stop.is_set():
                    break
                self._out_of_step()
                self.health.failed("watching StorageContainers", err)
                delay = backoff.failed()
                log.warning(
                    "watch of unassigned StorageContainers failed (%s); again in %.0fs",
                    describe(err),
                    delay,
                )
                rv = ""
                self.stop.wait(delay)

    def _sweep_safely(self) -> None:
        """Listing from scratch: events may have been missed, moved containers among them."""
        try:
            release.sweep(self.reconciler, self.node)
        except Exception as err:
            self.sweep_due.set()
            log.warning("looking for StorageContainers moved off node %s: %s", self.node, err)

    def _consider_safely(self, ctr: Mapping[str, Any]) -> None:
        try:
            self.consider(ctr)
        except Exception as err:
            name = (ctr.get("metadata") or {}).get("name")
            log.warning("unassigned StorageContainer %s: %s", name, err)
            time.sleep(0.1)
