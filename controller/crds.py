"""The podstore CustomResourceDefinitions, read from ``crds/`` and applied like the API server.

``crds/`` (top level) is the single source of the schemas; the package ships a
byte-identical copy in ``controller/crds/`` (checked by tests/deploy/test_crds_in_sync.py)
so that an installed wheel or the agent image finds them. This module reads them so that the
manifest-file mode (``podstore run -f``), the tests and the API emulator hold objects
to exactly the rules that a real API server enforces from the same files: nulls
pruned, defaults applied, the OpenAPI schema validated, list-map keys unique and the
immutability rules (``self == oldSelf``) checked on updates. Unknown fields, which the
API server drops silently, are reported (``strict=True``) or pruned (:meth:`prune`),
because a typo in a manifest on disk deserves a message, not silence.

Pure Python, no kopf: the manifest mode and the reconciler use it as well.
"""

from __future__ import annotations

import copy
import datetime
import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import jsonschema
import yaml

from controller.api import schema

GROUP: Final = schema.GROUP
VERSION: Final = schema.VERSION
API_VERSION: Final = schema.API_VERSION

# The kinds of podstore and their plurals (the names in the API's URLs).
KINDS: Final[Mapping[str, str]] = MappingProxyType(
    {kind: str(k["plural"]) for kind, k in schema.KINDS.items()}
)
# The kinds `podstore run` reads from manifest files (a StorageImage asks the cluster's
# nodes to pre-pull an image; there is no cluster in file mode).
RUN_KINDS: Final[Mapping[str, str]] = MappingProxyType(
    {k: v for k, v in KINDS.items() if k != schema.IMAGE_KIND}
)

# The package's copy of the repository's top-level crds/ (the one source of the CRDs),
# shipped as package data so that a non-editable install reads the same files.
CRD_DIR: Final = Path(__file__).resolve().parent / "crds"

# Fields of ObjectMeta: the API server keeps these in a custom resource's metadata
# and drops any other key there.
OBJECT_META_FIELDS: Final = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)

_ROOT_FIELDS: Final = frozenset({"apiVersion", "kind", "metadata"})
_DNS1123_SUBDOMAIN: Final = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_RFC3339: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)

JSONObject = dict[str, Any]


class CRDError(Exception):
    """A CRD file is missing or unreadable, or a kind is not one of the CRDs."""


@dataclass(frozen=True)
class SchemaProblem:
    """One reason why an object does not fit its CRD, as the API server would say it.

    ``path`` names the field (``spec.containers[1].name``; empty for the object as a
    whole), ``message`` says what is wrong, and ``reason`` is the API's cause type
    (``FieldValueRequired``, ``FieldValueNotSupported``, ``FieldValueInvalid``...).
    """

    path: str
    message: str
    reason: str = "FieldValueInvalid"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass(frozen=True)
class PrinterColumn:
    """One ``additionalPrinterColumns`` entry: what ``kubectl get`` shows."""

    name: str
    type: str
    json_path: str
    priority: int = 0
    description: str = ""


