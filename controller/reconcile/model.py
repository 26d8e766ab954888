"""Typed views of StoragePod and StorageContainer objects, and storage names.

The reconcile layer works on these frozen values, parsed from the plain
dicts that the API (or a manifest file) gives; a spec that cannot work
raises :class:`SpecError` naming the field. The names and IDs that objects
get in the store are derived here, deterministically, so that a retry after
a crash finds what the first try made instead of making a second.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.api import schema
from controller.storage.errors import InvalidName
from controller.storage.names import ImageReference, image_reference

# The API's names, defaults and allowed values come from its one source.
GROUP = schema.GROUP
VERSION = schema.VERSION
API_VERSION = schema.API_VERSION
POD_KIND = schema.POD_KIND
CONTAINER_KIND = schema.CONTAINER_KIND
POD_PLURAL = schema.POD_PLURAL
CONTAINER_PLURAL = schema.CONTAINER_PLURAL
IMAGE_KIND = schema.IMAGE_KIND
IMAGE_PLURAL = schema.IMAGE_PLURAL
_TEMPLATE = schema.CONTAINER_TEMPLATE
_POD = schema.POD_SPEC["properties"]
# Each node's agent has its own finalizer: kopf takes its finalizer off any object none of
# its own handlers match, so a shared one would be taken off by every other node's agent.
FINALIZER_PREFIX = "podstore.dev/storage-"

PULL_POLICIES = schema.allowed(_TEMPLATE["imagePullPolicy"])
STATES = schema.allowed(_TEMPLATE["state"])

# Labels podstore keeps in a container's metadata to tie it to its object.
LABEL_KIND = "podstore.dev/kind"
LABEL_NAMESPACE = "podstore.dev/namespace"
LABEL_NAME = "podstore.dev/name"
LABEL_UID = "podstore.dev/uid"
LABEL_NODE = "podstore.dev/node"
LABEL_SOURCE = "podstore.dev/source"
LABEL_TEMPLATE = "podstore.dev/template-hash"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class SpecError(ValueError):
    """A spec that can never be reconciled; names the field and what is wrong."""

    def __init__(self, field_path: str, message: str, reason: str = "InvalidSpec") -> None:
        self.field = field_path
        self.reason = reason
        super().__init__(f"{field_path}: {message}")


@dataclass(frozen=True)
class ObjectRef:
    """Which API object: kind, namespace, name and UID."""

    kind: str
    namespace: str
    name: str
    uid: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        meta = obj.get("metadata") or {}
        return cls(
            kind=str(obj.get("kind") or ""),
            namespace=str(meta.get("namespace") or "default"),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
        )

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class ContainerSpec:
    """A StorageContainer's spec (or one of a StoragePod's container templates)."""

    pod_name: str
    image: str
    image_id: str = ""
    image_pull_policy: str = schema.default(_TEMPLATE["imagePullPolicy"])
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str = ""
    mount_label: str = ""
    state: str = schema.default(_TEMPLATE["state"])
    # ``image`` parsed once, the way containers/image normalizes it.
    image_ref: ImageReference | None = None
    # Copied into the storage container's metadata labels.
    labels: tuple[tuple[str, str], ...] = ()

    def process_hash(self) -> str:
        """Digest of what the runtime config template (and the metadata's labels) come from."""
        data: list[Any] = [
            self.command,
            self.args,
            list(self.env),
            self.working_dir,
            self.mount_label,
        ]
        if self.labels:  # absent from the hash when unused: older containers keep theirs
            data.append(list(self.labels))
        return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PodSpec:
    node_name: str
    infra_image: str = ""
    image_pull_policy: str = schema.default(_POD["imagePullPolicy"])
    image_pull_secrets: tuple[str, ...] = ()
    attempt: int = 0
    containers: tuple[Mapping[str, Any], ...] = field(default=())


def _str(spec: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> str:
    value = spec.get(key)
    if value is None or value == "":
        if required:
            raise SpecError(f"{path}.{key}", "is required")
        return ""
    if not isinstance(value, str):
        raise SpecError(f"{path}.{key}", f"must be a string, not {type(value).__name__}")
    return value


def _str_list(spec: Mapping[str, Any], key: str, path: str) -> tuple[str, ...] | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"{path}.{key}", "must be a list of strings")
    return tuple(value)


def _enum(spec: Mapping[str, Any], key: str, path: str, field: Mapping[str, Any]) -> str:
    """A string from a fixed set, the schema's default when absent."""
    allowed: Sequence[str] = schema.allowed(dict(field))
    default = str(schema.default(dict(field)) or "")
    value = spec.get(key, default) or default
    if value not in allowed:
        raise SpecError(f"{path}.{key}", f"must be one of {', '.join(allowed)}, not {value!r}")
    return str(value)


def parse_container_spec(
    spec: Mapping[str, Any], *, path: str = "spec", image: bool = True
) -> ContainerSpec:
    """The typed spec; ``image=False`` leaves the image reference unparsed (pod templates:
    a bad image fails its container, not the pod, as with the kubelet)."""
    if not isinstance(spec, Mapping):
        raise SpecError(path, "must be an object")
    env_items: list[tuple[str, str]] = []
    raw_env = spec.get("env") or []
    if not isinstance(raw_env, list):
        raise SpecError(f"{path}.env", "must be a list of {name, value}")
    seen: set[str] = set()
    for i, item in enumerate(raw_env):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise SpecError(f"{path}.env[{i}].name", "is required")
        name = item["name"]
        if not re.fullmatch(r"[-._a-zA-Z][-._a-zA-Z0-9]*", name):
            raise SpecError(f"{path}.env[{i}].name", f"{name!r} is not a valid variable name")
        if name in seen:
            raise SpecError(f"{path}.env[{i}].name", f"{name!r} is set twice")
        seen.add(name)
        value = item.get("value", "")
        if not isinstance(value, str):
            raise SpecError(f"{path}.env[{i}].value", "must be a string")
        env_items.append((name, value))
    working_dir = _str(spec, "workingDir", path)
    if working_dir and not working_dir.startswith("/"):
        raise SpecError(f"{path}.workingDir", f"{working_dir!r} must be an absolute path")
    image_id = _str(spec, "imageID", path)
    if image_id and not re.fullmatch(r"(sha256:)?[a-f0-9]{64}", image_id):
        raise SpecError(f"{path}.imageID", f"{image_id!r} is not a sha256 image ID")
    image_name = _str(spec, "image", path, required=True)
    image_ref = None
    if image:
        try:
            image_ref = image_reference(image_name)
        except InvalidName as err:
            raise SpecError(f"{path}.image", str(err), reason="InvalidImageName") from err
    return ContainerSpec(
        pod_name=_str(spec, "podName", path),
        image=image_name,
        image_ref=image_ref,
        image_id=image_id.removeprefix("sha256:"),
        image_pull_policy=_enum(spec, "imagePullPolicy", path, _TEMPLATE["imagePullPolicy"]),
        command=_str_list(spec, "command", path),
        args=_str_list(spec, "args", path),
        env=tuple(env_items),
        working_dir=working_dir,
        mount_label=_str(spec, "mountLabel", path),
        state=_enum(spec, "state", path, _TEMPLATE["state"]),
        labels=_labels(spec, path),
    )


def image_problem(value: str) -> str:
    """What is wrong with an image reference; "" when it is one."""
    try:
        image_reference(value)
    except InvalidName as err:
        return str(err)
    return ""


_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def _labels(spec: Mapping[str, Any], path: str) -> tuple[tuple[str, str], ...]:
    """Kubernetes label keys and values; podstore.dev/ keys are podstore's own."""
    raw = spec.get("labels") or {}
    if not isinstance(raw, Mapping):
        raise SpecError(f"{path}.labels", "must be a map of label keys to values")
    out: list[tuple[str, str]] = []
    for key, value in sorted(raw.items()):
        prefix, _, name = str(key).rpartition("/")
        if not _LABEL_NAME.fullmatch(name) or (prefix and not _DNS_SUBDOMAIN.fullmatch(prefix)):
            raise SpecError(f"{path}.labels", f"{key!r} is not a label key ([prefix/]name)")
        if prefix == GROUP or prefix.endswith(f".{GROUP}"):
            raise SpecError(f"{path}.labels", f"{key!r}: {GROUP}/ labels are podstore's own")
        if not isinstance(value, str) or not _LABEL_VALUE.fullmatch(value):
            raise SpecError(f"{path}.labels[{key}]", f"{value!r} is not a label value")
        out.append((str(key), value))
    return tuple(out)


def parse_image(value: str) -> ImageReference | None:
    """An image reference as a stored container's metadata names it; None if it is not one."""
    try:
        return image_reference(value)
    except InvalidName:
        return None


def parse_pod_spec(spec: Mapping[str, Any], *, path: str = "spec") -> PodSpec:
    if not isinstance(spec, Mapping):
        raise SpecError(path, "must be an object")
    secrets: list[str] = []
    for i, item in enumerate(spec.get("imagePullSecrets") or []):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise SpecError(f"{path}.imagePullSecrets[{i}].name", "is required")
        secrets.append(item["name"])
    attempt = spec.get("attempt", 0) or 0
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
        raise SpecError(f"{path}.attempt", "must be a non-negative integer")
    containers = spec.get("containers") or []
    if not isinstance(containers, list):
        raise SpecError(f"{path}.containers", "must be a list")
    names: set[str] = set()
    for i, item in enumerate(containers):
        cpath = f"{path}.containers[{i}]"
        if not isinstance(item, Mapping):
            raise SpecError(cpath, "must be an object")
        name = item.get("name")
        if not isinstance(name, str) or not _DNS_LABEL.fullmatch(name) or len(name) > 63:
            raise SpecError(f"{cpath}.name", f"{name!r} must be a DNS label (a-z, 0-9, '-')")
        if name in names:
            raise SpecError(f"{cpath}.name", f"{name!r} is used twice")
        names.add(name)
        parse_container_spec(item, path=cpath, image=False)
    return PodSpec(
        node_name=_str(spec, "nodeName", path, required=True),
        infra_image=_str(spec, "infraImage", path),
        image_pull_policy=_enum(spec, "imagePullPolicy", path, _POD["imagePullPolicy"]),
        image_pull_secrets=tuple(secrets),
        attempt=attempt,
        containers=tuple(containers),
    )


# -- names and IDs in the store ------------------------------------------------


def _part(value: str) -> str:
    """A name part safe in a storage name (no '_' separators inside)."""
    cleaned = re.sub(r"[^A-Za-z0-9.-]", "-", value)[:63].strip("-.")
    return cleaned or "x"


def pod_id_for(pod_uid: str, attempt: int) -> str:
    return hashlib.sha256(f"podstore/pod/{pod_uid}/{attempt}".encode()).hexdigest()


def container_id_for(container_uid: str, pod_id: str) -> str:
    return hashlib.sha256(f"podstore/container/{container_uid}/{pod_id}".encode()).hexdigest()


def sandbox_name(pod: ObjectRef, attempt: int) -> str:
    """The pod's name in the store, cri-o style: k8s_<pod>_<ns>_<uid>_<attempt>."""
    return f"k8s_{_part(pod.name)}_{_part(pod.namespace)}_{_part(pod.uid)}_{attempt}"


def infra_name(pod: ObjectRef, attempt: int) -> str:
    return f"k8s_POD_{_part(pod.name)}_{_part(pod.namespace)}_{_part(pod.uid)}_{attempt}"


def container_name(container: ObjectRef, pod: ObjectRef, attempt: int) -> str:
    return (
        f"k8s_{_part(container.name)}_{_part(pod.name)}_{_part(pod.namespace)}_"
        f"{_part(pod.uid)}_{attempt}"
    )


def finalizer_for(node_name: str) -> str:
    """The finalizer of ``node_name``'s agent: ``podstore.dev/storage-<node>``.

    The part after the slash is a qualified name of at most 63 characters; a node
    name that does not fit is replaced by a digest of it.
    """
    name = f"storage-{node_name}"
    if len(name) > 63 or not _QUALIFIED.fullmatch(name):
        name = "storage-" + hashlib.sha256(node_name.encode()).hexdigest()[:32]
    return f"podstore.dev/{name}"


_QUALIFIED = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")


def child_name(pod_name: str, container: str) -> str:
    """The StorageContainer a pod's container template becomes."""
    return f"{pod_name}-{container}"
