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

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from controller.handlers.access import uses
from controller.reconcile import model

log = logging.getLogger(__name__)


class _Client:
    lock = threading.Lock()
    api: client.ApiClient | None = None
    kubeconfig: str = ""


def configure(kubeconfig: str = "") -> client.Configuration:
    """Load credentials: the given kubeconfig, else in-cluster, else the default kubeconfig."""
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
    with _Client.lock:
        if _Client.api is not None:
            _Client.api.close()
        _Client.api = client.ApiClient(configuration)
        _Client.kubeconfig = kubeconfig
    return configuration


def api_client() -> client.ApiClient:
    """The API client that :func:`configure` made (made with defaults on first use)."""
    with _Client.lock:
        api = _Client.api
    return api if api is not None else client.ApiClient(configure())


def connection_info() -> dict[str, Any]:
    """The client's credentials, as the fields of kopf's ConnectionInfo."""
    cfg = api_client().configuration
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix(
        "authorization"
    )
    scheme, _, token = (header or "").rpartition(" ")
    return {
        "server": cfg.host,
        "ca_path": cfg.ssl_ca_cert,
        "insecure": not cfg.verify_ssl,
        "username": cfg.username or None,
        "password": cfg.password or None,
        "scheme": scheme or None,
        "token": token or None,
        "certificate_path": cfg.cert_file,
        "private_key_path": cfg.key_file,
    }


def reset_client() -> None:
    """Forget the client (tests point the agent at a new emulator)."""
    with _Client.lock:
        if _Client.api is not None:
            _Client.api.close()
        _Client.api = None


def _custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client())


@uses("", "secrets", "get")
def docker_config(namespace: str, name: str) -> Mapping[str, Any] | None:
    """The registry credentials in an image pull secret; None when absent or unusable."""
    try:
        secret = client.CoreV1Api(api_client()).read_namespaced_secret(name, namespace)
    except ApiException as err:
        if err.status in (403, 404):
            log.warning("image pull secret %s/%s: HTTP %s", namespace, name, err.status)
            return None
        raise
    data = secret.data or {}
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
        _custom().create_namespaced_custom_object(
            model.GROUP, model.VERSION, namespace, model.CONTAINER_PLURAL, dict(body)
        )
    except ApiException as err:
        if err.status != 409:  # made by an earlier pass already
            raise


@uses(model.GROUP, model.CONTAINER_PLURAL, "patch")
def patch_container_spec(namespace: str, name: str, spec_patch: Mapping[str, Any]) -> None:
    _custom().patch_namespaced_custom_object(
        model.GROUP,
        model.VERSION,
        namespace,
        model.CONTAINER_PLURAL,
        name,
        {"spec": dict(spec_patch)},
    )


@uses(model.GROUP, model.CONTAINER_PLURAL, "delete")
def delete_container(namespace: str, name: str) -> None:
    try:
        _custom().delete_namespaced_custom_object(
            model.GROUP, model.VERSION, namespace, model.CONTAINER_PLURAL, name
        )
    except ApiException as err:
        if err.status != 404:
            raise


@uses(model.GROUP, model.POD_PLURAL, "get")
def get_pod(namespace: str, name: str) -> Mapping[str, Any] | None:
    """A StoragePod as the API has it now; None when it does not exist."""
    try:
        found: Any = _custom().get_namespaced_custom_object(
            model.GROUP, model.VERSION, namespace, model.POD_PLURAL, name
        )
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return found if isinstance(found, Mapping) else None