@dataclass(frozen=True)
class ResourceDefinition:
    """What a CRD says about its kind, for the served-and-stored version."""

    name: str
    group: str
    version: str
    kind: str
    list_kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...]
    categories: tuple[str, ...]
    subresources: tuple[str, ...]
    printer_columns: tuple[PrinterColumn, ...]
    selectable_fields: tuple[str, ...]
    schema: Mapping[str, Any] = field(repr=False)
    crd: Mapping[str, Any] = field(repr=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @classmethod
    def from_crd(cls, crd: Mapping[str, Any]) -> ResourceDefinition:
        """Read a CustomResourceDefinition document (apiextensions.k8s.io/v1)."""
        try:
            spec = crd["spec"]
            names = spec["names"]
            versions = spec["versions"]
            version = next(
                (v for v in versions if v.get("storage")),
                versions[0],
            )
            schema = version["schema"]["openAPIV3Schema"]
            group = spec["group"]
            plural = names["plural"]
            kind = names["kind"]
        except (KeyError, IndexError, TypeError) as err:
            name = crd.get("metadata", {}).get("name", "?") if isinstance(crd, Mapping) else "?"
            raise CRDError(f"CRD {name!r} lacks {err}: not an apiextensions.k8s.io/v1 CRD") from err
        columns = tuple(
            PrinterColumn(
                name=c["name"],
                type=c["type"],
                json_path=c["jsonPath"],
                priority=int(c.get("priority", 0)),
                description=c.get("description", ""),
            )
            for c in version.get("additionalPrinterColumns", ())
        )
        return cls(
            name=crd.get("metadata", {}).get("name", f"{plural}.{group}"),
            group=group,
            version=version["name"],
            kind=kind,
            list_kind=names.get("listKind", f"{kind}List"),
            plural=plural,
            singular=names.get("singular", kind.lower()),
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            short_names=tuple(names.get("shortNames", ())),
            categories=tuple(names.get("categories", ())),
            subresources=tuple(sorted(version.get("subresources", {}) or {})),
            printer_columns=columns,
            selectable_fields=tuple(f["jsonPath"] for f in version.get("selectableFields", ())),
            schema=schema,
            crd=crd,
        )


def read_crd_files(directory: Path | str | None = None) -> list[JSONObject]:
    """Load the CRD documents of every ``*.yaml`` / ``*.yml`` file in a folder."""
    folder = Path(directory) if directory is not None else CRD_DIR
    if not folder.is_dir():
        raise CRDError(f"no CRD folder at {folder}: pass the folder that holds the CRD YAML files")
    docs: list[JSONObject] = []
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            loaded = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError) as err:
            raise CRDError(f"cannot read CRD file {path}: {err}") from err
        docs.extend(
            doc
            for doc in loaded
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
        )
    if not docs:
        raise CRDError(f"no CustomResourceDefinition in {folder}")
    return docs


