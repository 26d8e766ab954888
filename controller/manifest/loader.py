"""Manifests on disk, read into documents, with every problem located.

``podstore run -f PATH`` takes a file or a folder (its ``.yaml``, ``.yml`` and
``.json`` files, not its subfolders; dotfiles, editor backups and other files are
skipped). A file may hold several YAML documents. Each document is a
``StoragePod``, a ``StorageContainer``, a ``Secret`` of type
``kubernetes.io/dockerconfigjson`` (or ``kubernetes.io/dockercfg``) for
``imagePullSecrets``, or a ``List`` of those.

Reading never stops at the first mistake: every document that is wrong becomes a
:class:`Problem` naming the file, the document's position (1 for the first) and
the field, and every good document is still returned. What :func:`load` cannot
read at all (a file that is not YAML from some document on, a file that vanished
between listing and reading) is recorded in :attr:`Loaded.incomplete`, so that
the caller keeps what it had from that file instead of taking its silence for a
deletion.

StoragePods and StorageContainers are held to their CRDs exactly as the API
server would (``controller.crds``: nulls pruned, defaults applied, the schema
validated, unknown fields reported). A StoragePod without ``spec.nodeName`` is
given the local node's name first, as the kubelet does with static pods; one that
names another node is a problem, not silently someone else's.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from controller import crds
from controller.reconcile import model

SUFFIXES = (".yaml", ".yml", ".json")
SECRET_TYPES = {
    "kubernetes.io/dockerconfigjson": ".dockerconfigjson",
    "kubernetes.io/dockercfg": ".dockercfg",
}
DEFAULT_NAMESPACE = "default"
# What one manifest may cost, checked before it is read in full: a file's size, the
# nodes a document stands for once its YAML aliases are expanded, and how deep it
# nests. Kubernetes objects are far below each (the API server refuses 3 MiB).
MAX_FILE_BYTES = 3 * 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 64
# Fields the API server sets; a manifest copied from `kubectl get -o yaml` carries
# them, and they mean nothing here (podstore run assigns its own).
SERVER_FIELDS = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where it is, which field, and what to do."""

    file: str
    document: int | None  # 1 for a file's first document; None for the file as a whole
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.document is None else f"{self.file}, document {self.document}"
        field_ = f"{self.field}: " if self.field else ""
        return f"{where}: {field_}{self.message}"


