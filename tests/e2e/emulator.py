"""A Kubernetes API server in a thread, for running kopf and the podstore agent in tests.

kmock's ``KubernetesEmulator`` stores objects, but a real API server differs from it in
ways that kopf and our agent notice: kopf's finalizer patch tests
``metadata.resourceVersion``, status writes go to a separate subresource, the
generation moves only with the spec, selectors filter, watches resume from a
resourceVersion, and invalid objects are refused with 422. :class:`PodstoreEmulator`
keeps kmock's request parsing and its DSL (``emulator['patch'] << 500`` still injects
faults) and serves the rest the way kube-apiserver does, holding our two kinds to
the CRDs in ``crds/`` through :mod:`controller.crds`.

:class:`EmulatedCluster` runs an emulator on 127.0.0.1 in its own thread and event
loop, so that synchronous tests, async tests, an operator task in the test's loop and
an agent subprocess can all talk to it. It writes a kubeconfig, keeps a bounded log
of the requests served (for RBAC checks) and has a small client for tests.

Not emulated: garbage collection of owned objects (our agent must not depend on
it), admission webhooks, server-side apply, strategic merge semantics (built-in
kinds take strategic patches as merge patches), CEL rules other than
``self == oldSelf``, authentication and authorization (every request is allowed and
logged with its bearer token).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import copy
import dataclasses
import datetime
import http.client
import inspect
import json
import logging
import random
import re
import threading
import time
import traceback
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.web
import attrs
import kmock
import yaml

from controller import crds

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
ResourceKey = tuple[str, str, str]  # (group, version, plural)
T = TypeVar("T")

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")
EVENT_FIELDS = (
    "involvedObject.apiVersion",
    "involvedObject.fieldPath",
    "involvedObject.kind",
    "involvedObject.name",
    "involvedObject.namespace",
    "involvedObject.resourceVersion",
    "involvedObject.uid",
    "reason",
    "reportingComponent",
    "source",
    "type",
)
GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # as the API server's, no vowels
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
NAMESPACES: ResourceKey = ("", "v1", "namespaces")
SECRETS: ResourceKey = ("", "v1", "secrets")
CRDS: ResourceKey = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")


# --- resources ---------------------------------------------------------------------------


@dataclasses.dataclass
class Resource:
    """One served resource: what discovery says about it and how writes treat it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    singular: str = ""
    verbs: tuple[str, ...] = ALL_VERBS
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    # Field paths usable in fieldSelector besides metadata.name/namespace ("spec.nodeName").
    selectable_fields: tuple[str, ...] = ()
    # Custom resources: status dropped on create, updates need a resourceVersion,
    # metadata pruned to ObjectMeta, and the CRD's schema enforced.
    custom: bool = False
    # Whether metadata.generation is kept (custom resources and CRDs).
    generation: bool = False
    catalog: crds.Catalog | None = dataclasses.field(default=None, repr=False)
    # Events expire in a real cluster; here the oldest go beyond this many.
    max_objects: int | None = None

    @property
    def key(self) -> ResourceKey:
        return (self.group, self.version, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``storagepods.podstore.dev`` as in the server's messages; ``secrets`` for core."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @classmethod
    def from_definition(cls, definition: crds.ResourceDefinition) -> Resource:
        return cls(
            group=definition.group,
            version=definition.version,
            plural=definition.plural,
            kind=definition.kind,
            namespaced=definition.namespaced,
            singular=definition.singular,
            short_names=definition.short_names,
            categories=definition.categories,
            subresources=definition.subresources,
            selectable_fields=tuple(f.lstrip(".") for f in definition.selectable_fields),
            custom=True,
            generation=True,
            catalog=crds.Catalog([definition]),
        )


def builtin_resources() -> list[Resource]:
    """The built-in resources that kopf and the agent use."""
    return [
        Resource(
            "",
            "v1",
            "namespaces",
            "Namespace",
            namespaced=False,
            short_names=("ns",),
            subresources=("status",),
            verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
            selectable_fields=("status.phase",),
        ),
        Resource("", "v1", "secrets", "Secret", selectable_fields=("type",)),
        Resource("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
        Resource(
            "",
            "v1",
            "events",
            "Event",
            short_names=("ev",),
            selectable_fields=EVENT_FIELDS,
            max_objects=5000,
        ),
        Resource(
            "",
            "v1",
            "nodes",
            "Node",
            namespaced=False,
            short_names=("no",),
            subresources=("status",),
        ),
        Resource(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            short_names=("ev",),
            selectable_fields=(
                "regarding.kind",
                "regarding.name",
                "regarding.namespace",
                "reason",
                "type",
            ),
            max_objects=5000,
        ),
        Resource(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            namespaced=False,
            short_names=("crd", "crds"),
            categories=("api-extensions",),
            subresources=("status",),
            generation=True,
        ),
    ]


# --- errors ------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered as a ``Status`` object, as the API server answers it."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: JSON | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def status(self) -> JSON:
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(res: Resource, name: str | None) -> JSON:
    details: JSON = {"group": res.group, "kind": res.plural}
    if name:
        details["name"] = name
    return details


def not_found(res: Resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{res.qualified} "{name}" not found', _details(res, name))


def conflict(res: Resource, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {res.qualified} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        _details(res, name),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(res: Resource, name: str, problems: Iterable[crds.SchemaProblem]) -> ApiError:
    problems = list(problems)
    causes = [{"reason": p.reason, "message": p.message, "field": p.path} for p in problems]
    listed = ", ".join(str(p) for p in problems)
    summary = f"[{listed}]" if len(problems) > 1 else listed
    details = {**_details(res, name), "kind": res.kind, "causes": causes}
    return ApiError(
        422, "Invalid", f'{res.kind}.{res.group or "core"} "{name}" is invalid: {summary}', details
    )


# --- the request log -----------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class RequestRecord:
    """One request served, with the RBAC view of it (verb, group, resource)."""

    method: str
    path: str
    query: dict[str, str]
    verb: str | None = None  # get list watch create update patch delete deletecollection
    group: str | None = None
    version: str | None = None
    resource: str | None = None
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None
    user: str | None = None  # the bearer token or basic-auth user name, if any
    status: int | None = None
    # A watch's events as sent: (type, namespace, name), bookmarks left out.
    events: list[tuple[str, str | None, str | None]] = dataclasses.field(default_factory=list)

    @property
    def permission(self) -> tuple[str, str, str] | None:
        """(apiGroup, resource[/subresource], verb) as an RBAC rule names it."""
        if self.verb is None or self.resource is None or self.group is None:
            return None
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return (self.group, resource, self.verb)


@dataclasses.dataclass
class Route:
    """Where a URL points: discovery, a collection, an object or one of its subresources."""

    group: str
    version: str
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_route(path: str) -> Route | None:
    parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    route = Route(group, version)
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        route.namespace, rest = rest[1], rest[2:]
    if rest:
        route.plural = rest[0]
    if len(rest) >= 2:
        route.name = rest[1]
    if len(rest) >= 3:
        route.subresource = "/".join(rest[2:])
    return route


def verb_of(method: str, route: Route, query: Mapping[str, str]) -> str | None:
    if route.plural is None:
        return None
    if method == "GET":
        if query.get("watch") in ("true", "1"):
            return "watch"
        return "get" if route.name else "list"
    if route.name is None:
        return {"POST": "create", "DELETE": "deletecollection"}.get(method)
    return {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method)


# --- selectors ---------------------------------------------------------------------------


_LABEL_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_SET_RE = re.compile(rf"^\s*({_LABEL_KEY})\s+(in|notin)\s*\(([^)]*)\)\s*$")
_CMP_RE = re.compile(rf"^\s*({_LABEL_KEY})\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)\s*$")
_HAS_RE = re.compile(rf"^\s*(!?)\s*({_LABEL_KEY})\s*$")
_FIELD_RE = re.compile(r"^\s*([^!=\s]+)\s*(==|=|!=)\s*(.*?)\s*$")

Requirement = tuple[str, str, frozenset[str]]  # (key, operator, values)


def parse_label_selector(text: str) -> list[Requirement]:
    requirements: list[Requirement] = []
    depth, start, parts = 0, 0, []
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    for part in parts:
        if not part.strip():
            continue
        if match := _SET_RE.match(part):
            values = frozenset(v.strip() for v in match.group(3).split(",") if v.strip())
            requirements.append((match.group(1), match.group(2), values))
        elif match := _CMP_RE.match(part):
            operator = "!=" if match.group(2) == "!=" else "="
            requirements.append((match.group(1), operator, frozenset({match.group(3)})))
        elif match := _HAS_RE.match(part):
            requirements.append((match.group(2), "!" if match.group(1) else "exists", frozenset()))
        else:
            raise bad_request(f"unable to parse requirement: {part.strip()!r} in {text!r}")
    return requirements


def labels_match(requirements: Iterable[Requirement], labels: Mapping[str, str]) -> bool:
    for key, operator, values in requirements:
        value = labels.get(key)
        if operator in ("=", "in") and value not in values:
            return False
        if operator in ("!=", "notin") and value is not None and value in values:
            return False
        if operator == "exists" and value is None:
            return False
        if operator == "!" and value is not None:
            return False
    return True


def parse_field_selector(text: str, res: Resource) -> list[tuple[str, str, str]]:
    supported = {"metadata.name", "metadata.namespace", *res.selectable_fields}
    terms: list[tuple[str, str, str]] = []
    for part in text.split(","):
        if not part.strip():
            continue
        match = _FIELD_RE.match(part)
        if match is None:
            raise bad_request(f"invalid selector: {text!r}; can't understand {part!r}")
        field, operator, value = match.groups()
        if field not in supported:
            raise bad_request(f"field label not supported: {field}")
        terms.append((field, "!=" if operator == "!=" else "=", value))
    return terms


def field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def fields_match(terms: Iterable[tuple[str, str, str]], obj: Mapping[str, Any]) -> bool:
    for field, operator, value in terms:
        actual = field_value(obj, field)
        if (actual == value) != (operator == "="):
            return False
    return True


@dataclasses.dataclass
class Filter:
    """What a list or watch asks for: a namespace, a name, labels and fields."""

    namespace: str | None = None
    name: str | None = None
    labels: list[Requirement] = dataclasses.field(default_factory=list)
    fields: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)

    def __call__(self, obj: Mapping[str, Any] | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.name is not None and meta.get("name") != self.name:
            return False
        if self.labels and not labels_match(self.labels, meta.get("labels") or {}):
            return False
        return not self.fields or fields_match(self.fields, obj)


# --- patches -----------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class PatchFailed(Exception):
    """A JSON patch that cannot be applied (a failed test included): 422 on the server."""


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchFailed(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _container(doc: Any, parts: list[str], path: str) -> Any:
    for part in parts[:-1]:
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            raise PatchFailed(f"doc is missing path: {path!r}")
    return doc


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    parent = _container(doc, parts, path)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise PatchFailed(f"doc is missing path: {path!r}")


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        raise PatchFailed("cannot remove the whole document")
    parent = _container(doc, parts, path)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise PatchFailed(f"unable to remove nonexistent key: {path!r}")


def _add(doc: Any, path: str, value: Any, *, replace: bool = False) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent = _container(doc, parts, path)
    last = parts[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchFailed(f"replace operation does not apply: doc is missing key: {path!r}")
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent) - (1 if replace else 0):
            if replace:
                parent[int(last)] = value
            else:
                parent.insert(int(last), value)
        else:
            raise PatchFailed(f"index out of range: {path!r}")
    else:
        raise PatchFailed(f"doc is missing path: {path!r}")
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch, failing like evanphx/json-patch does in the API server."""
    if not isinstance(ops, list):
        raise bad_request("json patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"invalid json patch operation: {op!r}")
        kind, path = op["op"], op["path"]
        if kind == "test":
            actual = _get(doc, path)
            if actual != op.get("value"):
                raise PatchFailed(f"testing value {path} failed: test failed")
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "replace":
            doc = _add(doc, path, copy.deepcopy(op.get("value")), replace=True)
        elif kind in ("move", "copy"):
            source = op.get("from", "")
            value = _remove(doc, source) if kind == "move" else copy.deepcopy(_get(doc, source))
            doc = _add(doc, path, value)
        else:
            raise bad_request(f"unexpected json patch operation: {kind!r}")
    return doc


# --- stored objects and events -------------------------------------------------------------


class Stored:
    """An object as stored; never changed after storing, its JSON rendered once."""

    __slots__ = ("_raw", "obj")

    def __init__(self, obj: JSON) -> None:
        self.obj = obj
        self._raw: bytes | None = None

    @property
    def raw(self) -> bytes:
        if self._raw is None:
            self._raw = json.dumps(self.obj, separators=(",", ":")).encode()
        return self._raw


@dataclasses.dataclass(slots=True)
class WatchEvent:
    rv: int
    type: str  # ADDED MODIFIED DELETED
    obj: Stored
    prev: Stored | None = None


#: Where a request's record travels with it, for the watch to note its events.
_RECORD: aiohttp.web.RequestKey[RequestRecord] = aiohttp.web.RequestKey(
    "podstore.record", RequestRecord
)


def _where(obj: Mapping[str, Any]) -> tuple[str | None, str | None]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace"), meta.get("name")


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> aiohttp.web.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    return aiohttp.web.Response(
        body=raw, status=status, content_type="application/json", headers=headers
    )


# --- the emulator --------------------------------------------------------------------------


@attrs.define(kw_only=True, eq=False)
class PodstoreEmulator(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator, made to act like kube-apiserver for kopf and podstore.

    Objects live in :meth:`objects_of` / :meth:`get_object` (plain dicts); kmock's
    ``objects`` mirrors only their current versions (for its ``>=`` pattern assertions),
    since a history of every write would grow without end. kmock reactions added by
    a test (``emulator['patch', kmock.resource(...)] << 500``) are served before the
    emulated API, to inject faults.
    """

    crd_dir: Path | None = None
    namespaces: tuple[str, ...] = ("default", "kube-system", "kube-public", "kube-node-lease")
    # How many watch events each resource keeps for resuming watches (then 410 Gone).
    history: int = 5000
    # Seconds between BOOKMARK events on watches that allow them.
    bookmark_interval: float = 30.0
    # How many requests are kept for assertions (the log is bounded).
    log_size: int = 10000
    server_version: tuple[int, int] = (1, 33)

    _registry: dict[ResourceKey, Resource] = attrs.field(factory=dict, init=False)
    _store: dict[ResourceKey, dict[tuple[str | None, str], Stored]] = attrs.field(
        factory=dict, init=False
    )
    _events: dict[ResourceKey, collections.deque[WatchEvent]] = attrs.field(
        factory=dict, init=False
    )
    _compacted: dict[ResourceKey, int] = attrs.field(factory=dict, init=False)
    _rv: int = attrs.field(default=1000, init=False)
    _watchers: set[asyncio.Event] = attrs.field(factory=set, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    _builtin_payloads: set[int] = attrs.field(factory=set, init=False)
    _request_log: collections.deque[RequestRecord] = attrs.field(init=False)
    _log_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _request_count: int = attrs.field(default=0, init=False)
    server_errors: list[str] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # kmock's fallbacks are kept but never reached: the API below serves instead.
        self._builtin_payloads = {id(payload) for payload in self._payloads}
        # kmock keeps every request forever and re-filters them on every match; keep few.
        self._requests = collections.deque(maxlen=256)  # type: ignore[assignment]
        self._request_log = collections.deque(maxlen=self.log_size)
        for res in builtin_resources():
            self.register(res)
        for ns in self.namespaces:
            self.seed(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            )
        for crd in crds.read_crd_files(self.crd_dir):
            self.seed(crd)

    # -- registry ---------------------------------------------------------------------

    def register(self, res: Resource) -> None:
        """Serve a resource (and tell kmock's own discovery view about it)."""
        self._registry[res.key] = res
        self._store.setdefault(res.key, {})
        self._events.setdefault(res.key, collections.deque(maxlen=self.history))
        self._compacted.setdefault(res.key, 0)
        self.resources[f"{res.api_version}/{res.plural}"] = kmock.ResourceInfo(
            kind=res.kind,
            singular=res.singular or res.kind.lower(),
            namespaced=res.namespaced,
            verbs=res.verbs,
            shortnames=res.short_names,
            categories=res.categories,
            subresources=res.subresources,
        )

    def unregister(self, key: ResourceKey) -> None:
        self._registry.pop(key, None)
        with contextlib.suppress(KeyError):
            del self.resources[f"{key[0]}/{key[1]}/{key[2]}" if key[0] else f"v1/{key[2]}"]

    def resource(self, name: str, api_version: str | None = None) -> Resource:
        """Find a served resource by plural, kind, short name or ``plural.group``."""
        lowered = name.lower()
        for res in list(self._registry.values()):
            if api_version is not None and res.api_version != api_version:
                continue
            names = {res.plural, res.kind.lower(), res.singular, *res.short_names}
            if lowered in names or lowered == res.qualified:
                return res
        raise KeyError(
            f"no resource {name!r} served" + (f" in {api_version}" if api_version else "")
        )

    @property
    def served(self) -> list[Resource]:
        return list(self._registry.values())

    # -- direct access (in the emulator's loop, or while it is not serving) --------------

    def seed(self, obj: Mapping[str, Any]) -> JSON:
        """Store an object as a create would, without HTTP (before serving, or in-loop)."""
        res = self.resource(obj["kind"], obj.get("apiVersion"))
        meta = obj.get("metadata", {})
        created = self._create(res, meta.get("namespace"), copy.deepcopy(dict(obj)), {})[0]
        return copy.deepcopy(created)

    def get_object(self, plural: str, namespace: str | None, name: str) -> JSON | None:
        res = self.resource(plural)
        stored = self._store[res.key].get((namespace if res.namespaced else None, name))
        return copy.deepcopy(stored.obj) if stored is not None else None

    def objects_of(self, plural: str, namespace: str | None = None) -> list[JSON]:
        res = self.resource(plural)
        return [
            copy.deepcopy(s.obj)
            for (ns, _), s in list(self._store[res.key].items())
            if namespace is None or ns == namespace
        ]

    @property
    def resource_version(self) -> int:
        return self._rv

    def wipe(self) -> None:
        """Lose every object, as an API server whose etcd was lost and re-bootstrapped.

        What a cluster's bootstrap installs again at once (the namespaces and CRDs)
        stays as it was; every other object is gone without DELETED events, and every
        watch position before now is compacted, so a client resuming a watch gets
        ``410 Gone`` and must list again. Resource versions keep growing (the emulator
        has one counter), where a restored etcd may start lower. Call it while the
        emulator is not serving, or through :meth:`EmulatedCluster.call`.
        """
        self._rv += 1
        keep = {CRDS, self.resource("namespaces").key}
        for res in list(self._registry.values()):
            if res.key in keep:
                continue
            for ns, name in list(self._store[res.key]):
                mirror = (kmock.resource(res.group, res.version, res.plural), ns, name)
                with contextlib.suppress(KeyError):
                    del self._objects[mirror]
            self._store[res.key].clear()
            self._events[res.key].clear()
        for key in self._compacted:
            self._compacted[key] = self._rv

    # -- the request log ------------------------------------------------------------------

    @property
    def request_log(self) -> list[RequestRecord]:
        with self._log_lock:
            return list(self._request_log)

    def clear_request_log(self) -> None:
        with self._log_lock:
            self._request_log.clear()

    def _log(self, record: RequestRecord) -> None:
        with self._log_lock:
            self._request_log.append(record)

    # -- serving -------------------------------------------------------------------------

    async def close_watches(self) -> None:
        """End every open watch (they would otherwise hold the server's shutdown)."""
        self._closing = True
        self._wake()

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        body = await raw.read()
        query = dict(raw.query)
        route = parse_route(raw.path)
        record = RequestRecord(method=raw.method, path=raw.path, query=query)
        if route is not None and route.plural is not None:
            record.verb = verb_of(raw.method, route, query)
            record.group, record.version = route.group, route.version
            record.resource, record.subresource = route.plural, route.subresource
            record.namespace, record.name = route.namespace, route.name
        auth = raw.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            record.user = auth.removeprefix("Bearer ")
        elif auth.startswith("Basic "):
            with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                record.user = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
        self._log(record)
        raw[_RECORD] = record  # the watch notes its events on it
        self._request_count += 1
        try:
            response = await self._serve_reactions(raw)
            if response is None:
                response = await self._serve(raw, body, route, query)
        except ApiError as err:
            response = _json_response(err.status(), err.code, err.headers)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as err:
            text = "".join(traceback.format_exception(err))
            self.server_errors.append(f"{raw.method} {raw.path_qs}\n{text}")
            logger.error("emulator failed on %s %s:\n%s", raw.method, raw.path_qs, text)
            status = ApiError(500, "InternalError", f"emulator error: {err!r}")
            response = _json_response(status.status(), 500)
        record.status = response.status
        return response

    async def _serve_reactions(self, raw: aiohttp.web.BaseRequest) -> Any:
        """Serve a test's own kmock reactions, if any matches (kmock's own matching)."""
        payloads = [p for p in self._payloads if id(p) not in self._builtin_payloads]
        if not payloads:
            return None
        try:
            request = await kmock.Request._parse(raw, id=self._request_count)
        except (ValueError, TypeError):
            return None  # kmock cannot parse e.g. /api/v1/namespaces; no reaction can match
        self._requests.append(request)
        width = max(len(p.priorities) for p in payloads)
        payloads.sort(
            key=lambda p: tuple(-x for x in p.priorities) + (0,) * (width - len(p.priorities))
        )
        for payload in payloads:
            if request in payload._source and not payload._disabled.is_set():
                try:
                    return await payload(request)
                except kmock.ReactionMismatchError:
                    payload._disabled.set()
                except NotImplementedError:
                    pass
        return None

    async def _serve(
        self,
        raw: aiohttp.web.BaseRequest,
        body: bytes,
        route: Route | None,
        query: dict[str, str],
    ) -> aiohttp.web.StreamResponse:
        if raw.method == "GET" and raw.path.rstrip("/") in ("/healthz", "/livez", "/readyz"):
            return aiohttp.web.Response(text="ok")
        if raw.method == "GET" and route is None:
            return _json_response(self._serve_other(raw))
        if route is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if route.plural is None:
            if raw.method != "GET":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
            return _json_response(self._discover_version(route))
        res = self._registry.get((route.group, route.version, route.plural))
        if res is None or (route.namespace is not None and not res.namespaced):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if route.subresource is not None and route.subresource not in res.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        verb = verb_of(raw.method, route, query)
        allowed = STATUS_VERBS if route.subresource else res.verbs
        if verb is None or verb not in allowed:
            raise ApiError(
                405, "MethodNotAllowed", f"the server does not allow this method on {res.plural}"
            )
        namespace = route.namespace if res.namespaced else None
        if verb == "watch":
            return await self._watch(raw, res, namespace, route.name, query)
        if verb == "list":
            return _json_response(self._list(res, namespace, query))
        if verb == "get":
            return _json_response(self._fetch(res, namespace, route.name or "").raw)
        data = self._body(raw, body, verb)
        warnings: list[str] = []
        status = 200
        if verb == "create":
            if not isinstance(data, dict):
                raise bad_request("the body of the request must be a JSON object")
            result, warnings = self._create(res, namespace, data, query)
            status = 201
        elif verb == "update":
            result, warnings = self._update(res, namespace, route, data, query)
        elif verb == "patch":
            content_type = raw.headers.get("Content-Type", "").split(";")[0].strip()
            result, warnings = self._patch(res, namespace, route, content_type, data, query)
        elif verb == "delete":
            result = self._delete(res, namespace, route.name or "", data, query)
        else:  # deletecollection
            result = self._delete_collection(res, namespace, query)
        headers = {"Warning": ", ".join(f'299 - "{w}"' for w in warnings)} if warnings else None
        return _json_response(result, status, headers)

    @staticmethod
    def _body(raw: aiohttp.web.BaseRequest, body: bytes, verb: str) -> Any:
        if not body:
            return None
        content_type = raw.headers.get("Content-Type", "")
        try:
            if "yaml" in content_type:
                return yaml.safe_load(body)
            return json.loads(body)
        except (ValueError, yaml.YAMLError) as err:
            raise bad_request(f"the body of the {verb} request cannot be decoded: {err}") from err

    # -- discovery -----------------------------------------------------------------------

    def _serve_other(self, raw: aiohttp.web.BaseRequest) -> Any:
        path = raw.path.rstrip("/") or "/"
        if path == "/version":
            major, minor = self.server_version
            return {
                "major": str(major),
                "minor": str(minor),
                "gitVersion": f"v{major}.{minor}.0+podstore-emulator",
                "gitCommit": "0" * 40,
                "gitTreeState": "clean",
                "buildDate": "2025-01-01T00:00:00Z",
                "goVersion": "go1.23",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        if path == "/api":
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": raw.host or "127.0.0.1"}
                ],
            }
        if path == "/apis":
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [self._group(g) for g in sorted(self._groups())],
            }
        if path.startswith("/apis/") and path.count("/") == 2:
            group = path.split("/")[2]
            if group not in self._groups():
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return {"kind": "APIGroup", "apiVersion": "v1", **self._group(group)}
        if path == "/":
            paths = {"/api", "/api/v1", "/apis", "/version", "/healthz", "/livez", "/readyz"}
            for group in self._groups():
                paths.add(f"/apis/{group}")
                paths.update(f"/apis/{group}/{v}" for v in self._groups()[group])
            return {"paths": sorted(paths)}
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def _groups(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for res in self._registry.values():
            if res.group:
                versions = groups.setdefault(res.group, [])
                if res.version not in versions:
                    versions.append(res.version)
        return groups

    def _group(self, group: str) -> JSON:
        versions = [
            {"groupVersion": f"{group}/{v}", "version": v} for v in self._groups().get(group, [])
        ]
        return {"name": group, "versions": versions, "preferredVersion": versions[0]}

    def _discover_version(self, route: Route) -> JSON:
        served = [
            r
            for r in self._registry.values()
            if (r.group, r.version) == (route.group, route.version)
        ]
        if not served:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        resources: list[JSON] = []
        for res in sorted(served, key=lambda r: r.plural):
            entry: JSON = {
                "name": res.plural,
                "singularName": res.singular or res.kind.lower(),
                "namespaced": res.namespaced,
                "kind": res.kind,
                "verbs": list(res.verbs),
            }
            if res.short_names:
                entry["shortNames"] = list(res.short_names)
            if res.categories:
                entry["categories"] = list(res.categories)
            resources.append(entry)
            resources.extend(
                {
                    "name": f"{res.plural}/{sub}",
                    "singularName": "",
                    "namespaced": res.namespaced,
                    "kind": res.kind,
                    "verbs": list(STATUS_VERBS),
                }
                for sub in res.subresources
            )
        group_version = f"{route.group}/{route.version}" if route.group else route.version
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }

    # -- reading -------------------------------------------------------------------------

    def _fetch(self, res: Resource, namespace: str | None, name: str) -> Stored:
        stored = self._store[res.key].get((namespace, name))
        if stored is None:
            raise not_found(res, name)
        return stored

    def _filter(
        self, res: Resource, namespace: str | None, name: str | None, query: Mapping[str, str]
    ) -> Filter:
        return Filter(
            namespace=namespace,
            name=name,
            labels=parse_label_selector(query.get("labelSelector", "")),
            fields=parse_field_selector(query.get("fieldSelector", ""), res),
        )

    def _list(self, res: Resource, namespace: str | None, query: Mapping[str, str]) -> bytes:
        wanted = self._filter(res, namespace, None, query)
        rv, after = self._rv, None
        if query.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(query["continue"].encode()))
                rv, after = int(token["rv"]), tuple(token["after"])
            except (ValueError, KeyError, TypeError, binascii.Error) as err:
                raise bad_request("continue key is not valid: " + str(err)) from err
        items = sorted(
            ((ns or "", name), stored)
            for (ns, name), stored in self._store[res.key].items()
            if wanted(stored.obj)
        )
        if after is not None:
            items = [(key, s) for key, s in items if key > after]
        limit = int(_number(query, "limit"))
        metadata: JSON = {"resourceVersion": str(rv)}
        if limit > 0 and len(items) > limit:
            last = items[limit - 1][0]
            token = {"rv": rv, "after": list(last)}
            metadata["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        head = {"kind": f"{res.kind}List", "apiVersion": res.api_version, "metadata": metadata}
        return (
            json.dumps(head, separators=(",", ":"))[:-1].encode()
            + b',"items":['
            + b",".join(stored.raw for _, stored in items)
            + b"]}"
        )

    # -- watching ------------------------------------------------------------------------

    def _wake(self) -> None:
        for waiter in self._watchers:
            waiter.set()

    def _pending(self, key: ResourceKey, cursor: int) -> list[WatchEvent]:
        events = self._events[key]
        pending: list[WatchEvent] = []
        for event in reversed(events):
            if event.rv <= cursor:
                break
            pending.append(event)
        pending.reverse()
        return pending

    async def _watch(
        self,
        raw: aiohttp.web.BaseRequest,
        res: Resource,
        namespace: str | None,
        name: str | None,
        query: Mapping[str, str],
    ) -> aiohttp.web.StreamResponse:
        wanted = self._filter(res, namespace, name, query)
        record: RequestRecord | None = raw.get(_RECORD)
        sent = record.events if record is not None else []
        since = query.get("resourceVersion", "")
        initial = query.get("sendInitialEvents") == "true"
        bookmarks = query.get("allowWatchBookmarks") == "true"
        if initial and not bookmarks:
            raise ApiError(
                422,
                "Invalid",
                "allowWatchBookmarks: Forbidden: sendInitialEvents requires setting "
                "allowWatchBookmarks to true",
            )
        timeout = _number(query, "timeoutSeconds") or None
        deadline = None if timeout is None else time.monotonic() + timeout
        resume = since not in ("", "0")
        try:
            cursor = int(since) if resume else 0
        except ValueError as err:
            raise bad_request(f"invalid resource version: {since!r}") from err

        response = aiohttp.web.StreamResponse(
            status=200, headers={"Content-Type": "application/json"}
        )
        response.enable_chunked_encoding()
        await response.prepare(raw)
        waiter = asyncio.Event()
        self._watchers.add(waiter)
        try:
            if resume and not initial and cursor < self._compacted[res.key]:
                gone = ApiError(
                    410,
                    "Expired",
                    f"too old resource version: {cursor} ({self._compacted[res.key]})",
                )
                await response.write(
                    json.dumps({"type": "ERROR", "object": gone.status()}).encode() + b"\n"
                )
                return response
            if not resume or initial:
                # The current state as ADDED events, then the changes after it.
                cursor = self._rv
                snapshot = [s for s in self._store[res.key].values() if wanted(s.obj)]
                for stored in snapshot:
                    await response.write(b'{"type":"ADDED","object":' + stored.raw + b"}\n")
                    sent.append(("ADDED", *_where(stored.obj)))
                if initial:
                    await response.write(self._bookmark(res, cursor, initial_end=True))
            next_bookmark = time.monotonic() + self.bookmark_interval
            while not self._closing:
                for event in self._pending(res.key, cursor):
                    cursor = event.rv
                    kind = self._visible(event, wanted)
                    if kind is not None:
                        await response.write(
                            b'{"type":"' + kind.encode() + b'","object":' + event.obj.raw + b"}\n"
                        )
                        sent.append((kind, *_where(event.obj.obj)))
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if bookmarks and now >= next_bookmark:
                    if not self._pending(res.key, cursor):
                        cursor = max(cursor, self._rv)
                    await response.write(self._bookmark(res, cursor))
                    next_bookmark = now + self.bookmark_interval
                    continue
                if raw.transport is None or raw.transport.is_closing():
                    break
                waiter.clear()
                if self._pending(res.key, cursor) or self._closing:
                    continue
                wait = min(1.0, next_bookmark - now) if bookmarks else 1.0
                if deadline is not None:
                    wait = min(wait, deadline - now)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.wait(), max(wait, 0.0))
        except (ConnectionError, RuntimeError) as err:
            # The client went away (RuntimeError: aiohttp refuses writes on a closed transport).
            logger.debug("watch on %s ended: %r", res.plural, err)
        finally:
            self._watchers.discard(waiter)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
        return response

    @staticmethod
    def _visible(event: WatchEvent, wanted: Filter) -> str | None:
        """The event type that a watcher with a selector sees (objects move in and out)."""
        if event.type == "MODIFIED":
            now, before = wanted(event.obj.obj), wanted(event.prev.obj if event.prev else None)
            if now and before:
                return "MODIFIED"
            if now:
                return "ADDED"
            return "DELETED" if before else None
        return event.type if wanted(event.obj.obj) else None

    @staticmethod
    def _bookmark(res: Resource, rv: int, *, initial_end: bool = False) -> bytes:
        metadata: JSON = {"resourceVersion": str(rv)}
        if initial_end:
            metadata["annotations"] = {INITIAL_EVENTS_END: "true"}
        obj = {"kind": res.kind, "apiVersion": res.api_version, "metadata": metadata}
        return json.dumps({"type": "BOOKMARK", "object": obj}).encode() + b"\n"

    # -- writing -------------------------------------------------------------------------

    def _commit(self, res: Resource, kind: str, obj: JSON | None, old: Stored | None) -> Stored:
        """Store (or remove) an object with a new resourceVersion and tell the watchers."""
        self._rv += 1
        assert obj is not None or old is not None
        source = obj if obj is not None else copy.deepcopy(old.obj)  # type: ignore[union-attr]
        source.setdefault("metadata", {})["resourceVersion"] = str(self._rv)
        stored = Stored(source)
        meta = source["metadata"]
        key = (meta.get("namespace") if res.namespaced else None, meta["name"])
        mirror = (kmock.resource(res.group, res.version, res.plural), *key)
        if kind == "DELETED":
            self._store[res.key].pop(key, None)
            with contextlib.suppress(KeyError):
                del self._objects[mirror]
        else:
            self._store[res.key][key] = stored
            # kmock's view for its pattern assertions: only the current version, a copy.
            self._objects[mirror] = copy.deepcopy(source)
        events = self._events[res.key]
        if events.maxlen is not None and len(events) == events.maxlen:
            self._compacted[res.key] = events[0].rv
        events.append(WatchEvent(self._rv, kind, stored, old))
        self._wake()
        if kind != "DELETED" and res.key == CRDS:
            self.register(Resource.from_definition(crds.ResourceDefinition.from_crd(source)))
        if kind == "DELETED":
            self._after_delete(res, source)
        elif res.max_objects is not None and len(self._store[res.key]) > res.max_objects:
            oldest = next(iter(self._store[res.key].values()))
            self._commit(res, "DELETED", None, oldest)
        return stored

    def _create(
        self, res: Resource, namespace: str | None, obj: JSON, query: Mapping[str, str]
    ) -> tuple[JSON, list[str]]:
        self._check_type(res, obj)
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if res.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            namespace = namespace or meta.get("namespace") or "default"
            meta["namespace"] = namespace
            ns = self._store[NAMESPACES].get((None, namespace))
            if ns is None:
                raise ApiError(
                    404,
                    "NotFound",
                    f'namespaces "{namespace}" not found',
                    {"name": namespace, "kind": "namespaces"},
                )
            if ns.obj["metadata"].get("deletionTimestamp"):
                raise ApiError(
                    403,
                    "Forbidden",
                    f"{res.qualified} is forbidden: unable to create new content in namespace "
                    f"{namespace} because it is being terminated",
                )
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            prefix = str(meta["generateName"])[:58]
            for _ in range(10):
                name = prefix + "".join(random.choices(GENERATE_NAME_ALPHABET, k=5))  # noqa: S311
                if (namespace if res.namespaced else None, name) not in self._store[res.key]:
                    break
            meta["name"] = name
        name = meta.get("name") or ""
        if (namespace if res.namespaced else None, name) in self._store[res.key]:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{res.qualified} "{name}" already exists',
                _details(res, name),
            )
        if meta.get("resourceVersion"):
            raise ApiError(
                500, "InternalError", "resourceVersion should not be set on objects to be created"
            )
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(field, None)
        meta.pop("managedFields", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if res.generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if res.custom and "status" in res.subresources:
            obj.pop("status", None)
        self._prepare_create(res, obj)
        obj, warnings = self._admit(res, None, obj, query)
        if query.get("dryRun") == "All":
            obj["metadata"]["resourceVersion"] = str(self._rv)
            return obj, warnings
        return self._commit(res, "ADDED", obj, None).obj, warnings

    def _prepare_create(self, res: Resource, obj: JSON) -> None:
        if res.key == NAMESPACES:
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        elif res.key == SECRETS:
            obj.setdefault("type", "Opaque")
        elif res.key == CRDS:
            spec = obj.get("spec") or {}
            obj["status"] = {
                "acceptedNames": spec.get("names", {}),
                "storedVersions": [v["name"] for v in spec.get("versions", []) if v.get("storage")],
                "conditions": [
                    {
                        "type": kind,
                        "status": "True",
                        "reason": reason,
                        "message": message,
                        "lastTransitionTime": now_rfc3339(),
                    }
                    for kind, reason, message in (
                        ("NamesAccepted", "NoConflicts", "no conflicts found"),
                        ("Established", "InitialNamesAccepted", "the initial names are accepted"),
                    )
                ],
            }
        if res.key == SECRETS:
            string_data = obj.pop("stringData", None) or {}
            data = obj.setdefault("data", {}) if string_data or "data" in obj else None
            if data is not None:
                for key, value in string_data.items():
                    data[key] = base64.b64encode(str(value).encode()).decode()

    def _update(
        self,
        res: Resource,
        namespace: str | None,
        route: Route,
        data: Any,
        query: Mapping[str, str],
    ) -> tuple[JSON, list[str]]:
        name = route.name or ""
        old = self._fetch(res, namespace, name)
        if not isinstance(data, dict):
            raise bad_request("the body of the request must be a JSON object")
        self._check_type(res, data)
        meta = data.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the "
                f"URL ({name})"
            )
        if res.namespaced and meta.get("namespace") not in (None, namespace):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        rv = meta.get("resourceVersion")
        if rv in (None, "") and res.custom:
            raise invalid(
                res,
                name,
                [
                    crds.SchemaProblem(
                        "metadata.resourceVersion",
                        "Invalid value: 0x0: must be specified for an update",
                    )
                ],
            )
        if rv not in (None, "") and rv != old.obj["metadata"]["resourceVersion"]:
            raise conflict(res, name)
        new = self._merge_subresource(res, old.obj, data, route.subresource)
        return self._commit_update(res, old, new, query)

    def _patch(
        self,
        res: Resource,
        namespace: str | None,
        route: Route,
        content_type: str,
        data: Any,
        query: Mapping[str, str],
    ) -> tuple[JSON, list[str]]:
        name = route.name or ""
        old = self._fetch(res, namespace, name)
        if content_type == "application/json-patch+json":
            try:
                patched = json_patch(old.obj, data)
            except PatchFailed as err:
                raise ApiError(422, "Invalid", str(err)) from err
        elif content_type == "application/merge-patch+json" or (
            content_type == "application/strategic-merge-patch+json" and not res.custom
        ):
            if not isinstance(data, dict):
                raise bad_request("a merge patch must be a JSON object")
            patched = merge_patch(old.obj, data)
        else:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: application/json-patch+json, application/merge-patch+json "
                f"(got {content_type!r})",
            )
        if not isinstance(patched, dict):
            raise ApiError(422, "Invalid", "the patched object is not a JSON object")
        meta = patched.get("metadata") or {}
        if meta.get("resourceVersion") != old.obj["metadata"]["resourceVersion"]:
            raise conflict(res, name)
        if meta.get("name") != name or (res.namespaced and meta.get("namespace") != namespace):
            raise bad_request("the name or namespace of the object cannot be patched")
        new = self._merge_subresource(res, old.obj, patched, route.subresource)
        return self._commit_update(res, old, new, query)

    @staticmethod
    def _merge_subresource(res: Resource, old: JSON, new: JSON, subresource: str | None) -> JSON:
        """Keep a status write to the status, and a main write away from the status."""
        if subresource == "status":
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = copy.deepcopy(new["status"])
            else:
                merged.pop("status", None)
            return merged
        merged = copy.deepcopy(new)
        if "status" in res.subresources:
            if "status" in old:
                merged["status"] = copy.deepcopy(old["status"])
            else:
                merged.pop("status", None)
        return merged

    def _commit_update(
        self, res: Resource, old: Stored, new: JSON, query: Mapping[str, str]
    ) -> tuple[JSON, list[str]]:
        old_meta = old.obj["metadata"]
        meta = new.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        for field in (
            "uid",
            "name",
            "namespace",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ):
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        new["apiVersion"], new["kind"] = res.api_version, res.kind
        name = old_meta["name"]
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise invalid(
                    res,
                    name,
                    [
                        crds.SchemaProblem(
                            "metadata.finalizers",
                            "Forbidden: no new finalizers can be added if the object is being "
                            "deleted, found new finalizers " + json.dumps(sorted(added)),
                            "FieldValueForbidden",
                        )
                    ],
                )
        if res.key == SECRETS:
            self._prepare_create(res, new)  # stringData → data, on updates too
        new, warnings = self._admit(res, old.obj, new, query)
        meta = new["metadata"]
        if self._same(old.obj, new, ignore=()):
            return copy.deepcopy(old.obj), warnings  # a no-op: no new version, no event
        if res.generation:
            ignored = ("metadata", "status") if "status" in res.subresources else ("metadata",)
            if not self._same(old.obj, new, ignore=ignored):
                meta["generation"] = int(old_meta.get("generation", 1)) + 1
        if query.get("dryRun") == "All":
            return new, warnings
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            meta.pop("finalizers", None)
            return self._commit(res, "DELETED", new, old).obj, warnings
        return self._commit(res, "MODIFIED", new, old).obj, warnings

    @staticmethod
    def _same(old: JSON, new: JSON, ignore: tuple[str, ...]) -> bool:
        def strip(obj: JSON) -> JSON:
            out = {k: v for k, v in obj.items() if k not in ignore}
            if "metadata" in out:
                out["metadata"] = {
                    k: v
                    for k, v in out["metadata"].items()
                    if k not in ("resourceVersion", "managedFields") and v not in (None, [], {})
                }
            return out

        return strip(old) == strip(new)

    def _delete(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        options: Any,
        query: Mapping[str, str],
    ) -> JSON:
        old = self._fetch(res, namespace, name)
        options = options if isinstance(options, dict) else {}
        preconditions = options.get("preconditions") or {}
        meta = old.obj["metadata"]
        if preconditions.get("uid") not in (None, meta.get("uid")):
            raise ApiError(
                409,
                "Conflict",
                f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                f"UID in object meta: {meta.get('uid')}",
                _details(res, name),
            )
        if preconditions.get("resourceVersion") not in (None, meta.get("resourceVersion")):
            raise conflict(res, name)
        dry_run = query.get("dryRun") == "All" or "All" in (options.get("dryRun") or [])
        if meta.get("finalizers") or res.key == NAMESPACES:
            if meta.get("deletionTimestamp"):
                return copy.deepcopy(old.obj)
            new = copy.deepcopy(old.obj)
            new["metadata"]["deletionTimestamp"] = now_rfc3339()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            if res.generation:  # as the server does when it starts a graceful deletion
                new["metadata"]["generation"] = int(meta.get("generation", 1)) + 1
            if res.key == NAMESPACES:
                new.setdefault("status", {})["phase"] = "Terminating"
            if dry_run:
                return new
            stored = self._commit(res, "MODIFIED", new, old)
            if res.key == NAMESPACES:
                self._empty_namespace(name)
            return copy.deepcopy(stored.obj)
        if dry_run:
            return copy.deepcopy(old.obj)
        return copy.deepcopy(self._commit(res, "DELETED", None, old).obj)

    def _delete_collection(
        self, res: Resource, namespace: str | None, query: Mapping[str, str]
    ) -> JSON:
        wanted = self._filter(res, namespace, None, query)
        doomed = [s.obj["metadata"] for s in self._store[res.key].values() if wanted(s.obj)]
        items = [
            self._delete(res, meta.get("namespace"), meta["name"], None, query) for meta in doomed
        ]
        return {
            "kind": f"{res.kind}List",
            "apiVersion": res.api_version,
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    def _empty_namespace(self, namespace: str) -> None:
        """What the namespace controller does: delete the content, then the namespace."""
        for res in list(self._registry.values()):
            if res.namespaced:
                for ns, name in [k for k in self._store[res.key] if k[0] == namespace]:
                    self._delete(res, ns, name, None, {})
        self._finish_namespace(namespace)

    def _finish_namespace(self, namespace: str) -> None:
        key = NAMESPACES
        ns = self._store[key].get((None, namespace))
        if ns is None or not ns.obj["metadata"].get("deletionTimestamp"):
            return
        if any(k[0] == namespace for res in self._registry.values() for k in self._store[res.key]):
            return
        self._commit(self._registry[key], "DELETED", None, ns)

    def _after_delete(self, res: Resource, obj: JSON) -> None:
        if res.key == CRDS:
            spec = obj.get("spec", {})
            for version in spec.get("versions", []):
                key = (spec.get("group", ""), version.get("name", ""), spec["names"]["plural"])
                if key in self._registry:
                    for stored in list(self._store[key].values()):
                        self._commit(self._registry[key], "DELETED", None, stored)
                    self.unregister(key)
        elif res.namespaced:
            self._finish_namespace(obj["metadata"].get("namespace", ""))

    # -- admission ---------------------------------------------------------------------

    @staticmethod
    def _check_type(res: Resource, obj: JSON) -> None:
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if not kind and not res.custom:
            # Built-in kinds take their type from the URL; custom resources must say it.
            kind = obj["kind"] = res.kind
        if not kind:
            raise bad_request(f"Object 'Kind' is missing in '{json.dumps(obj)[:200]}'")
        if kind != res.kind or api_version not in (None, res.api_version):
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({res.api_version}) or the kind ({kind}) is not {res.kind}"
            )
        obj["apiVersion"] = res.api_version

    def _admit(
        self, res: Resource, old: JSON | None, obj: JSON, query: Mapping[str, str]
    ) -> tuple[JSON, list[str]]:
        """Prune, default and validate as the server does; 422 on problems."""
        meta = obj["metadata"]
        for key in [k for k, v in meta.items() if v in (None, "", [], {})]:
            del meta[key]  # the server stores empty lists and maps as absent
        name = meta.get("name") or ""
        warnings: list[str] = []
        problems = list(self._check_metadata(res, obj["metadata"]))
        if res.custom and res.catalog is not None:
            obj, removed = res.catalog.prune(obj)
            if removed:
                mode = query.get("fieldValidation", "Warn")
                if mode == "Strict":
                    listed = ", ".join(f'unknown field "{path}"' for path in removed)
                    raise bad_request(f"strict decoding error: {listed}")
                if mode != "Ignore":
                    warnings.extend(f'unknown field \\"{path}\\"' for path in removed)
            obj = res.catalog.apply_defaults(obj)
            if old is None:
                problems.extend(res.catalog.validate(obj, strict=False))
            else:
                problems.extend(res.catalog.validate_update(old, obj, strict=False))
        elif res.key == CRDS:
            try:
                crds.Catalog([crds.ResourceDefinition.from_crd(obj)])
            except crds.CRDError as err:
                problems.append(crds.SchemaProblem("spec", f"Invalid value: {err}"))
        elif res.key == SECRETS:
            for key, value in (obj.get("data") or {}).items():
                try:
                    base64.b64decode(str(value), validate=True)
                except binascii.Error:
                    problems.append(
                        crds.SchemaProblem(f"data[{key}]", "Invalid value: illegal base64 data")
                    )
        if problems:
            raise invalid(res, name, problems)
        return obj, warnings

    @staticmethod
    def _check_metadata(res: Resource, meta: JSON) -> Iterator[crds.SchemaProblem]:
        name = meta.get("name")
        if not name:
            yield crds.SchemaProblem(
                "metadata.name",
                "Required value: name or generateName is required",
                "FieldValueRequired",
            )
        elif res.key == NAMESPACES:
            if len(name) > 63 or not DNS1123_LABEL.match(name):
                yield crds.SchemaProblem(
                    "metadata.name",
                    f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower '
                    "case alphanumeric characters or '-', and must start and end with an "
                    "alphanumeric character",
                )
        elif res.custom:
            if name in (".", "..") or "/" in name or "%" in name:
                yield crds.SchemaProblem(
                    "metadata.name", f'Invalid value: "{name}": may not contain "/" or "%"'
                )
        elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
            yield crds.SchemaProblem(
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower '
                "case alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character",
            )
        labels = meta.get("labels") or {}
        if not isinstance(labels, dict):
            yield crds.SchemaProblem("metadata.labels", "Invalid value: must be an object")
            labels = {}
        for key, value in labels.items():
            if not _qualified_name(key):
                yield crds.SchemaProblem(
                    "metadata.labels", f'Invalid value: "{key}": name part must be a qualified name'
                )
            if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
                yield crds.SchemaProblem(
                    "metadata.labels",
                    f"Invalid value: {json.dumps(value)}: a valid label must be an empty string or "
                    "consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                    "with an alphanumeric character (at most 63 characters)",
                )
        annotations = meta.get("annotations") or {}
        if not isinstance(annotations, dict):
            yield crds.SchemaProblem("metadata.annotations", "Invalid value: must be an object")
            annotations = {}
        for key, value in annotations.items():
            if not _qualified_name(key.lower()):
                yield crds.SchemaProblem(
                    "metadata.annotations",
                    f'Invalid value: "{key}": name part must be a qualified name',
                )
            if not isinstance(value, str):
                yield crds.SchemaProblem(
                    f"metadata.annotations[{key}]", "Invalid value: must be a string"
                )
        if sum(len(k) + len(str(v)) for k, v in annotations.items()) > 256 * 1024:
            yield crds.SchemaProblem(
                "metadata.annotations", "Too long: must have at most 262144 bytes"
            )
        finalizers = meta.get("finalizers") or []
        for index, finalizer in enumerate(finalizers if isinstance(finalizers, list) else []):
            if not isinstance(finalizer, str) or not _qualified_name(finalizer):
                yield crds.SchemaProblem(
                    f"metadata.finalizers[{index}]",
                    f"Invalid value: {json.dumps(finalizer)}: must be a qualified name",
                )
        owners = meta.get("ownerReferences") or []
        controllers = 0
        for index, owner in enumerate(owners if isinstance(owners, list) else []):
            for field in ("apiVersion", "kind", "name", "uid"):
                if not isinstance(owner, dict) or not owner.get(field):
                    yield crds.SchemaProblem(
                        f"metadata.ownerReferences[{index}].{field}",
                        "Required value",
                        "FieldValueRequired",
                    )
            if isinstance(owner, dict) and owner.get("controller"):
                controllers += 1
        if controllers > 1:
            yield crds.SchemaProblem(
                "metadata.ownerReferences",
                "Invalid value: only one reference can have Controller set to true",
            )


def _number(query: Mapping[str, str], name: str) -> float:
    try:
        return float(query.get(name) or 0)
    except ValueError as err:
        raise bad_request(f"invalid {name}: {query[name]!r}") from err


def _qualified_name(value: str) -> bool:
    prefix, _, name = value.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(QUALIFIED_NAME.match(name))


# --- the cluster: a served emulator with a client ------------------------------------------


class ApiResponseError(Exception):
    """A request to the emulator answered with an error status."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body

    @property
    def reason(self) -> str | None:
        return self.body.get("reason") if isinstance(self.body, dict) else None

    @property
    def causes(self) -> list[JSON]:
        if isinstance(self.body, dict):
            return list((self.body.get("details") or {}).get("causes") or [])
        return []


class EmulatedCluster:
    """A :class:`PodstoreEmulator` served on 127.0.0.1 in its own thread, plus a client.

    Use as a context manager (the ``kube`` fixture does). The client methods are
    synchronous and safe to call from any thread or from async tests; ``aio`` has
    the same methods as coroutines, for tests whose operator runs in the test's loop.
    """

    token = "podstore-e2e-token"

    def __init__(
        self,
        emulator: PodstoreEmulator | None = None,
        *,
        kubeconfig: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.emulator = emulator if emulator is not None else PodstoreEmulator()
        self._host, self._port = host, port
        self._kubeconfig_path = kubeconfig
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self.aio = AsyncClient(self)

    # -- life cycle ----------------------------------------------------------------------

    def __enter__(self) -> EmulatedCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Serve on 127.0.0.1; after :meth:`stop`, again on the same port with the same state
        (an API server that was down for a while)."""
        self._started.clear()
        self._failure = None
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the Kubernetes emulator did not start in 10 seconds")
        if self._failure is not None:
            raise RuntimeError("the Kubernetes emulator failed to start") from self._failure
        if self._kubeconfig_path is not None:
            self.write_kubeconfig(self._kubeconfig_path)

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as err:  # reported to start() or at stop
            self._failure = err
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self.emulator._closing = False  # served again after a stop: watches may stay open
        async with self.emulator:
            server = aiohttp.web.Server(self.emulator, handler_cancellation=True)
            runner = aiohttp.web.ServerRunner(server, shutdown_timeout=1.0)
            await runner.setup()
            site = aiohttp.web.TCPSite(runner, self._host, self._port)
            await site.start()
            self._port = runner.addresses[0][1]
            self._started.set()
            try:
                await self._stopping.wait()
            finally:
                await self.emulator.close_watches()
                await runner.cleanup()

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` in the emulator's loop (to reach the emulator's state safely)."""
        if self._loop is None:
            return fn()

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    # -- where it is ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def kubeconfig(self) -> Path:
        if self._kubeconfig_path is None:
            raise RuntimeError("no kubeconfig was written: pass kubeconfig=PATH")
        return self._kubeconfig_path

    def write_kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "podstore-e2e", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "emulator",
                    "context": {
                        "cluster": "emulator",
                        "user": "podstore-e2e",
                        "namespace": "default",
                    },
                }
            ],
            "current-context": "emulator",
        }
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self._kubeconfig_path = path
        return path

    @property
    def login_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``kopf.ConnectionInfo`` to reach the emulator."""
        return {"server": self.url, "token": self.token, "default_namespace": "default"}

    # -- what it saw ---------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """The requests served so far (the most recent ``emulator.log_size``)."""
        return self.emulator.request_log

    def permissions_used(self) -> set[tuple[str, str, str]]:
        """Every (apiGroup, resource[/subresource], verb) the clients exercised."""
        return {p for r in self.requests if (p := r.permission) is not None}

    @property
    def server_errors(self) -> list[str]:
        """Tracebacks of requests the emulator itself failed on (bugs, not API errors)."""
        return list(self.emulator.server_errors)

    # -- the client ----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        check: bool = True,
    ) -> tuple[int, Any]:
        """Send one request; return (status, decoded JSON). Raise on errors if ``check``."""
        if query:
            path = f"{path}?{urllib.parse.urlencode(query)}"
        payload = None if body is None else json.dumps(body).encode()
        connection = http.client.HTTPConnection(self._host, self._port, timeout=30)
        try:
            headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
            if payload is not None:
                headers["Content-Type"] = content_type
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
            status = response.status
        finally:
            connection.close()
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = raw.decode(errors="replace")
        if check and status >= 400:
            raise ApiResponseError(status, decoded)
        return status, decoded

    def path(
        self,
        resource: str,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
        *,
        api_version: str | None = None,
    ) -> str:
        """The URL path of a collection or an object (``resource``: plural, kind or short)."""
        res = self.emulator.resource(resource, api_version)
        base = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
        if res.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{res.plural}"
        if name is not None:
            base += f"/{name}"
        if subresource is not None:
            base += f"/{subresource}"
        return base

    def create(self, obj: Mapping[str, Any], **query: str) -> JSON:
        """Create an object; its kind and apiVersion say where (default namespace: default)."""
        res = self.emulator.resource(obj["kind"], obj.get("apiVersion"))
        namespace = (obj.get("metadata") or {}).get("namespace") or "default"
        path = self.path(res.plural, namespace if res.namespaced else None, api_version=None)
        return self.request("POST", path, dict(obj), query=query or None)[1]  # type: ignore[no-any-return]

    def get(self, resource: str, namespace: str | None, name: str) -> JSON | None:
        """The object, or None when there is none."""
        status, body = self.request("GET", self.path(resource, namespace, name), check=False)
        if status == 404:
            return None
        if status >= 400:
            raise ApiResponseError(status, body)
        return body  # type: ignore[no-any-return]

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        **query: str,
    ) -> JSON:
        """The ``<Kind>List`` object; all namespaces when ``namespace`` is None."""
        params = dict(query)
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        return self.request("GET", self.path(resource, namespace), query=params)[1]  # type: ignore[no-any-return]

    def patch(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> JSON:
        """Patch an object: ``patch_type`` is merge, json or strategic."""
        content_type = {
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
            "strategic": "application/strategic-merge-patch+json",
        }[patch_type]
        path = self.path(resource, namespace, name, subresource)
        return self.request("PATCH", path, patch, content_type=content_type)[1]  # type: ignore[no-any-return]

    def patch_status(self, resource: str, namespace: str | None, name: str, status: JSON) -> JSON:
        """Merge-patch the status subresource with ``{"status": status}``."""
        return self.patch(resource, namespace, name, {"status": status}, subresource="status")

    def replace(self, obj: Mapping[str, Any], *, subresource: str | None = None) -> JSON:
        """PUT the object (it must carry its metadata.resourceVersion)."""
        res = self.emulator.resource(obj["kind"], obj.get("apiVersion"))
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or "default" if res.namespaced else None
        path = self.path(res.plural, namespace, meta["name"], subresource)
        return self.request("PUT", path, dict(obj))[1]  # type: ignore[no-any-return]

    def delete(
        self, resource: str, namespace: str | None, name: str, *, missing_ok: bool = False
    ) -> JSON | None:
        """Delete an object; the response is the object (marked, or as it was last)."""
        status, body = self.request("DELETE", self.path(resource, namespace, name), check=False)
        if status == 404 and missing_ok:
            return None
        if status >= 400:
            raise ApiResponseError(status, body)
        return body  # type: ignore[no-any-return]

    def wait_for(
        self, predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02
    ) -> T:
        """Poll ``predicate`` until it returns something true; return that."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"not true within {timeout}s; last value: {value!r}")
            time.sleep(interval)


class AsyncClient:
    """The client of an :class:`EmulatedCluster`, as coroutines (the calls go to a thread)."""

    def __init__(self, cluster: EmulatedCluster) -> None:
        self._cluster = cluster

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name not in {
            "request",
            "create",
            "get",
            "list",
            "patch",
            "patch_status",
            "replace",
            "delete",
        }:
            raise AttributeError(name)
        method = getattr(self._cluster, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return call

    async def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout: float = 10.0,
        interval: float = 0.02,
    ) -> Any:
        """Poll a sync or async ``predicate`` until it is true, without blocking the loop."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"not true within {timeout}s; last value: {value!r}")
            await asyncio.sleep(interval)


# --- kopf against the emulator -------------------------------------------------------------


@contextlib.asynccontextmanager
async def kopf_operator(
    cluster: EmulatedCluster,
    registry: Any,
    *,
    settings: Any = None,
    login: bool = True,
    ready_timeout: float = 10.0,
    **kwargs: Any,
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``kopf.operator`` in the current loop against the emulator, then stop it.

    With ``login``, a login handler pointing at the emulator is added to ``registry``.
    Extra keyword arguments go to ``kopf.operator`` (default: standalone, cluster-wide).
    """
    import kopf

    if login:

        @kopf.on.login(registry=registry)
        def _login_to_emulator(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(**cluster.login_kwargs)

    kwargs.setdefault("standalone", True)
    if "namespaces" not in kwargs and "namespace" not in kwargs:
        kwargs.setdefault("clusterwide", True)
    stop_flag: asyncio.Event = asyncio.Event()
    ready_flag: asyncio.Event = asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(
            registry=registry,
            settings=settings,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
            **kwargs,
        )
    )
    try:
        waiter = asyncio.create_task(ready_flag.wait())
        done, _ = await asyncio.wait(
            {task, waiter}, timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            waiter.cancel()
            task.result()  # re-raise why it ended
            raise RuntimeError("the operator ended before it was ready")
        if not done:
            waiter.cancel()
            raise TimeoutError(f"the operator was not ready in {ready_timeout}s")
        yield task
    finally:
        stop_flag.set()
        try:
            await asyncio.wait_for(task, 10)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
