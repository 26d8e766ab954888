#!/usr/bin/env python3
"""Names what differs between two OCI image layouts built from the same inputs.

`make image-check` builds the agent image twice and calls this to prove the build
reproducible: equal manifest digests pass; otherwise it walks manifest, config and
layers down to the first file whose bytes or metadata differ and names it, since a
digest alone says nothing about the cause. Standard library only: it runs with the
host's python3, before any virtualenv exists.

    oci_diff.py LAYOUT_A LAYOUT_B [TAG]    exit 0: same image, 1: differ, 2: unreadable
"""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REF_NAME = "org.opencontainers.image.ref.name"
# Shown per layer: enough to see a pattern (every .pyc, one folder), not a flood.
MAX_SHOWN = 20


class LayoutError(Exception):
    """A layout that is missing, malformed or lacks the tag asked for."""


@dataclass(frozen=True)
class Entry:
    """What a tar entry contributes to a layer's digest, apart from its position."""

    kind: str
    mode: int
    uid: int
    gid: int
    mtime: float
    size: int
    link: str
    sha256: str
    pax: tuple[tuple[str, str], ...]

    def differences(self, other: Entry) -> list[str]:
        """`field: mine != theirs` for every field that differs."""
        return [
            f"{name}: {mine!r} != {theirs!r}"
            for name in self.__dataclass_fields__
            if (mine := getattr(self, name)) != (theirs := getattr(other, name))
        ]


_KINDS = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
    tarfile.CHRTYPE: "char",
    tarfile.BLKTYPE: "block",
    tarfile.FIFOTYPE: "fifo",
}


def layer_entries(fileobj: Any) -> Iterator[tuple[str, Entry]]:
    """(path, entry) for each member of a (possibly compressed) layer tar, in order."""
    with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
        for member in tar:
            digest = ""
            if member.isreg():
                extracted = tar.extractfile(member)
                if extracted is None:  # a regular file always has a body
                    raise tarfile.TarError(f"{member.name}: no content in the layer")
                hashed = hashlib.sha256()
                while chunk := extracted.read(1 << 20):
                    hashed.update(chunk)
                digest = hashed.hexdigest()
            yield (
                member.name.removeprefix("./"),
                Entry(
                    kind=_KINDS.get(member.type, repr(member.type)),
                    mode=member.mode,
                    uid=member.uid,
                    gid=member.gid,
                    mtime=member.mtime,
                    size=member.size,
                    link=member.linkname,
                    sha256=digest,
                    pax=tuple(sorted(member.pax_headers.items())),
                ),
            )


def compare_entries(a: Iterator[tuple[str, Entry]], b: Iterator[tuple[str, Entry]]) -> list[str]:
    """Every difference between two layers' entries, the first in tar order first.

    A path only in one layer, a path whose entry differs, and (when both hold the same
    paths) a different order are each reported, as order changes a tar's bytes too.
    """
    order_a: list[str] = []
    order_b: list[str] = []
    seen_a: dict[str, Entry] = {}
    seen_b: dict[str, Entry] = {}
    found: list[str] = []
    for path, entry in a:
        order_a.append(path)
        seen_a[path] = entry
    for path, entry in b:
        order_b.append(path)
        seen_b[path] = entry
    for path in order_a:
        if path not in seen_b:
            found.append(f"{path}: only in A")
        elif changed := seen_a[path].differences(seen_b[path]):
            found.append(f"{path}: " + "; ".join(changed))
    found.extend(f"{path}: only in B" for path in order_b if path not in seen_a)
    if not found and order_a != order_b:
        first = next(i for i, (x, y) in enumerate(zip(order_a, order_b, strict=False)) if x != y)
        found.append(f"entry order differs at #{first}: {order_a[first]} vs {order_b[first]}")
    return found


