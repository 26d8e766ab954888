"""A seeded generator of bad manifests: valid StoragePod, StorageContainer, Secret and
List documents, mutated at random (wrong types, huge or deep values, unicode, unknown
fields, bad names, duplicate keys, alias bombs, broken syntax).

``cases(seed, n)`` is reproducible: the same seed gives the same files, so a case the
suite reports (by its number) is rebuilt with ``case(seed, number)``.
"""

from __future__ import annotations

import base64
import copy
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

API = "podstore.dev/v1alpha1"
IMAGE = "registry.example.com/busybox:1.36"
# The resources of the good file beside every bad one: they must come out untouched.
GOOD_DOCS: list[dict[str, Any]] = [
    {
        "apiVersion": API,
        "kind": "StoragePod",
        "metadata": {"name": "good"},
        "spec": {"containers": [{"name": "app", "image": IMAGE}]},
    },
    {
        "apiVersion": API,
        "kind": "StorageContainer",
        "metadata": {"name": "good-side"},
        "spec": {"podName": "good", "image": IMAGE, "state": "Stopped"},
    },
]

WEIRD_STRINGS = [
    "",
    " ",
    "UPPER",
    "a" * 300,
    "../../etc/passwd",
    "a/b",
    "名前",
    "emoji-\U0001f600",
    "nul\x00byte",
    "-leading",
    "trailing-",
    "with space",
    "\u202eright-to-left",
    "x" * 70_000,
]


def _weird_value(rng: random.Random) -> Any:
    choice = rng.randrange(12)
    if choice == 0:
        return {"a": {"b": [1, 2, {"c": None}]}}
    if choice == 1:
        return [1, "two", None, {"three": 3}]
    if choice == 2:
        return rng.choice([0, -1, 2**63, -(2**70), 10**30])
    if choice == 3:
        return rng.choice([1.5, -0.0, 1e308])
    if choice == 4:
        return rng.choice([True, False])
    if choice == 5:
        return None
    if choice == 6:
        return rng.choice(WEIRD_STRINGS)
    if choice == 7:
        return [[[[[]]]]]
    if choice == 8:
        return {}
    if choice == 9:
        return []
    if choice == 10:
        return _deep(rng.randrange(20, 200))
    return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(1, 40)))


def _deep(levels: int) -> Any:
    value: Any = "bottom"
    for i in range(levels):
        value = [value] if i % 2 else {"n": value}
    return value


def _base(rng: random.Random) -> dict[str, Any]:
    kind = rng.randrange(5)
    if kind == 0:
        return {
            "apiVersion": API,
            "kind": "StoragePod",
            "metadata": {"name": "fuzz", "namespace": "fuzzing", "labels": {"a": "b"}},
            "spec": {
                "infraImage": IMAGE,
                "imagePullSecrets": [{"name": "pull"}],
                "containers": [
                    {"name": "one", "image": IMAGE, "state": "Started", "env": {"A": "1"}},
                    {"name": "two", "image": IMAGE, "command": ["sh", "-c", "true"]},
                ],
            },
        }
    if kind == 1:
        return {
            "apiVersion": API,
            "kind": "StorageContainer",
            "metadata": {"name": "fuzz-c", "namespace": "fuzzing"},
            "spec": {"podName": "fuzz", "image": IMAGE, "state": "Created"},
        }
    if kind == 2:
        config = json.dumps({"auths": {"registry.example.com": {"auth": "dTpw"}}})
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "pull", "namespace": "fuzzing"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()},
        }
    if kind == 3:
        return {"apiVersion": "v1", "kind": "List", "items": [_base(rng), _base(rng)]}
    return {
        "apiVersion": API,
        "kind": "StoragePod",
        "metadata": {"name": "fuzz-min"},
        "spec": {},
    }


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (the root too)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return doc


def _delete(doc: Any, path: tuple[Any, ...]) -> None:
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]


def _mutate(rng: random.Random, doc: Any) -> Any:
    paths = list(_paths(doc))
    path = rng.choice(paths)
    choice = rng.randrange(6)
    if choice == 0:
        return _set(doc, path, _weird_value(rng))
    if choice == 1 and path:
        _delete(doc, path)
        return doc
    if choice == 2:
        target = rng.choice([p for p in paths if isinstance(_get(doc, p), dict)] or [()])
        holder = _get(doc, target)
        if isinstance(holder, dict):
            holder[rng.choice(["unknownField", "x-extra", "名", "status", ""])] = _weird_value(rng)
        return doc
    if choice == 3:
        names = [p for p in paths if p and p[-1] in ("name", "podName", "namespace")]
        if names:
            return _set(doc, rng.choice(names), rng.choice(WEIRD_STRINGS))
        return doc
    if choice == 4:
        kinds = [p for p in paths if p and p[-1] == "kind"]
        if kinds:
            return _set(doc, rng.choice(kinds), _weird_value(rng))
        return doc
    return _set(doc, path, _weird_value(rng))


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _alias_bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def _dump(rng: random.Random, docs: list[Any], json_file: bool) -> str:
    if json_file:
        return json.dumps(docs[0], default=str)
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=rng.random() < 0.5)


def _text_attack(rng: random.Random, good_text: str) -> str:
    choice = rng.randrange(9)
    if choice == 0:
        return _alias_bomb(rng.randrange(6, 12))
    if choice == 1:
        depth = rng.choice([100, 1000, 5000])
        return "[" * depth + "]" * depth
    if choice == 2:
        depth = rng.choice([100, 1000])
        return "".join(f"{' ' * i}k:\n" for i in range(depth)) + " " * depth + "v\n"
    if choice == 3:
        # Duplicate keys.
        return good_text.replace("kind:", "kind: StoragePod\nkind:", 1)
    if choice == 4:
        cut = rng.randrange(1, max(2, len(good_text)))
        return good_text[:cut]
    if choice == 5:
        return (
            "".join(chr(rng.randrange(0, 0x110000)) for _ in range(200))
            .encode("utf-8", "surrogatepass")
            .decode("utf-8", "replace")
        )
    if choice == 6:
        return "a: &x [*x]\n"
    if choice == 7:
        return "kind: !!python/object:os.system 'echo pwned'\n"
    return "when: 2024-13-45\nbig: " + "9" * 5000 + "\nkind: StoragePod\n"


@dataclass(frozen=True)
class Case:
    number: int
    file_name: str
    text: str | bytes
    what: str


def case(seed: int, number: int) -> Case:
    rng = random.Random(f"{seed}/{number}")  # noqa: S311 - reproducible, not secret
    json_file = rng.random() < 0.15
    docs = [_base(rng) for _ in range(rng.randrange(1, 3))]
    if json_file:
        docs = docs[:1]
    name = "bad.json" if json_file else "bad.yaml"
    if rng.random() < 0.2:
        text = _text_attack(rng, _dump(rng, copy.deepcopy(docs), False))
        return Case(number, "bad.yaml", text, "text attack")
    if rng.random() < 0.05:
        return Case(number, name, bytes(rng.randrange(256) for _ in range(300)), "random bytes")
    for _ in range(rng.randrange(1, 4)):
        i = rng.randrange(len(docs))
        docs[i] = _mutate(rng, docs[i])
    return Case(number, name, _dump(rng, docs, json_file), "mutated documents")


def cases(seed: int, count: int) -> Iterator[Case]:
    for number in range(count):
        yield case(seed, number)
