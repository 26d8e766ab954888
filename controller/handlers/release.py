"""A StorageContainer moved to another node by hand: its old node's agent lets it go.

Each agent watches the StorageContainers labelled ``podstore.dev/node=<node>``. When
someone changes that label, the object leaves the old agent's watch: the API server
sends that agent a ``DELETED`` event for it (as it does for every object that stops
matching a watch's selector), although the object still exists, with the old agent's
finalizer ``podstore.dev/storage-<old node>`` on it. Nobody else may take that
finalizer off, and the old agent would never see the object again: its deletion would
wait for ever, and the old node's store would keep its container.

So, on such an event (:func:`moved_away`), the old agent removes the container's storage
and then its own finalizer (:func:`drop_finalizer`), writing the finalizer list only onto
the version it read (another agent may be adding its own finalizer at the same moment),
reading the object again after a conflict. The new node's agent takes it from there.

An agent that was not watching when the label changed (stopped, or cut off from the API
server) never gets that event. :func:`sweep` covers it: whenever the agent lists again
from scratch (at start, after losing the API server; and within a minute of a release
that failed, as kopf never calls an event handler again), the storage containers of this node
whose object is not in the node's share are looked up by name, one GET each (only those:
usually none), and released the same way if their object was moved.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from controller.handlers import kube
from controller.reconcile import model
from controller.sync import Reconciler

log = logging.getLogger(__name__)

#: Conflicting writes tolerated before giving up (each one means the object changed).
ATTEMPTS = 5


def moved_away(event_type: str | None, body: Mapping[str, Any], node: str) -> bool:
    """A watch event saying the object left this node's share while still holding its finalizer."""
    meta = body.get("metadata") or {}
    label = (meta.get("labels") or {}).get(model.LABEL_NODE)
    return (
        event_type == "DELETED"
        and label != node
        and model.finalizer_for(node) in (meta.get("finalizers") or [])
    )


def drop_finalizer(body: Mapping[str, Any], node: str) -> bool:
    """Take this node's finalizer off the object; False when it was gone or not ours."""
    ours = model.finalizer_for(node)
    meta = body.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
    uid = meta.get("uid")
    current: Mapping[str, Any] | None = body
    for _ in range(ATTEMPTS):
        cmeta = (current or {}).get("metadata") or {}
        finalizers = list(cmeta.get("finalizers") or [])
        if current is None or cmeta.get("uid") != uid or ours not in finalizers:
            return False
        left = [f for f in finalizers if f != ours]
        rv = str(cmeta.get("resourceVersion") or "")
        if kube.set_container_finalizers_if(namespace, name, rv, left):
            log.info(
                "StorageContainer %s/%s moved to node %s: released by node %s",
                namespace,
                name,
                ((cmeta.get("labels") or {}).get(model.LABEL_NODE)) or "<none>",
                node,
            )
            return True
        current = kube.get_container(namespace, name)
    log.warning(
        "StorageContainer %s/%s: could not release finalizer %s (the object kept changing)",
        namespace,
        name,
        ours,
    )
    return False


def sweep(reconciler: Reconciler, node: str) -> list[str]:
    """Release the moved objects whose event this agent missed; returns their names."""
    view = reconciler.view
    view.refresh()
    kept = view.where(
        **{
            model.LABEL_SOURCE: reconciler.source,
            model.LABEL_NODE: node,
            model.LABEL_KIND: model.CONTAINER_KIND,
        }
    )
    if not kept:
        return []
    live = kube.list_container_uids(node)
    released: list[str] = []
    for container in kept:
        labels = container.metadata.labels
        uid = labels.get(model.LABEL_UID, "")
        namespace, name = labels.get(model.LABEL_NAMESPACE), labels.get(model.LABEL_NAME)
        if uid in live or not namespace or not name:
            continue
        obj = kube.get_container(namespace, name)
        if obj is None or (obj.get("metadata") or {}).get("uid") != uid:
            continue  # gone: the orphan pass removes its storage
        if not moved_away("DELETED", obj, node):
            continue
        reconciler.delete_container(obj)
        if drop_finalizer(obj, node):
            released.append(f"{namespace}/{name}")
    return released
