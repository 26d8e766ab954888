"""The agent's own Kubernetes API calls (kopf makes the others).

Each function makes one call and declares it with :func:`uses`, which is
where the agent's RBAC comes from. Secrets are read one by one by name
(``get``), never listed or watched, and their content never reaches a log.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import threading
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from controller.handlers.access import uses
from controller.handlers.apiclient import ApiClient, ApiError, Credentials, load
from controller.reconcile import model

log = logging.getLogger(__name__)

# Kept for callers that caught the kubernetes package's error: the same ``status``.
ApiException = ApiError
MERGE_PATCH = "application/merge-patch+json"


class _Client:
    lock = threading.Lock()
    api: ApiClient | None = None
    kubeconfig: str = ""


def configure(kubeconfig: str = "") -> Credentials:
    """Load credentials: the given kubeconfig, else in-cluster, else the default kubeconfig."""
    credentials = load(kubeconfig)
    with _Client.lock:
        if _Client.api is not None:
            _Client.api.close()
        _Client.api = ApiClient(credentials)
        _Client.kubeconfig = kubeconfig
    return credentials


def api_client() -> ApiClient:
    """The API client that :func:`configure` made (made with defaults on first use)."""
    with _Client.lock:
        api = _Client.api
    if api is not None:
        return api
    configure()
    with _Client.lock:
        assert _Client.api is not None  # noqa: S101 - configure() just set it
        return _Client.api


def connection_info() -> dict[str, Any]:
    """The client's credentials, as the fields of kopf's ConnectionInfo."""
    return api_client().credentials.connection_info()


def reset_client() -> None:
    """Forget the client (tests point the agent at a new emulator)."""
    with _Client.lock:
        if _Client.api is not None:
            _Client.api.close()
        _Client.api = None


def _path(namespace: str | None, plural: str, name: str = "", sub: str = "") -> str:
    """The URL path of a podstore.dev resource (all of a kind when ``namespace`` is None)."""
    path = f"/apis/{model.GROUP}/{model.VERSION}"
    if namespace is not None:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{plural}"
    if name:
        path += f"/{quote(name, safe='')}"
    if sub:
        path += f"/{sub}"
    return path


@uses("", "secrets", "get")
def docker_config(namespace: str, name: str) -> Mapping[str, Any] | None:
    """The registry credentials in an image pull secret; None when absent or unusable."""
    try:
        secret = api_client().request(
            "GET", f"/api/v1/namespaces/{quote(namespace, safe='')}/secrets/{quote(name, safe='')}"
        )
    except ApiException as err:
        if err.status in (403, 404):
            log.warning("image pull secret %s/%s: HTTP %s", namespace, name, err.status)
            return None
        raise
    data = (secret.get("data") if isinstance(secret, Mapping) else None) or {}
    raw = data.get(".dockerconfigjson") or data.get(".dockercfg")
    if not raw:
        log.warning("image pull secret %s/%s holds no docker config", namespace, name)
        return None
    try:
        parsed = json.loads(base64.b64decode(raw))
    except (binascii.Error, ValueError):
        log.warning("image pull secret %s/%s is not valid JSON", namespace, name)
        return None
    return parsed if isinstance(parsed, Mapping) else None


@uses(model.GROUP, model.CONTAINER_PLURAL, "create")
# Children carry an ownerReference with blockOwnerDeletion, which clusters with the
# OwnerReferencesPermissionEnforcement admission plugin allow only with this.
@uses(model.GROUP, f"{model.POD_PLURAL}/finalizers", "update")
def create_container(body: Mapping[str, Any]) -> None:
    namespace = body["metadata"]["namespace"]
    try:
        api_client().request("POST", _path(namespace, model.CONTAINER_PLURAL), body=dict(body))
    except ApiException as err:
        if err.status != 409:  # made by an earlier pass already
            raise


@uses(model.GROUP, model.CONTAINER_PLURAL, "patch")
def patch_container_spec(namespace: str, name: str, spec_patch: Mapping[str, Any]) -> None:
    api_client().request(
        "PATCH",
        _path(namespace, model.CONTAINER_PLURAL, name),
        body={"spec": dict(spec_patch)},
        content_type=MERGE_PATCH,
    )


@uses(model.GROUP, model.CONTAINER_PLURAL, "delete")
def delete_container(namespace: str, name: str) -> None:
    try:
        api_client().request("DELETE", _path(namespace, model.CONTAINER_PLURAL, name))
    except ApiException as err:
        if err.status != 404:
            raise


@uses(model.GROUP, model.POD_PLURAL, "get")
def get_pod(namespace: str, name: str) -> Mapping[str, Any] | None:
    """A StoragePod as the API has it now; None when it does not exist."""
    try:
        found: Any = api_client().request("GET", _path(namespace, model.POD_PLURAL, name))
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return found if isinstance(found, Mapping) else None


@uses(model.GROUP, f"{model.POD_PLURAL}/status", "patch")
def patch_pod_status(namespace: str, name: str, status: Mapping[str, Any]) -> str:
    """Merge ``status`` into the pod's; the resulting resourceVersion ("" if it is gone)."""
    done = _patched(_path(namespace, model.POD_PLURAL, name, "status"), {"status": status})
    return str(((done or {}).get("metadata") or {}).get("resourceVersion") or "")


