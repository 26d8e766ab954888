"""What podstore remembers about a container: JSON in its ``metadata`` field.

The keys are the seed's (cri-o's first storage layer) and are part of the
contract: ``pod``, ``pod-name``, ``pod-id``, ``image-name``, ``image-id``,
``name``, ``metadata-name``, ``uid``, ``namespace``, ``attempt``,
``created-at`` and ``mountlabel``. podstore adds ``managed-by`` (so that a
store shared with cri-o, whose containers carry the same keys, is never
confused) and ``labels`` (where the reconciler ties a container to its API
object). Keys this version does not know are kept on a round trip.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

MANAGED_BY = "podstore"

_KEYS = {
    "pod": "pod",
    "pod_name": "pod-name",
    "pod_id": "pod-id",
    "image_name": "image-name",
    "image_id": "image-id",
    "name": "name",
    "metadata_name": "metadata-name",
    "uid": "uid",
    "namespace": "namespace",
    "attempt": "attempt",
    "created_at": "created-at",
    "mount_label": "mountlabel",
    "managed_by": "managed-by",
    "labels": "labels",
}


@dataclass(frozen=True)
class RuntimeContainerMetadata:
    """The seed's RuntimeContainerMetadata, plus podstore's two extra keys."""

    pod: bool = False
    pod_name: str = ""
    pod_id: str = ""
    image_name: str = ""
    image_id: str = ""
    name: str = ""
    metadata_name: str = ""
    uid: str = ""
    namespace: str = ""
    attempt: int = 0
    created_at: int = 0
    mount_label: str = ""
    managed_by: str = MANAGED_BY
    labels: Mapping[str, str] = field(default_factory=dict)
    # Keys written by a newer podstore or by hand; kept as they were.
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def managed(self) -> bool:
        return self.managed_by == MANAGED_BY

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        for attr, key in _KEYS.items():
            value = getattr(self, attr)
            out[key] = dict(value) if isinstance(value, Mapping) else value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuntimeContainerMetadata:
        known = {key: attr for attr, key in _KEYS.items()}
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            attr = known.get(key)
            if attr is None:
                extra[key] = value
            else:
                kwargs[attr] = value
        # Old or hand-made metadata may lack managed-by: then it is not ours.
        kwargs.setdefault("managed_by", "")
        meta = cls(**kwargs, extra=extra)
        return replace(
            meta,
            pod=bool(meta.pod),
            attempt=int(meta.attempt or 0),
            created_at=int(meta.created_at or 0),
            labels={str(k): str(v) for k, v in dict(meta.labels or {}).items()},
        )

    @classmethod
    def from_json(cls, text: str | None) -> RuntimeContainerMetadata | None:
        """Parse a container's metadata field; None when it is not this kind of JSON."""
        if not text:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError):
            return None

    def same_identity(self, other: RuntimeContainerMetadata) -> bool:
        """Equal in everything a repeated create passes (all but the creation time)."""
        skip = {"created_at", "extra", "labels"}
        return all(
            getattr(self, f.name) == getattr(other, f.name)
            for f in fields(self)
            if f.name not in skip
        )