class Catalog:
    """The CRDs of one folder (or given documents), with validation and defaulting."""

    def __init__(self, definitions: Iterable[ResourceDefinition]) -> None:
        self.definitions: tuple[ResourceDefinition, ...] = tuple(definitions)
        self._by_name: dict[str, ResourceDefinition] = {}
        for definition in self.definitions:
            for alias in (
                definition.kind,
                definition.plural,
                definition.singular,
                *definition.short_names,
            ):
                self._by_name.setdefault(alias.lower(), definition)
        self._validators: dict[str, Any] = {}

    @classmethod
    def load(cls, directory: Path | str | None = None) -> Catalog:
        """Read the CRDs of ``directory`` (default: the packaged copy of ``crds/``)."""
        return cls(ResourceDefinition.from_crd(doc) for doc in read_crd_files(directory))

    @classmethod
    def from_documents(cls, crds: Iterable[Mapping[str, Any]]) -> Catalog:
        return cls(ResourceDefinition.from_crd(doc) for doc in crds)

    @property
    def kinds(self) -> dict[str, str]:
        """Kind → plural of every CRD in the catalog."""
        return {d.kind: d.plural for d in self.definitions}

    def definition(self, name: str) -> ResourceDefinition:
        """The CRD of a kind, named by kind, plural, singular or short name (any case)."""
        try:
            return self._by_name[name.lower()]
        except KeyError:
            known = ", ".join(sorted(d.kind for d in self.definitions))
            raise CRDError(f"unknown kind {name!r}: the CRDs define {known}") from None

    def find(self, obj: Mapping[str, Any]) -> ResourceDefinition | None:
        """The CRD of an object, by its apiVersion and kind; None if none matches."""
        for definition in self.definitions:
            if obj.get("kind") == definition.kind and obj.get("apiVersion") == (
                definition.api_version
            ):
                return definition
        return None

    def schema_for(self, kind: str) -> JSONObject:
        """A copy of the OpenAPI v3 schema of a kind."""
        return copy.deepcopy(dict(self.definition(kind).schema))

    def apply_defaults(self, obj: Mapping[str, Any]) -> JSONObject:
        """A copy of ``obj`` with nulls pruned and schema defaults applied, as on the server.

        Unknown kinds raise :class:`CRDError`.
        """
        definition = self._definition_of(obj)
        result = copy.deepcopy(dict(obj))
        _prune_nulls(result, definition.schema)
        _apply_defaults(result, definition.schema)
        return result

    def prune(self, obj: Mapping[str, Any]) -> tuple[JSONObject, list[str]]:
        """A copy of ``obj`` without the fields its schema does not know, and their paths.

        This is what the API server does silently with unknown fields.
        """
        definition = self._definition_of(obj)
        result = copy.deepcopy(dict(obj))
        removed: list[str] = []
        _prune_unknown(result, definition.schema, "", removed, root=True)
        return result, removed

    def validate(self, obj: object, *, strict: bool = True) -> list[SchemaProblem]:
        """Every problem of ``obj`` against its CRD, as the API server checks a create.

        Nulls are pruned and defaults applied first (on a copy), as the server does.
        With ``strict``, fields that the schema does not know are problems too.
        """
        if not isinstance(obj, Mapping):
            return [SchemaProblem("", "must be an object", "FieldValueTypeInvalid")]
        definition = self.find(obj)
        if definition is None:
            return self._identify(obj)
        value = self.apply_defaults(obj)
        problems: list[SchemaProblem] = []
        problems.extend(_check_metadata(value.get("metadata")))
        if strict:
            unknown: list[str] = []
            _prune_unknown(copy.deepcopy(value), definition.schema, "", unknown, root=True)
            problems.extend(
                SchemaProblem(path, "unknown field", "FieldValueUnknown") for path in unknown
            )
        validator = self._validator(definition)
        for error in validator.iter_errors(value):
            problems.append(_problem_from_error(error))
        problems.extend(_list_problems(value, definition.schema, ""))
        return _sorted_unique(problems)

    def validate_update(
        self, old: Mapping[str, Any], new: Mapping[str, Any], *, strict: bool = True
    ) -> list[SchemaProblem]:
        """The problems of ``new`` as an update of ``old``: :meth:`validate` plus the
        transition rules (``x-kubernetes-validations`` with ``oldSelf``)."""
        problems = self.validate(new, strict=strict)
        definition = self.find(new)
        if definition is not None and self.find(old) is definition:
            old_value = self.apply_defaults(old)
            new_value = self.apply_defaults(new)
            problems.extend(_transition_problems(old_value, new_value, definition.schema, ""))
        return _sorted_unique(problems)

    def _definition_of(self, obj: Mapping[str, Any]) -> ResourceDefinition:
        definition = self.find(obj)
        if definition is None:
            raise CRDError(
                f"no CRD for apiVersion {obj.get('apiVersion')!r}, kind {obj.get('kind')!r}"
            )
        return definition

    def _identify(self, obj: Mapping[str, Any]) -> list[SchemaProblem]:
        kind = obj.get("kind")
        api_version = obj.get("apiVersion")
        if not kind:
            return [SchemaProblem("kind", "Required value", "FieldValueRequired")]
        if not api_version:
            return [SchemaProblem("apiVersion", "Required value", "FieldValueRequired")]
        kinds = {d.kind: d for d in self.definitions}
        if kind in kinds:
            expected = kinds[kind].api_version
            return [
                SchemaProblem(
                    "apiVersion",
                    f'Unsupported value: {json.dumps(api_version)}: supported values: "{expected}"',
                    "FieldValueNotSupported",
                )
            ]
        supported = ", ".join(f'"{k}"' for k in sorted(kinds))
        return [
            SchemaProblem(
                "kind",
                f"Unsupported value: {json.dumps(kind)}: supported values: {supported}",
                "FieldValueNotSupported",
            )
        ]

    def _validator(self, definition: ResourceDefinition) -> Any:
        validator = self._validators.get(definition.name)
        if validator is None:
            schema = _to_json_schema(definition.schema)
            validator = jsonschema.Draft202012Validator(schema, format_checker=_FORMATS)
            self._validators[definition.name] = validator
        return validator