# -- the node's share of the cluster: what this agent lists and watches ----------------------


def pod_field_selector(node: str) -> str:
    """The StoragePods of one node, as the API server selects them (like the kubelet's)."""
    return f"spec.nodeName={node}"


def container_label_selector(node: str) -> str:
    """The StorageContainers kept by one node's agent."""
    return f"{model.LABEL_NODE}={node}"


# StorageContainers that no agent keeps yet: applied without the node label.
UNASSIGNED = f"!{model.LABEL_NODE}"


def _items_and_version(found: Any) -> tuple[list[Mapping[str, Any]], str]:
    items = [i for i in found.get("items", []) if isinstance(i, Mapping)]
    return items, str((found.get("metadata") or {}).get("resourceVersion") or "")


@uses(model.GROUP, model.POD_PLURAL, "list")
def list_pod_uids(node: str) -> set[str]:
    """The UIDs of one node's StoragePods."""
    items: Any = api_client().request(
        "GET", _path(None, model.POD_PLURAL), query={"fieldSelector": pod_field_selector(node)}
    )
    return {str(i["metadata"]["uid"]) for i in items.get("items", [])}


@uses(model.GROUP, model.POD_PLURAL, "list")
def ping(node: str, timeout: float = 10.0) -> None:
    """One small call the agent needs to work: a page of one of its node's StoragePods.

    Raises what the call raised (no credentials, refused, unreachable, not allowed).
    """
    api_client().request(
        "GET",
        _path(None, model.POD_PLURAL),
        query={"fieldSelector": pod_field_selector(node), "limit": 1},
        timeout=timeout,
    )


@uses(model.GROUP, model.CONTAINER_PLURAL, "list")
def list_container_uids(node: str) -> set[str]:
    """The UIDs of one node's StorageContainers and of the unassigned ones."""
    uids: set[str] = set()
    for selector in (container_label_selector(node), UNASSIGNED):
        items: Any = api_client().request(
            "GET", _path(None, model.CONTAINER_PLURAL), query={"labelSelector": selector}
        )
        uids |= {str(i["metadata"]["uid"]) for i in items.get("items", [])}
    return uids


@uses(model.GROUP, model.CONTAINER_PLURAL, "list")
def list_unassigned(
    namespace: str | None = None, pod_name: str | None = None
) -> tuple[list[Mapping[str, Any]], str]:
    """StorageContainers without the node label (of one pod, when named) and the list's version."""
    fields = f"spec.podName={pod_name}" if pod_name else ""
    found: Any
    found = api_client().request(
        "GET",
        _path(namespace, model.CONTAINER_PLURAL),
        query={"labelSelector": UNASSIGNED, "fieldSelector": fields},
    )
    return _items_and_version(found)


