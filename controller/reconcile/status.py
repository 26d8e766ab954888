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
    current: Sequence[Any] | None,
    wanted: Sequence[Condition],
    *,
    generation: int,
    now: float,
) -> list[dict[str, Any]]:
    """The conditions list with ``wanted`` applied; transition times kept when unchanged."""
    wanted_by_type = {cond.type: cond for cond in wanted}
    out: list[dict[str, Any]] = []
    # Existing conditions keep their places (a rewrite that changes nothing is no change);
    # new types go at the end. Conditions someone else set are kept as they are.
    for old in current or ():
        if not isinstance(old, Mapping):
            continue
        cond = wanted_by_type.pop(str(old.get("type")), None)
        out.append(_condition(cond, old, generation, now) if cond else dict(old))
    for cond in wanted_by_type.values():
        out.append(_condition(cond, None, generation, now))
    return out


def _condition(
    cond: Condition, old: Mapping[str, Any] | None, generation: int, now: float
) -> dict[str, Any]:
    changed = old is None or old.get("status") != cond.status_text
    return {
        "type": cond.type,
        "status": cond.status_text,
        "reason": cond.reason,
        "message": cond.message,
        "lastTransitionTime": rfc3339(now)
        if changed or old is None
        else old.get("lastTransitionTime", rfc3339(now)),
        "observedGeneration": generation,
    }


def status_patch(current: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that turns ``current`` into ``wanted`` (None deletes a key)."""
    current = current or {}
    patch: dict[str, Any] = {}
    for key, value in wanted.items():
        if current.get(key) != value:
            patch[key] = value
    return patch


def merge_patch(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``current`` with a status merge patch applied (None removes a key)."""
    out = dict(current)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out