@functools.lru_cache(maxsize=8)
def _catalog(directory: str) -> Catalog:
    return Catalog.load(directory)


def load(directory: Path | str | None = None) -> Catalog:
    """The catalog of ``directory`` (default: the packaged copy of ``crds/``), read once."""
    return _catalog(str(Path(directory).resolve() if directory is not None else CRD_DIR))


def schema_for(kind: str, *, directory: Path | str | None = None) -> JSONObject:
    """A copy of the OpenAPI v3 schema of a podstore kind."""
    return load(directory).schema_for(kind)


def validate(
    obj: object, strict: bool = True, *, directory: Path | str | None = None
) -> list[SchemaProblem]:
    """Every problem of ``obj`` against its CRD; empty when it would be accepted."""
    return load(directory).validate(obj, strict=strict)


def validate_update(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    strict: bool = True,
    *,
    directory: Path | str | None = None,
) -> list[SchemaProblem]:
    """The problems of ``new`` replacing ``old``, immutability rules included."""
    return load(directory).validate_update(old, new, strict=strict)


def apply_defaults(obj: Mapping[str, Any], *, directory: Path | str | None = None) -> JSONObject:
    """A copy of ``obj`` with the schema's defaults applied, as the API server does."""
    return load(directory).apply_defaults(obj)


# --- schema walking -------------------------------------------------------------------


def _properties(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    props = schema.get("properties")
    return props if isinstance(props, Mapping) else {}


def _additional(schema: Mapping[str, Any]) -> Mapping[str, Any] | None:
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, Mapping) else None


def _prune_nulls(value: Any, schema: Mapping[str, Any]) -> None:
    """Drop null fields whose schema is not nullable (the server does, before defaulting)."""
    if isinstance(value, dict):
        props = _properties(schema)
        extra = _additional(schema)
        for key in list(value):
            sub = props.get(key, extra)
            if sub is None:
                continue
            if value[key] is None and not sub.get("nullable", False):
                del value[key]
            else:
                _prune_nulls(value[key], sub)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for item in value:
                _prune_nulls(item, items)


def _apply_defaults(value: Any, schema: Mapping[str, Any]) -> None:
    if isinstance(value, dict):
        props = _properties(schema)
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        extra = _additional(schema)
        for key, item in value.items():
            sub = props.get(key, extra)
            if sub is not None:
                _apply_defaults(item, sub)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for item in value:
                _apply_defaults(item, items)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _prune_unknown(
    value: Any, schema: Mapping[str, Any], path: str, removed: list[str], *, root: bool = False
) -> None:
    """Remove what a structural schema does not specify; note the removed paths."""
    if isinstance(value, dict):
        props = _properties(schema)
        extra = _additional(schema)
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        for key in list(value):
            sub_path = _join(path, key)
            if (root or embedded) and key in _ROOT_FIELDS:
                if key == "metadata" and isinstance(value[key], dict):
                    for meta_key in list(value[key]):
                        if meta_key not in OBJECT_META_FIELDS:
                            removed.append(_join(sub_path, meta_key))
                            del value[key][meta_key]
                continue
            sub = props.get(key, extra)
            if sub is None:
                if not preserve:
                    removed.append(sub_path)
                    del value[key]
                continue
            _prune_unknown(value[key], sub, sub_path, removed)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for index, item in enumerate(value):
                _prune_unknown(item, items, f"{path}[{index}]", removed)