@uses(model.GROUP, model.CONTAINER_PLURAL, "watch")
def watch_unassigned(resource_version: str, timeout: int) -> Any:
    """A watch on the unassigned StorageContainers: an iterator of (type, object), and its stop."""
    stream, stop = api_client().watch(
        _path(None, model.CONTAINER_PLURAL),
        {
            "labelSelector": UNASSIGNED,
            "resourceVersion": resource_version,
            "timeoutSeconds": timeout,
            "allowWatchBookmarks": "true",
        },
        timeout,
    )
    return ((e.get("type"), e.get("object")) for e in stream), stop


def _merge_patch(path: str, body: Mapping[str, Any], *, gone_ok: bool = True) -> bool:
    """One merge patch; False when the object is gone (404) or, with a ``resourceVersion``
    in ``body``, changed meanwhile (409): the caller reads it again or lets it be."""
    return _patched(path, body, gone_ok=gone_ok) is not None


def _patched(
    path: str, body: Mapping[str, Any], *, gone_ok: bool = True
) -> Mapping[str, Any] | None:
    """:func:`_merge_patch`, returning the object the API server answered with (None when
    it is gone or changed meanwhile)."""
    try:
        done: Any = api_client().request("PATCH", path, body=dict(body), content_type=MERGE_PATCH)
    except ApiException as err:
        if err.status == 404 and gone_ok:
            return None
        if err.status == 409 and "resourceVersion" in (body.get("metadata") or {}):
            return None
        raise
    return done if isinstance(done, Mapping) else {}


@uses(model.GROUP, model.CONTAINER_PLURAL, "patch")
def label_container(namespace: str, name: str, resource_version: str, node: str) -> bool:
    """Give a StorageContainer to one node's agent; False when it changed or is gone meanwhile."""
    body = {"metadata": {"resourceVersion": resource_version, "labels": {model.LABEL_NODE: node}}}
    return _merge_patch(_path(namespace, model.CONTAINER_PLURAL, name), body)


