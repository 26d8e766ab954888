"""The one source of podstore's API: every kind, field, default and allowed value.

kubebuilder's lesson in Python: the CRDs in ``crds/`` (and their copies in the
chart, the plain manifests and the package) are generated from this module by
``make crds`` (:mod:`controller.api.crdgen`), and ``tests/deploy/test_crds_in_sync.py``
fails when they drift. The parsers in ``controller.reconcile.model`` read their
defaults and allowed values from here too, so a new optional field of a
container is written once, in :data:`CONTAINER_TEMPLATE`, and both kinds
(a StorageContainer's spec, a StoragePod's ``spec.containers[]``) get it.

Plain data, no imports from the rest of podstore.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

GROUP: Final = "podstore.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
POD_KIND: Final = "StoragePod"
CONTAINER_KIND: Final = "StorageContainer"
IMAGE_KIND: Final = "StorageImage"
POD_PLURAL: Final = "storagepods"
CONTAINER_PLURAL: Final = "storagecontainers"
IMAGE_PLURAL: Final = "storageimages"

JSON = dict[str, Any]

_DNS1123_SUBDOMAIN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_DNS1123_LABEL: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_CAMEL_REASON: Final = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
PULL_POLICIES: Final = ("Always", "IfNotPresent", "Never")
STATES: Final = ("Started", "Stopped")
POD_PHASES: Final = ("Pending", "Ready", "Failed", "Terminating")
CONTAINER_PHASES: Final = ("Pending", "Created", "Started", "Stopped", "Failed", "Terminating")


def _string(description: str, **rules: Any) -> JSON:
    return {"type": "string", "description": description, **rules}


def _strings(description: str, max_items: int) -> JSON:
    return {
        "type": "array",
        "description": description,
        "maxItems": max_items,
        "x-kubernetes-list-type": "atomic",
        "items": {"type": "string"},
    }


def _time(description: str) -> JSON:
    return {"type": "string", "format": "date-time", "description": description}


def _generation(description: str) -> JSON:
    return {"type": "integer", "format": "int64", "description": description, "minimum": 0}


def _immutable(field: str, what: str) -> list[JSON]:
    return [{"rule": "self == oldSelf", "message": f"{field} is immutable; {what}"}]


# -- the container template: a StorageContainer's spec and a StoragePod's spec.containers[] --

#: The fields of a container, in the order the CRDs list them. A new optional field of
#: a container goes here (and, typed, into ``controller.reconcile.model.ContainerSpec``).
CONTAINER_TEMPLATE: Final[Mapping[str, JSON]] = {
    "image": _string(
        "The image reference, e.g. registry.example.com/busybox:1.36.",
        minLength=1,
        maxLength=1024,
    ),
    "imageID": _string(
        "The image ID (sha256:<64 hex> or 64 hex); it wins over image when present.",
        pattern=r"^(sha256:)?[a-f0-9]{64}$",
    ),
    "imagePullPolicy": _string(
        "When to pull the image.", enum=list(PULL_POLICIES), default="IfNotPresent"
    ),
    "command": _strings("Replaces the image's Entrypoint.", 256),
    "args": _strings("Replaces the image's Cmd.", 4096),
    "env": {
        "type": "array",
        "description": "Environment variables, merged over the image's Env.",
        "maxItems": 1024,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "items": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": _string(
                    "The variable's name.",
                    minLength=1,
                    maxLength=256,
                    pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$",
                ),
                "value": _string("The variable's value; empty when absent."),
            },
        },
    },
    "workingDir": _string(
        "An absolute path; replaces the image's WorkingDir.", maxLength=4096, pattern="^/"
    ),
    "mountLabel": _string(
        "The SELinux label for the container's mount "
        "(e.g. system_u:object_r:container_file_t:s0:c1,c2).",
        maxLength=1024,
    ),
    "state": _string(
        "Started to keep the container's layer mounted and its run config rendered; "
        "Stopped to unmount it.",
        enum=list(STATES),
        default="Started",
    ),
    "labels": {
        "type": "object",
        "description": "Labels copied into the storage container's metadata (its labels), "
        "for the tools that read the store (podstore ps -l KEY=VALUE). Keys are Kubernetes "
        "label keys; podstore.dev/ ones are podstore's own and are refused.",
        "maxProperties": 64,
        "additionalProperties": {"type": "string", "maxLength": 63},
    },
}

_CONDITIONS_ITEM: Final[JSON] = {
    "type": "object",
    "required": ["type", "status", "lastTransitionTime", "reason", "message"],
    "properties": {
        "type": _string(
            "The condition's type, in CamelCase or foo.example.com/CamelCase.",
            maxLength=316,
            pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
            r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        ),
        "status": _string("Whether the condition holds.", enum=["True", "False", "Unknown"]),
        "observedGeneration": _generation("The .metadata.generation the condition was set upon."),
        "lastTransitionTime": _time("When the condition last changed its status."),
        "reason": _string(
            "A programmatic identifier of the last transition's cause, in CamelCase.",
            minLength=1,
            maxLength=1024,
            pattern=_CAMEL_REASON,
        ),
        "message": _string(
            "A human-readable message about the last transition; may be empty.", maxLength=32768
        ),
    },
}


def _conditions(whose: str) -> JSON:
    return {
        "type": "array",
        "description": f"The {whose}'s current conditions, per the Kubernetes API conventions.",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": _CONDITIONS_ITEM,
    }


def _status_tail(whose: str, examples: str) -> JSON:
    return {
        "conditions": _conditions(whose),
        "observedGeneration": _generation("The .metadata.generation this status describes."),
        "reason": _string(
            f"Why the {whose} is in its phase, in CamelCase (e.g. {examples}).",
            maxLength=1024,
            pattern=r"^([A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?)?$",
        ),
        "message": _string("A message about the phase that a person can act on.", maxLength=32768),
    }


_KOPF: Final[JSON] = {
    "type": "object",
    "description": "The agent's own bookkeeping (kopf's handler progress and the last handled "
    "spec), kept in status so that the agent never writes metadata or spec.",
    "x-kubernetes-preserve-unknown-fields": True,
}
_NODE_NAME_STATUS: Final = _string("The node whose agent wrote this status.", maxLength=253)


# -- StorageContainer ------------------------------------------------------------------------

CONTAINER_SPEC: Final[JSON] = {
    "type": "object",
    "description": "The desired container.",
    "required": ["podName", "image"],
    "properties": {
        "podName": _string(
            "The StoragePod, in the same namespace, that the container belongs to. Immutable.",
            minLength=1,
            maxLength=253,
            pattern=_DNS1123_SUBDOMAIN,
            **{
                "x-kubernetes-validations": _immutable(
                    "podName", "delete the StorageContainer and create it in the other pod"
                )
            },
        ),
        **CONTAINER_TEMPLATE,
    },
}

CONTAINER_STATUS: Final[JSON] = {
    "type": "object",
    "description": "What the agent did, as last observed.",
    "properties": {
        "kopf": _KOPF,
        "phase": _string(
            "Pending until the container exists, Created once it does, Started while mounted, "
            "Stopped when unmounted, Failed when it cannot be made, Terminating while it is "
            "removed.",
            enum=list(CONTAINER_PHASES),
        ),
        "containerID": _string("The container's containers/storage ID.", maxLength=128),
        "podID": _string(
            "The ID of the container's pod (its infra container's ID).", maxLength=128
        ),
        "imageName": _string("The image reference the container was made from.", maxLength=1024),
        "imageID": _string("The ID of the image the container was made from.", maxLength=128),
        "nodeName": _NODE_NAME_STATUS,
        "mountPoint": _string(
            "Where the container's layer is mounted, while Started.", maxLength=4096
        ),
        "workDir": _string(
            "The container's directory (containers-storage get-container-dir).", maxLength=4096
        ),
        "runDir": _string(
            "The container's run directory (containers-storage get-container-run-dir), an OCI "
            "bundle while Started.",
            maxLength=4096,
        ),
        "configPath": _string(
            "The rendered OCI run config (config.json in runDir), while Started.", maxLength=4096
        ),
        "createdAt": _time("When the container was created in the store."),
        "startedAt": _time("When the container was last started (mounted)."),
        "stoppedAt": _time("When the container was last stopped (unmounted)."),
        **_status_tail("container", "ErrImagePull, PodNotFound"),
    },
}

# -- StoragePod ----------------------------------------------------------------------------

POD_SPEC: Final[JSON] = {
    "type": "object",
    "description": "The desired pod.",
    "required": ["nodeName"],
    "properties": {
        "nodeName": _string(
            "The node whose podstore agent owns the pod. Immutable: delete the pod and create "
            "it again to move it.",
            minLength=1,
            maxLength=253,
            pattern=_DNS1123_SUBDOMAIN,
            **{
                "x-kubernetes-validations": _immutable(
                    "nodeName", "delete the StoragePod and create it on the other node"
                )
            },
        ),
        "infraImage": _string(
            "The image of the infra container. When absent, the agent's --infra-image is used.",
            minLength=1,
            maxLength=1024,
        ),
        "imagePullPolicy": _string(
            "When to pull the infra image.", enum=list(PULL_POLICIES), default="IfNotPresent"
        ),
        "imagePullSecrets": {
            "type": "array",
            "description": "Secrets (of type kubernetes.io/dockerconfigjson or "
            "kubernetes.io/dockercfg) in the pod's namespace holding credentials for pulling "
            "the pod's images.",
            "maxItems": 32,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": _string(
                        "The name of the Secret.",
                        minLength=1,
                        maxLength=253,
                        pattern=_DNS1123_SUBDOMAIN,
                    )
                },
            },
        },
        "attempt": {
            "type": "integer",
            "format": "int64",
            "description": "How many times the pod sandbox has been re-created (the CRI attempt).",
            "minimum": 0,
            "maximum": 4294967295,
            "default": 0,
        },
        "containers": {
            "type": "array",
            "description": "Container templates: each becomes a StorageContainer named "
            "<pod name>-<container name>, owned by this pod.",
            "maxItems": 64,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {
                "type": "object",
                "description": "A template of a StorageContainer's spec.",
                "required": ["name", "image"],
                "properties": {
                    "name": _string(
                        "The container's name in the pod, a DNS-1123 label.",
                        minLength=1,
                        maxLength=63,
                        pattern=_DNS1123_LABEL,
                    ),
                    **CONTAINER_TEMPLATE,
                },
            },
        },
    },
}

POD_STATUS: Final[JSON] = {
    "type": "object",
    "description": "What the agent did, as last observed.",
    "properties": {
        "kopf": _KOPF,
        "phase": _string(
            "Pending until the infra container exists, Ready after, Failed when it cannot be "
            "made, Terminating while it is removed.",
            enum=list(POD_PHASES),
        ),
        "podID": _string(
            "The pod's ID, which is also its infra container's containers/storage ID.",
            maxLength=128,
        ),
        "nodeName": _NODE_NAME_STATUS,
        "workDir": _string(
            "The infra container's directory (containers-storage get-container-dir).",
            maxLength=4096,
        ),
        "runDir": _string(
            "The infra container's run directory (containers-storage get-container-run-dir).",
            maxLength=4096,
        ),
        "containers": {
            "type": "array",
            "description": "One entry per member container of the pod.",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": _string("The container's name in the pod.", maxLength=63),
                    "containerID": _string("The container's containers/storage ID.", maxLength=128),
                    "phase": _string(
                        "The container's phase, as in its StorageContainer's status.",
                        enum=list(CONTAINER_PHASES),
                    ),
                },
            },
        },
        "ready": _string(
            "How many members are in their desired state, of how many: 2/3 (kubectl's READY).",
            maxLength=16,
            pattern=r"^[0-9]+/[0-9]+$",
        ),
        **_status_tail("pod", "ErrImagePull, StorageError"),
    },
}


# -- StorageImage (cluster-scoped: an image the selected nodes pull and pin) ------------------

IMAGE_SCHEMA: Final[JSON] = {
    "type": "object",
    "description": "StorageImage asks every node (or the nodes its nodeSelector matches) to pull "
    "an image into the node's containers/storage store before a pod needs it. "
    "Each node's agent pulls it, reports in its own entry of status.nodes, and "
    "never removes it by image garbage collection while the object exists.",
    "required": ["spec"],
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["image"],
            "properties": {
                "image": {
                    "type": "string",
                    "description": "The image to hold: a "
                    "registry reference "
                    "(registry/name:tag or "
                    "name@sha256:digest), as a "
                    "StorageContainer's "
                    "spec.image.",
                    "minLength": 1,
                    "maxLength": 4096,
                },
                "nodeSelector": {
                    "type": "object",
                    "description": "Labels a node must "
                    "have for its agent "
                    "to hold the image; "
                    "empty or absent: "
                    "every node.",
                    "maxProperties": 64,
                    "additionalProperties": {"type": "string", "maxLength": 63},
                },
                "imagePullSecrets": {
                    "type": "array",
                    "description": "Secrets (of type "
                    "kubernetes.io/dockerconfigjson "
                    "or "
                    "kubernetes.io/dockercfg) "
                    "holding "
                    "credentials for "
                    "the pull; the "
                    "object has no "
                    "namespace, so "
                    "each names its "
                    "namespace.",
                    "maxItems": 32,
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["namespace", "name"],
                    "items": {
                        "type": "object",
                        "required": ["namespace", "name"],
                        "properties": {
                            "namespace": {"type": "string", "minLength": 1, "maxLength": 63},
                            "name": {"type": "string", "minLength": 1, "maxLength": 253},
                        },
                    },
                },
            },
        },
        "status": {
            "type": "object",
            "properties": {
                "nodes": {
                    "type": "array",
                    "description": "One entry per node whose "
                    "agent holds (or tries to "
                    "hold) the image, each "
                    "written only by that "
                    "node's agent.",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["nodeName"],
                    "items": {
                        "type": "object",
                        "required": ["nodeName", "phase"],
                        "properties": {
                            "nodeName": {"type": "string", "minLength": 1},
                            "phase": {
                                "type": "string",
                                "description": "Pulled (in the node's store), Pending or Failed.",
                                "enum": ["Pending", "Pulled", "Failed"],
                            },
                            "imageID": {
                                "type": "string",
                                "description": "The image's ID in the node's store.",
                            },
                            "reason": {
                                "type": "string",
                                "description": "Why the entry is in its phase, in CamelCase.",
                            },
                            "message": {"type": "string"},
                            "observedGeneration": {"type": "integer", "format": "int64"},
                            "lastTransitionTime": {"type": "string", "format": "date-time"},
                        },
                    },
                }
            },
        },
    },
}

IMAGE_COLUMNS: Final[list[JSON]] = [
    {
        "name": "Image",
        "type": "string",
        "description": "The image the selected nodes hold.",
        "jsonPath": ".spec.image",
    },
    {
        "name": "Nodes",
        "type": "string",
        "description": "The nodes that report on the image, with their phase.",
        "jsonPath": ".status.nodes[*].phase",
        "priority": 1,
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


# -- the kinds -------------------------------------------------------------------------------


def _column(name: str, path: str, description: str = "", **extra: Any) -> JSON:
    column: JSON = {"name": name, "type": extra.pop("type", "string")}
    if description:
        column["description"] = description
    column["jsonPath"] = path
    column.update(extra)
    return column


_AGE: Final = _column("Age", ".metadata.creationTimestamp", type="date")
_READY_REASON: Final = '.status.conditions[?(@.type=="Ready")].reason'


def _root(description: str, name_rule: JSON, spec: JSON, status: JSON) -> JSON:
    return {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": _string(
                "APIVersion defines the versioned schema of this representation of an object."
            ),
            "kind": _string(
                "Kind is a string value representing the REST resource this object represents."
            ),
            "metadata": {"type": "object", "properties": {"name": name_rule}},
            "spec": spec,
            "status": status,
        },
    }


KINDS: Final[Mapping[str, JSON]] = {
    POD_KIND: {
        "scope": "Namespaced",
        "plural": POD_PLURAL,
        "singular": "storagepod",
        "short": ["spod"],
        "comment": [
            'StoragePod: a pod sandbox and its infrastructure ("infra") container, kept in',
            "containers/storage by the podstore agent of the node named in spec.nodeName.",
        ],
        "selectable": [".spec.nodeName"],
        "columns": [
            _column(
                "Ready",
                ".status.ready",
                "Members in their desired state, of all members (kubectl's READY).",
            ),
            _column(
                "Status",
                _READY_REASON,
                "Why the pod is (not) Ready: the reason of its Ready condition.",
            ),
            _column("Phase", ".status.phase", "Where the pod is in its lifecycle."),
            _column("Node", ".spec.nodeName", "The node whose agent keeps the pod."),
            _column(
                "Reason",
                ".status.reason",
                "Why the pod is in its phase, in CamelCase.",
                priority=1,
            ),
            _column(
                "Pod ID",
                ".status.podID",
                "The containers/storage ID of the pod's infra container.",
                priority=1,
            ),
            _AGE,
        ],
        "schema": _root(
            "StoragePod is a pod sandbox and its infrastructure container, kept in "
            "containers/storage on one node. Its containers are StorageContainers: those "
            "listed in spec.containers are made and owned by the pod's agent, and others may "
            "name the pod in their spec.podName.",
            _string(
                "A DNS-1123 subdomain of at most 189 characters, so that the names of its "
                "owned StorageContainers (<pod>-<container>) stay valid.",
                maxLength=189,
                pattern=_DNS1123_SUBDOMAIN,
            ),
            POD_SPEC,
            POD_STATUS,
        ),
    },
    CONTAINER_KIND: {
        "scope": "Namespaced",
        "plural": CONTAINER_PLURAL,
        "singular": "storagecontainer",
        "short": ["sctr"],
        "comment": [
            "StorageContainer: one container of a StoragePod, kept in containers/storage by the",
            "podstore agent of the pod's node.",
        ],
        "selectable": [".spec.podName"],
        "columns": [
            _column("Pod", ".spec.podName", "The StoragePod the container belongs to."),
            _column("State", ".spec.state", "The desired state."),
            _column("Phase", ".status.phase", "Where the container is in its lifecycle."),
            _column(
                "Status",
                _READY_REASON,
                "Why the container is (not) Ready: the reason of its Ready condition.",
            ),
            _column("Image", ".spec.image", "The image reference."),
            _column("Node", ".status.nodeName", "The node whose agent keeps the container."),
            _column(
                "Reason",
                ".status.reason",
                "Why the container is in its phase, in CamelCase.",
                priority=1,
            ),
            _column(
                "Container ID",
                ".status.containerID",
                "The container's containers/storage ID.",
                priority=1,
            ),
            _AGE,
        ],
        "schema": _root(
            "StorageContainer is one container of a StoragePod, kept in containers/storage by "
            "the agent of the pod's node: its image pulled, its layer created, mounted while "
            "Started and its OCI run config rendered.",
            _string("A DNS-1123 subdomain.", maxLength=253, pattern=_DNS1123_SUBDOMAIN),
            CONTAINER_SPEC,
            CONTAINER_STATUS,
        ),
    },
    IMAGE_KIND: {
        "scope": "Cluster",
        "plural": IMAGE_PLURAL,
        "singular": "storageimage",
        "short": ["simg"],
        "comment": [
            "StorageImage: an image that the agents of the selected nodes pull into their stores",
            "before any pod needs it, and keep (image GC pins it) while the object exists.",
        ],
        "selectable": [],
        "columns": IMAGE_COLUMNS,
        "schema": IMAGE_SCHEMA,
    },
}


def default(field: JSON) -> Any:
    """A field's default, or None."""
    return field.get("default")


def allowed(field: JSON) -> tuple[str, ...]:
    """A string field's allowed values."""
    return tuple(field.get("enum") or ())