def _list_problems(value: Any, schema: Mapping[str, Any], path: str) -> Iterator[SchemaProblem]:
    """Duplicates in list-type map and set lists, which JSON Schema cannot express."""
    if isinstance(value, dict):
        props = _properties(schema)
        extra = _additional(schema)
        for key, item in value.items():
            sub = props.get(key, extra)
            if sub is not None:
                yield from _list_problems(item, sub, _join(path, key))
    elif isinstance(value, list):
        items = schema.get("items")
        items = items if isinstance(items, Mapping) else {}
        list_type = schema.get("x-kubernetes-list-type")
        keys: Sequence[str] = schema.get("x-kubernetes-list-map-keys", ())
        seen: set[str] = set()
        for index, item in enumerate(value):
            if list_type == "map" and isinstance(item, dict):
                identity = {k: item.get(k) for k in keys}
            elif list_type == "set":
                identity = item
            else:
                identity = None
            if identity is not None:
                marker = json.dumps(identity, sort_keys=True)
                if marker in seen:
                    yield SchemaProblem(
                        f"{path}[{index}]",
                        f"Duplicate value: {marker}",
                        "FieldValueDuplicate",
                    )
                seen.add(marker)
            yield from _list_problems(item, items, f"{path}[{index}]")


# CEL rules that can be judged without a CEL engine. Any other rule is left to the
# API server; the CRDs use only these.
_SAME_AS_OLD = frozenset({"self == oldSelf", "oldSelf == self"})


def _transition_problems(
    old: Any, new: Any, schema: Mapping[str, Any], path: str
) -> Iterator[SchemaProblem]:
    for rule in schema.get("x-kubernetes-validations", ()) or ():
        text = " ".join(str(rule.get("rule", "")).split())
        if text in _SAME_AS_OLD and old != new:
            kind = _json_type(new)
            message = rule.get("message") or f"failed rule: {rule.get('rule')}"
            yield SchemaProblem(
                path, f'Invalid value: "{kind}": {message}', rule.get("reason", "FieldValueInvalid")
            )
    if isinstance(old, dict) and isinstance(new, dict):
        props = _properties(schema)
        extra = _additional(schema)
        for key, item in new.items():
            sub = props.get(key, extra)
            if sub is not None and key in old:
                yield from _transition_problems(old[key], item, sub, _join(path, key))
    elif isinstance(old, list) and isinstance(new, list):
        items = schema.get("items")
        if isinstance(items, Mapping) and schema.get("x-kubernetes-list-type") == "map":
            keys = tuple(schema.get("x-kubernetes-list-map-keys", ()))

            def key_of(item: Any) -> str:
                return json.dumps([item.get(k) for k in keys] if isinstance(item, dict) else item)

            olds = {key_of(item): item for item in old}
            for index, item in enumerate(new):
                previous = olds.get(key_of(item))
                if previous is not None:
                    yield from _transition_problems(previous, item, items, f"{path}[{index}]")


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number" if isinstance(value, float) else "integer"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _check_metadata(meta: Any) -> Iterator[SchemaProblem]:
    """The ObjectMeta rules that the server applies to every object it creates."""
    if not isinstance(meta, dict):
        yield SchemaProblem(
            "metadata.name",
            "Required value: name or generateName is required",
            "FieldValueRequired",
        )
        return
    name = meta.get("name")
    if not name and not meta.get("generateName"):
        yield SchemaProblem(
            "metadata.name",
            "Required value: name or generateName is required",
            "FieldValueRequired",
        )
    namespace = meta.get("namespace")
    if namespace is not None and (
        not isinstance(namespace, str)
        or len(namespace) > 63
        or "." in namespace
        or not _DNS1123_SUBDOMAIN.fullmatch(namespace)
    ):
        yield SchemaProblem(
            "metadata.namespace",
            f"Invalid value: {json.dumps(namespace)}: a lowercase RFC 1123 label must consist "
            "of lower case alphanumeric characters or '-', and must start and end with an "
            "alphanumeric character",
        )


# --- OpenAPI v3 → JSON Schema -----------------------------------------------------------


