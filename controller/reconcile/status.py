"""Status and conditions, after the Kubernetes API conventions.

Pure functions: they take the status an object has and what was found, and
return the status it should have. A condition's ``lastTransitionTime``
changes only when its ``status`` does, so a resync that finds nothing new
writes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def rfc3339(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool | None  # None is "Unknown"
    reason: str
    message: str = ""

    @property
    def status_text(self) -> str:
        return "Unknown" if self.status is None else ("True" if self.status else "False")


def merge_conditions(
    current: Sequence[Mapping[str, Any]] | None,
    wanted: Sequence[Condition],
    *,
    generation: int,
    now: float,
) -> list[dict[str, Any]]:
    """The conditions list with ``wanted`` applied; transition times kept when unchanged."""
    by_type = {str(c.get("type")): dict(c) for c in current or () if isinstance(c, Mapping)}
    out: list[dict[str, Any]] = []
    for cond in wanted:
        old = by_type.pop(cond.type, None)
        changed = old is None or old.get("status") != cond.status_text
        out.append(
            {
                "type": cond.type,
                "status": cond.status_text,
                "reason": cond.reason,
                "message": cond.message,
                "lastTransitionTime": rfc3339(now)
                if changed or not old
                else old.get("lastTransitionTime", rfc3339(now)),
                "observedGeneration": generation,
            }
        )
    # Conditions someone else set are kept as they are.
    out.extend(by_type.values())
    return out


def status_patch(current: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that turns ``current`` into ``wanted`` (None deletes a key)."""
    current = current or {}
    patch: dict[str, Any] = {}
    for key, value in wanted.items():
        if current.get(key) != value:
            patch[key] = value
    return patch