@dataclass(frozen=True)
class Key:
    """Which resource: kind, namespace and name (what must be unique)."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class Document:
    """A good StoragePod or StorageContainer, defaulted, and where it came from."""

    key: Key
    obj: dict[str, Any]
    file: str
    document: int


@dataclass
class Loaded:
    """Everything read from the paths of one ``run -f``."""

    documents: list[Document] = field(default_factory=list)
    # (namespace, name) -> the docker config of an image pull secret
    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    # Files of which some part could not be read: what they held before is kept.
    incomplete: set[str] = field(default_factory=set)
    # Resources named by documents that were rejected: what they were before is kept.
    keep: set[Key] = field(default_factory=set)
    # False when a path given does not exist: then nothing is removed at all.
    complete: bool = True

    def keeps(self, key: Key, file: str) -> bool:
        """Whether a resource that was read from ``file`` before, and is not among
        :attr:`documents` now, stays as it was (rather than being removed)."""
        return not self.complete or key in self.keep or file in self.incomplete


def manifest_files(path: str) -> list[str]:
    """The manifest files a ``-f`` path stands for, sorted; [] for a folder without any.

    Raises ``FileNotFoundError`` when the path does not exist.
    """
    if os.path.isdir(path):
        out = []
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.name.endswith(SUFFIXES):
                continue
            if entry.is_file():
                out.append(os.path.join(path, entry.name))
        return out
    if os.path.exists(path):
        return [path]
    raise FileNotFoundError(path)


def snapshot(paths: Sequence[str]) -> tuple[Any, ...]:
    """What changes when a manifest is added, changed or removed (cheap: stat only)."""
    out: list[Any] = []
    for path in paths:
        try:
            files = manifest_files(path)
        except FileNotFoundError:
            out.append((path, None))
            continue
        except OSError as err:
            out.append((path, str(err)))
            continue
        for name in files:
            try:
                st = os.stat(name)
            except OSError:
                out.append((name, None))
                continue
            out.append((name, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


def load(paths: Sequence[str], *, node_name: str) -> Loaded:
    """Read every manifest under ``paths``: good documents, secrets and problems."""
    result = Loaded()
    seen: dict[Key, list[tuple[str, int, str]]] = {}
    found: list[Document] = []
    for path in paths:
        try:
            files = manifest_files(path)
        except FileNotFoundError:
            result.problems.append(
                Problem(path, None, "", "no such file or folder; nothing in it is changed")
            )
            result.complete = False
            continue
        except OSError as err:
            result.problems.append(Problem(path, None, "", f"cannot list: {err.strerror}"))
            result.complete = False
            continue
        for name in files:
            for key, doc, index, prefix in _read_file(name, result, node_name):
                seen.setdefault(key, []).append((name, index, prefix))
                if doc is not None:
                    found.append(doc)
    for key, places in seen.items():
        if len(places) < 2:
            continue
        result.keep.add(key)
        for file, index, prefix in places:
            others = [
                f"{f}, document {d}" + (f" ({p.rstrip('.')})" if p else "")
                for f, d, p in places
                if (f, d, p) != (file, index, prefix)
            ]
            result.problems.append(
                Problem(
                    file,
                    index,
                    prefix + "metadata.name",
                    f"{key} is also defined in {'; '.join(others)}; none of them is applied "
                    "until the name is unique",
                )
            )
    result.documents = [doc for doc in found if len(seen[doc.key]) == 1]
    return result


def _read_file(
    name: str, result: Loaded, node_name: str
) -> Iterator[tuple[Key, Document | None, int, str]]:
    """(key, document or None if rejected, index) for each resource the file names."""
    try:
        with open(name, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            result.problems.append(
                Problem(
                    name,
                    None,
                    "",
                    f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, not read: "
                    "split it into smaller files",
                )
            )
            result.incomplete.add(name)
            return
        text = data.decode("utf-8")
    except FileNotFoundError:
        # Removed between listing and reading: the next look will tell.
        result.incomplete.add(name)
        return
    except (OSError, UnicodeDecodeError) as err:
        result.problems.append(Problem(name, None, "", f"cannot read: {err}"))
        result.incomplete.add(name)
        return
    for index, raw, error in _documents(name, text):
        if error is not None:
            result.problems.append(Problem(name, index, "", error))
            result.incomplete.add(name)
            return
        if raw is None:
            continue
        yield from _document(name, index, raw, result, node_name)


def _documents(name: str, text: str) -> Iterator[tuple[int, Any, str | None]]:
    """(index, document, error) for each document of a file; an error ends the file."""
    if name.endswith(".json"):
        try:
            depth = _json_depth(text)
            if depth > MAX_DEPTH:
                yield 1, None, f"nested {depth} levels deep, more than {MAX_DEPTH}"
                return
            yield 1, json.loads(text), None
        except (ValueError, RecursionError) as err:
            yield 1, None, f"not valid JSON: {err}"
        return
    index = 0
    bounded = _BoundedLoader(text)
    try:
        while True:
            error: str | None = None
            try:
                if not bounded.check_data():  # type: ignore[no-untyped-call]
                    break
                doc = bounded.get_data()
            except yaml.YAMLError as err:
                error = _yaml_error(err)
            except RecursionError:
                error = f"nested more than {MAX_DEPTH} levels deep"
            except (ValueError, TypeError, OverflowError) as err:
                # A value its tag cannot hold (a timestamp with month 13, a 5,000-digit int).
                error = str(err)
            index += 1
            if error is not None:
                yield index, None, f"not valid YAML: {error}"
                return
            yield index, doc, None
    finally:
        bounded.dispose()


def _json_depth(text: str) -> int:
    """How deep a JSON text nests (brackets outside strings), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a document before it is constructed when it
    nests deeper than MAX_DEPTH, stands for more than MAX_NODES nodes once its
    aliases are expanded (an alias bomb), or repeats a key in a mapping."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested more than {MAX_DEPTH} levels deep",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        if node is not None:
            _check_nodes(node)
        return node


def _check_nodes(root: yaml.Node) -> None:
    """Refuse a document whose expanded tree passes MAX_NODES or repeats a key."""
    sizes: dict[int, int] = {}
    # Iterative post-order walk over the node graph: aliases share nodes, so each
    # node's expanded size is counted once and reused.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_: set[int] = set()
    while stack:
        node, done = stack.pop()
        ident = id(node)
        if done:
            open_.discard(ident)
            total = 1 + sum(sizes[id(child)] for child in _children_of(node))
            if total > MAX_NODES:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"stands for more than {MAX_NODES} values once its aliases are "
                    "expanded; write it out or make it smaller",
                    node.start_mark,
                )
            sizes[ident] = total
            continue
        if ident in sizes:
            continue
        if ident in open_:
            raise yaml.composer.ComposerError(
                None, None, "an alias refers to the node that holds it", node.start_mark
            )
        open_.add(ident)
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in keys:
                        raise yaml.composer.ComposerError(
                            None,
                            None,
                            f"duplicate key {key.value!r}",
                            key.start_mark,
                        )
                    keys.add(key.value)
        stack.append((node, True))
        stack.extend((child, False) for child in _children_of(node) if id(child) not in sizes)