class Layout:
    """An OCI image layout on disk: index.json and content-addressed blobs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            self.index = json.loads((root / "index.json").read_text())
        except (OSError, ValueError) as err:
            raise LayoutError(f"{root}: no readable index.json ({err})") from err

    def blob_path(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        if algorithm != "sha256" or len(hexdigest) != 64 or not hexdigest.isalnum():
            raise LayoutError(f"{self.root}: unexpected digest {digest!r}")
        return self.root / "blobs" / algorithm / hexdigest

    def json_blob(self, digest: str) -> dict[str, Any]:
        try:
            loaded: dict[str, Any] = json.loads(self.blob_path(digest).read_bytes())
        except (OSError, ValueError) as err:
            raise LayoutError(f"{self.root}: blob {digest} unreadable ({err})") from err
        return loaded

    def manifest_digest(self, tag: str | None) -> str:
        manifests = self.index.get("manifests", [])
        if tag is None and len(manifests) == 1:
            return str(manifests[0]["digest"])
        for descriptor in manifests:
            if descriptor.get("annotations", {}).get(REF_NAME) == tag:
                return str(descriptor["digest"])
        raise LayoutError(f"{self.root}: no image tagged {tag!r} in index.json")


def compare_layouts(a: Layout, b: Layout, tag: str | None = None) -> list[str]:
    """What differs between the two images, outermost first; empty when they are equal."""
    digest_a, digest_b = a.manifest_digest(tag), b.manifest_digest(tag)
    if digest_a == digest_b:
        return []
    found = [f"manifest: {digest_a} != {digest_b}"]
    manifest_a, manifest_b = a.json_blob(digest_a), b.json_blob(digest_b)
    config_a, config_b = manifest_a["config"]["digest"], manifest_b["config"]["digest"]
    if config_a != config_b:
        found.append(f"config: {config_a} != {config_b}")
        found.extend(_changed_keys("config", a.json_blob(config_a), b.json_blob(config_b)))
    layers_a, layers_b = manifest_a["layers"], manifest_b["layers"]
    if len(layers_a) != len(layers_b):
        found.append(f"layers: {len(layers_a)} != {len(layers_b)}")
    for number, (layer_a, layer_b) in enumerate(zip(layers_a, layers_b, strict=False)):
        if layer_a["digest"] == layer_b["digest"]:
            continue
        found.append(f"layer {number}: {layer_a['digest']} != {layer_b['digest']}")
        with (
            a.blob_path(layer_a["digest"]).open("rb") as file_a,
            b.blob_path(layer_b["digest"]).open("rb") as file_b,
        ):
            files = compare_entries(layer_entries(file_a), layer_entries(file_b))
        if not files:
            files = ["same files, same metadata, same order: the compression differs"]
        shown = [f"layer {number} {line}" for line in files[:MAX_SHOWN]]
        if len(files) > MAX_SHOWN:
            shown.append(f"layer {number}: ... and {len(files) - MAX_SHOWN} more")
        found.extend(shown)
    # Manifest annotations (or media types) are all that is left.
    if len(found) == 1:
        found.extend(_changed_keys("manifest", manifest_a, manifest_b))
    return found


def _changed_keys(what: str, a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [
        f"{what} {key}: {a.get(key)!r} != {b.get(key)!r}"
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key)
    ]


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: oci_diff.py LAYOUT_A LAYOUT_B [TAG]", file=sys.stderr)
        return 2
    tag = argv[2] if len(argv) == 3 else None
    try:
        a, b = Layout(Path(argv[0])), Layout(Path(argv[1]))
        found = compare_layouts(a, b, tag)
        digest = a.manifest_digest(tag)
    except (LayoutError, KeyError, tarfile.TarError) as err:
        print(f"oci_diff.py: cannot compare: {err}", file=sys.stderr)
        return 2
    if not found:
        print(f"same image: {digest}")
        return 0
    print("the two images differ:", file=sys.stderr)
    for line in found:
        print(f"  {line}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