@uses(model.GROUP, f"{model.CONTAINER_PLURAL}/status", "patch")
def patch_container_status(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """Write a StorageContainer's status (one that is not the object being handled)."""
    _merge_patch(_path(namespace, model.CONTAINER_PLURAL, name, "status"), {"status": status})


@uses(model.GROUP, f"{model.CONTAINER_PLURAL}/status", "patch")
def patch_container_status_if(
    namespace: str, name: str, resource_version: str, status: Mapping[str, Any]
) -> bool:
    """Write a status only onto the version read; False when another writer came first."""
    body = {"metadata": {"resourceVersion": resource_version}, "status": dict(status)}
    return _merge_patch(_path(namespace, model.CONTAINER_PLURAL, name, "status"), body)


@uses(model.GROUP, model.CONTAINER_PLURAL, "get")
def get_container(namespace: str, name: str) -> Mapping[str, Any] | None:
    """A StorageContainer as the API has it now; None when it does not exist."""
    try:
        found: Any = api_client().request("GET", _path(namespace, model.CONTAINER_PLURAL, name))
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return found if isinstance(found, Mapping) else None


@uses(model.GROUP, model.CONTAINER_PLURAL, "patch")
def set_container_finalizers_if(
    namespace: str, name: str, resource_version: str, finalizers: list[str]
) -> bool:
    """Replace the finalizers only on the version read; False when it changed or is gone."""
    body = {"metadata": {"resourceVersion": resource_version, "finalizers": finalizers}}
    return _merge_patch(_path(namespace, model.CONTAINER_PLURAL, name), body)


# -- image GC -----------------------------------------------------------------------------


@uses(model.GROUP, model.POD_PLURAL, "list")
@uses(model.GROUP, model.CONTAINER_PLURAL, "list")
def list_node_objects(node: str) -> list[Mapping[str, Any]]:
    """This node's StoragePods and StorageContainers (what image GC must not undercut)."""
    pods: Any = api_client().request(
        "GET", _path(None, model.POD_PLURAL), query={"fieldSelector": pod_field_selector(node)}
    )
    containers: Any = api_client().request(
        "GET",
        _path(None, model.CONTAINER_PLURAL),
        query={"labelSelector": container_label_selector(node)},
    )
    found = [*pods.get("items", []), *containers.get("items", [])]
    return [i for i in found if isinstance(i, Mapping)]


# Node events go where the kubelet posts its own: the default namespace.
NODE_EVENT_NAMESPACE = "default"


@uses("", "events", "create")
def post_node_event(node: str, type_: str, reason: str, message: str) -> None:
    """An Event about the Node, as the kubelet posts ImageGCFailed (``kubectl describe node``)."""
    # The kubelet gives a node's events the node's name as its UID, too.
    involved = {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node}
    _post_event(NODE_EVENT_NAMESPACE, node, involved, node, type_, reason, message)


@uses("", "events", "create")
def post_object_event(
    obj: Mapping[str, Any],
    node: str,
    type_: str,
    reason: str,
    message: str,
    *,
    count: int = 1,
    first: dt.datetime | None = None,
    last: dt.datetime | None = None,
) -> None:
    """An Event about a namespaced object; ``count`` times between ``first`` and ``last``
    (the same event seen again before it was posted, as the kubelet counts them)."""
    meta = obj.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
    involved = {
        "apiVersion": obj.get("apiVersion") or f"{model.GROUP}/{model.VERSION}",
        "kind": obj.get("kind") or "",
        "name": name,
        "namespace": namespace,
        "uid": str(meta.get("uid") or ""),
    }
    _post_event(
        namespace,
        name,
        {k: v for k, v in involved.items() if v},
        node,
        type_,
        reason,
        message,
        count=count,
        first=first,
        last=last,
    )


def _post_event(
    namespace: str,
    about: str,
    involved: Mapping[str, str],
    node: str,
    type_: str,
    reason: str,
    message: str,
    *,
    count: int = 1,
    first: dt.datetime | None = None,
    last: dt.datetime | None = None,
) -> None:
    now = dt.datetime.now(dt.UTC)
    body: Any = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{about}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
        "involvedObject": dict(involved),
        "reason": reason,
        "message": message[:1024],
        "type": type_,
        "source": {"component": "podstore-agent", "host": node},
        "reportingComponent": "podstore-agent",
        "reportingInstance": node,
        "firstTimestamp": _timestamp(first or now),
        "lastTimestamp": _timestamp(last or first or now),
        "count": count,
    }
    api_client().request("POST", f"/api/v1/namespaces/{namespace}/events", body=body)


def _timestamp(when: dt.datetime) -> str:
    """RFC 3339 in UTC with seconds, as the API server keeps Event timestamps."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- pre-pull: StorageImage (cluster-scoped) ------------------------------------------------

IMAGE_PLURAL = model.IMAGE_PLURAL


@uses("", "nodes", "get")
def node_labels(node: str) -> dict[str, str]:
    """The labels of this agent's own Node (what a StorageImage's nodeSelector matches)."""
    found: Any = api_client().request("GET", f"/api/v1/nodes/{quote(node, safe='')}")
    labels = (
        ((found or {}).get("metadata") or {}).get("labels") if isinstance(found, Mapping) else None
    )
    return {str(k): str(v) for k, v in (labels or {}).items()}


@uses(model.GROUP, IMAGE_PLURAL, "get")
def get_storage_image(name: str) -> Mapping[str, Any] | None:
    try:
        found: Any = api_client().request("GET", _path(None, IMAGE_PLURAL, name))
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return found if isinstance(found, Mapping) else None


@uses(model.GROUP, f"{IMAGE_PLURAL}/status", "patch")
def patch_storage_image_nodes(name: str, resource_version: str, nodes: list[Any]) -> bool:
    """Write status.nodes onto the version read; False when another writer came first.

    A merge patch replaces a list whole, so the precondition is what keeps another
    node's entry: a concurrent write changes the resourceVersion and this one is refused
    (409), read again and redone by the caller."""
    body = {"metadata": {"resourceVersion": resource_version}, "status": {"nodes": nodes}}
    try:
        api_client().request(
            "PATCH",
            _path(None, IMAGE_PLURAL, name, "status"),
            body=body,
            content_type=MERGE_PATCH,
        )
    except ApiException as err:
        if err.status == 409:
            return False
        raise
    return True