def _children_of(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _yaml_error(err: yaml.YAMLError) -> str:
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        mark = err.problem_mark
        what = err.problem or str(err)
        return f"{what} (line {mark.line + 1}, column {mark.column + 1})"
    return str(err).replace("\n", " ")


def _document(
    name: str, index: int, raw: Any, result: Loaded, node_name: str, prefix: str = ""
) -> Iterator[tuple[Key, Document | None, int, str]]:
    def problem(path: str, message: str) -> None:
        result.problems.append(Problem(name, index, prefix + path, message))

    try:
        # YAML has types JSON lacks (timestamps, non-string keys); the API sees JSON.
        obj = json.loads(json.dumps(raw, default=str))
    except (TypeError, ValueError) as err:
        problem("", f"cannot be read as JSON: {err}")
        return
    if not isinstance(obj, dict):
        problem("", f"must be an object (a Kubernetes manifest), not {_json_type(obj)}")
        result.incomplete.add(name)  # which resource it was meant to be, nobody can tell
        return
    kind = obj.get("kind")
    if not isinstance(kind, str):
        if kind is None:
            problem("kind", "Required value: StoragePod, StorageContainer or Secret")
        else:
            problem(
                "kind",
                f"Invalid value: {_json_type(kind)}: a string, StoragePod, StorageContainer "
                "or Secret",
            )
        for ours in crds.RUN_KINDS:
            _keep(ours, obj, name, result)
        return
    if kind == "List" and not prefix:
        items = obj.get("items")
        if not isinstance(items, list):
            problem("items", "must be a list of objects")
            result.incomplete.add(name)
            return
        for i, item in enumerate(items):
            yield from _document(name, index, item, result, node_name, f"items[{i}].")
        return
    if kind == "Secret":
        _secret(obj, problem, result)
        return
    if kind not in crds.RUN_KINDS:
        if not isinstance(kind, str) or not kind:
            problem("kind", "Required value: StoragePod, StorageContainer or Secret")
        else:
            problem(
                "kind",
                f"Unsupported value: {json.dumps(kind)}: podstore run reads StoragePod, "
                "StorageContainer and Secret (kubernetes.io/dockerconfigjson)",
            )
        # A misspelt kind must not delete the resource it was meant to be.
        for ours in crds.RUN_KINDS:
            _keep(ours, obj, name, result)
        return
    kind = str(kind)
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        for server_field in SERVER_FIELDS:
            meta.pop(server_field, None)
        if meta.get("namespace") is None:
            meta["namespace"] = DEFAULT_NAMESPACE
    obj.pop("status", None)
    spec = obj.get("spec")
    if kind == model.POD_KIND and isinstance(spec, dict):
        given = spec.get("nodeName")
        if given is None:
            spec["nodeName"] = node_name
        elif given != node_name:
            problem(
                "spec.nodeName",
                f"{json.dumps(given)} is not this node ({node_name!r}): omit spec.nodeName, "
                f"or run with --node-name {given if isinstance(given, str) else 'NODE'}",
            )
            key = _keep(kind, obj, name, result)
            if key is not None:
                yield key, None, index, prefix
            return
    problems = crds.validate(obj)
    if problems:
        for p in problems:
            # A top-level key that is the empty string is still a field: name it.
            problem(p.path or '""', p.message)
        key = _keep(kind, obj, name, result)
        if key is not None:
            yield key, None, index, prefix
        return
    obj = crds.apply_defaults(obj)
    meta = obj["metadata"]
    key = Key(kind, meta["namespace"], meta["name"])
    yield key, Document(key, obj, name, index), index, prefix


def _keep(kind: str, obj: Mapping[str, Any], file: str, result: Loaded) -> Key | None:
    """Keep what the resource a rejected document names was; None when it names none
    (then everything the file held before is kept)."""
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        result.incomplete.add(file)
        return None
    namespace = meta.get("namespace") if isinstance(meta, Mapping) else None
    key = Key(kind, namespace if isinstance(namespace, str) else DEFAULT_NAMESPACE, name)
    result.keep.add(key)
    return key


def _secret(obj: dict[str, Any], problem: Any, result: Loaded) -> None:
    if obj.get("apiVersion") != "v1":
        problem("apiVersion", f'Unsupported value: {json.dumps(obj.get("apiVersion"))}: "v1"')
        return
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        problem("metadata.name", "Required value")
        return
    namespace = meta.get("namespace") or DEFAULT_NAMESPACE
    type_ = obj.get("type")
    key = SECRET_TYPES.get(str(type_))
    if key is None:
        problem(
            "type",
            f"Unsupported value: {json.dumps(type_)}: podstore run reads only image pull "
            'secrets: "kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg"',
        )
        return
    text: str | None = None
    string_data = obj.get("stringData")
    data = obj.get("data")
    if isinstance(string_data, dict) and isinstance(string_data.get(key), str):
        text = string_data[key]
        where = f'stringData["{key}"]'
    elif isinstance(data, dict) and isinstance(data.get(key), str):
        where = f'data["{key}"]'
        try:
            text = base64.b64decode(data[key], validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            problem(where, "Invalid value: not base64 of UTF-8 text")
            return
    else:
        problem(f'data["{key}"]', f"Required value: a secret of type {type_} holds {key}")
        return
    try:
        config = json.loads(text)
    except ValueError as err:
        problem(where, f"Invalid value: not JSON ({err})")
        return
    if not isinstance(config, dict) or (
        key == ".dockerconfigjson" and not isinstance(config.get("auths"), dict)
    ):
        problem(where, 'Invalid value: expected a docker config, {"auths": {...}}')
        return
    ident = (str(namespace), meta["name"])
    if ident in result.secrets:
        problem("metadata.name", f"Secret {ident[0]}/{ident[1]} is defined twice; the first wins")
        return
    result.secrets[ident] = config


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    return "null"