@uses(model.GROUP, f"{model.POD_PLURAL}/status", "patch")
def patch_pod_status(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    try:
        _custom().patch_namespaced_custom_object_status(
            model.GROUP, model.VERSION, namespace, model.POD_PLURAL, name, {"status": dict(status)}
        )
    except ApiException as err:
        if err.status != 404:
            raise


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
    items: Any = _custom().list_cluster_custom_object(
        model.GROUP, model.VERSION, model.POD_PLURAL, field_selector=pod_field_selector(node)
    )
    return {str(i["metadata"]["uid"]) for i in items.get("items", [])}


@uses(model.GROUP, model.CONTAINER_PLURAL, "list")
def list_container_uids(node: str) -> set[str]:
    """The UIDs of one node's StorageContainers and of the unassigned ones."""
    uids: set[str] = set()
    for selector in (container_label_selector(node), UNASSIGNED):
        items: Any = _custom().list_cluster_custom_object(
            model.GROUP, model.VERSION, model.CONTAINER_PLURAL, label_selector=selector
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
    if namespace is None:
        found = _custom().list_cluster_custom_object(
            model.GROUP, model.VERSION, model.CONTAINER_PLURAL, label_selector=UNASSIGNED
        )
    else:
        found = _custom().list_namespaced_custom_object(
            model.GROUP,
            model.VERSION,
            namespace,
            model.CONTAINER_PLURAL,
            label_selector=UNASSIGNED,
            field_selector=fields,
        )
    return _items_and_version(found)


@uses(model.GROUP, model.CONTAINER_PLURAL, "watch")
def watch_unassigned(resource_version: str, timeout: int) -> Any:
    """A watch on the unassigned StorageContainers: an iterator of (type, object), and its stop."""
    w = watch.Watch()
    stream = w.stream(
        _custom().list_cluster_custom_object,
        model.GROUP,
        model.VERSION,
        model.CONTAINER_PLURAL,
        label_selector=UNASSIGNED,
        resource_version=resource_version,
        timeout_seconds=timeout,
        allow_watch_bookmarks=True,
    )
    return ((e.get("type"), e.get("object")) for e in stream), w.stop


@uses(model.GROUP, model.CONTAINER_PLURAL, "patch")
def label_container(namespace: str, name: str, resource_version: str, node: str) -> bool:
    """Give a StorageContainer to one node's agent; False when it changed or is gone meanwhile."""
    body = {"metadata": {"resourceVersion": resource_version, "labels": {model.LABEL_NODE: node}}}
    try:
        _custom().patch_namespaced_custom_object(
            model.GROUP, model.VERSION, namespace, model.CONTAINER_PLURAL, name, body
        )
    except ApiException as err:
        if err.status in (404, 409):
            return False
        raise
    return True


@uses(model.GROUP, f"{model.CONTAINER_PLURAL}/status", "patch")
def patch_container_status_if(
    namespace: str, name: str, resource_version: str, status: Mapping[str, Any]
) -> bool:
    """Write a status only onto the version read; False when another writer came first."""
    body = {"metadata": {"resourceVersion": resource_version}, "status": dict(status)}
    try:
        _custom().patch_namespaced_custom_object_status(
            model.GROUP, model.VERSION, namespace, model.CONTAINER_PLURAL, name, body
        )
    except ApiException as err:
        if err.status in (404, 409):
            return False
        raise
    return True


# -- image GC -----------------------------------------------------------------------------


@uses(model.GROUP, model.POD_PLURAL, "list")
@uses(model.GROUP, model.CONTAINER_PLURAL, "list")
def list_node_objects(node: str) -> list[Mapping[str, Any]]:
    """This node's StoragePods and StorageContainers (what image GC must not undercut)."""
    pods: Any = _custom().list_cluster_custom_object(
        model.GROUP, model.VERSION, model.POD_PLURAL, field_selector=pod_field_selector(node)
    )
    containers: Any = _custom().list_cluster_custom_object(
        model.GROUP,
        model.VERSION,
        model.CONTAINER_PLURAL,
        label_selector=container_label_selector(node),
    )
    found = [*pods.get("items", []), *containers.get("items", [])]
    return [i for i in found if isinstance(i, Mapping)]


# Node events go where the kubelet posts its own: the default namespace.
NODE_EVENT_NAMESPACE = "default"


@uses("", "events", "create")
def post_node_event(node: str, type_: str, reason: str, message: str) -> None:
    """An Event about the Node, as the kubelet posts ImageGCFailed (``kubectl describe node``)."""
    now = dt.datetime.now(dt.UTC)
    body: Any = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{node}.{uuid.uuid4().hex[:16]}", "namespace": NODE_EVENT_NAMESPACE},
        # The kubelet gives a node's events the node's name as its UID, too.
        "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node},
        "reason": reason,
        "message": message[:1024],
        "type": type_,
        "source": {"component": "podstore-agent", "host": node},
        "reportingComponent": "podstore-agent",
        "reportingInstance": node,
        "firstTimestamp": now.isoformat().replace("+00:00", "Z"),
        "lastTimestamp": now.isoformat().replace("+00:00", "Z"),
        "count": 1,
    }
    client.CoreV1Api(api_client()).create_namespaced_event(NODE_EVENT_NAMESPACE, body)


# -- pre-pull: StorageImage (cluster-scoped) ------------------------------------------------

IMAGE_PLURAL = "storageimages"


@uses("", "nodes", "get")
def node_labels(node: str) -> dict[str, str]:
    """The labels of this agent's own Node (what a StorageImage's nodeSelector matches)."""
    found = client.CoreV1Api(api_client()).read_node(node)
    return dict((found.metadata.labels if found.metadata else None) or {})


@uses(model.GROUP, IMAGE_PLURAL, "get")
def get_storage_image(name: str) -> Mapping[str, Any] | None:
    try:
        found: Any = _custom().get_cluster_custom_object(
            model.GROUP, model.VERSION, IMAGE_PLURAL, name
        )
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
        _custom().patch_cluster_custom_object_status(
            model.GROUP, model.VERSION, IMAGE_PLURAL, name, body
        )
    except ApiException as err:
        if err.status == 409:
            return False
        raise
    return True