def _to_json_schema(schema: Mapping[str, Any]) -> JSONObject:
    """Rewrite the OpenAPI-only keywords (nullable, int-or-string) as JSON Schema."""

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, Mapping):
            return node
        out: JSONObject = {}
        for key, item in node.items():
            if key in ("properties", "patternProperties"):
                out[key] = {name: convert(sub) for name, sub in item.items()}
            elif key in ("items", "additionalProperties", "not"):
                out[key] = convert(item)
            elif key in ("allOf", "anyOf", "oneOf"):
                out[key] = [convert(sub) for sub in item]
            elif key in ("default", "enum", "example") or not key.startswith("x-kubernetes-"):
                out[key] = item
        if node.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
        if node.get("nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        out.pop("nullable", None)
        pattern = out.get("pattern")
        if isinstance(pattern, str) and pattern.endswith("$") and not pattern.endswith("\\$"):
            # The API server's regexps are Go's, where $ is the end of the text; Python's $
            # also matches before a final newline, which would let "name\n" through.
            out["pattern"] = pattern[:-1] + r"\Z"
        return out

    converted: JSONObject = convert(schema)
    return converted


_FORMATS = jsonschema.FormatChecker(formats=())


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.fullmatch(value):
        return False
    datetime.datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    return True


def _is_int32(value: object) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


def _is_int64(value: object) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


_FORMATS.checks("date-time", raises=ValueError)(_is_date_time)
_FORMATS.checks("int32")(_is_int32)
_FORMATS.checks("int64")(_is_int64)


def _format_path(parts: Iterable[Any]) -> str:
    path = ""
    for part in parts:
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, str(part))
    return path


def _problem_from_error(error: Any) -> SchemaProblem:
    """Word a jsonschema error the way the API server words the same failure."""
    path = _format_path(error.absolute_path)
    keyword = error.validator
    instance = error.instance
    expected = error.validator_value
    if keyword == "required":
        missing = re.search(r"'([^']+)' is a required property", error.message)
        name = missing.group(1) if missing else "?"
        return SchemaProblem(_join(path, name), "Required value", "FieldValueRequired")
    if keyword == "enum":
        supported = ", ".join(json.dumps(v) for v in expected)
        return SchemaProblem(
            path,
            f"Unsupported value: {json.dumps(instance)}: supported values: {supported}",
            "FieldValueNotSupported",
        )
    if keyword == "type":
        types = expected if isinstance(expected, list) else [expected]
        return SchemaProblem(
            path,
            f'Invalid value: "{_json_type(instance)}": {path or "body"} in body must be of '
            f"type {' or '.join(types)}",
            "FieldValueTypeInvalid",
        )
    if keyword == "pattern":
        shown = expected[:-2] + "$" if str(expected).endswith(r"\Z") else expected
        return SchemaProblem(
            path,
            f"Invalid value: {json.dumps(instance)}: {path} in body should match '{shown}'",
        )
    if keyword == "maxLength":
        return SchemaProblem(
            path, f"Too long: may not be more than {expected} bytes", "FieldValueTooLong"
        )
    if keyword == "minLength":
        return SchemaProblem(
            path,
            f"Invalid value: {json.dumps(instance)}: {path} in body should be at least "
            f"{expected} chars long",
        )
    if keyword == "maxItems":
        return SchemaProblem(path, f"Too many: {len(instance)}: must have at most {expected} items")
    if keyword in ("minimum", "maximum"):
        relation = "greater than or equal to" if keyword == "minimum" else "less than or equal to"
        return SchemaProblem(
            path,
            f"Invalid value: {json.dumps(instance)}: {path} in body should be {relation} "
            f"{expected}",
        )
    if keyword == "format":
        return SchemaProblem(
            path,
            f"Invalid value: {json.dumps(instance)}: {path} in body must be of type {expected}",
        )
    return SchemaProblem(path, f"Invalid value: {error.message}")


def _sorted_unique(problems: Iterable[SchemaProblem]) -> list[SchemaProblem]:
    return sorted(set(problems), key=lambda p: (p.path, p.message))
