"""How the node-side commands print: aligned tables for people, JSON for scripts.

Tables follow kubectl's and crictl's habits: upper-case headers, columns three
spaces apart, IDs cut to 12 characters, ages such as ``45s``, ``5m``, ``3h``,
``2d``, and ``<none>`` where a value is missing.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import yaml

SHORT_ID = 12
NONE = "<none>"


def short_id(value: str) -> str:
    return value[:SHORT_ID] if value else ""


def age(seconds: float) -> str:
    """A duration the way kubectl prints ages."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 730:
        return f"{days}d"
    return f"{days // 365}y"


def age_since(timestamp: float | str | None, now: float) -> str:
    """Age of a Unix time or an RFC 3339 time; ``<unknown>`` when there is none."""
    if timestamp in (None, "", 0):
        return "<unknown>"
    if isinstance(timestamp, str):
        try:
            when = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return "<unknown>"
    else:
        when = float(timestamp)
    return age(now - when)


def size(num: int) -> str:
    """Bytes the way crictl prints image sizes (1000-based, as docker does)."""
    value = float(num)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.3g}{unit}"
        value /= 1000
    return f"{num}B"  # pragma: no cover - the loop always returns


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows under headers, each column as wide as its widest cell."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("   ".join(parts).rstrip())
    return "\n".join(lines)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False)


def to_yaml(data: Any) -> str:
    """The same data as :func:`to_json`, as YAML (keys in the same order)."""
    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False)).rstrip("\n")


def _cell(value: Any) -> str:
    if value is None or value == "":
        return NONE
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
