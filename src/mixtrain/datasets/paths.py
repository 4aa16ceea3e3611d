"""Dataset file locations as stored vs. as found in this home (see ``fileio`` for why).

Kept free of PyIceberg/PyArrow imports: the CLI's light paths use it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

WAREHOUSE = "mixtrain.warehouse"
FORMER = "mixtrain.former-warehouses"  # JSON list of warehouse URIs this home's tables were written under


def is_relative(location: str) -> bool:
    return "://" not in location and not location.startswith("/")


def spellings(prefix: str) -> tuple[str, ...]:
    """A local warehouse as PyIceberg may have written it: ``file:///x`` and ``/x``."""
    prefix = prefix.rstrip("/")
    if prefix.startswith("file://"):
        return (prefix, prefix[len("file://") :])
    return (prefix,)


def resolve(location: str, properties: Mapping[str, str]) -> str:
    """The location a path means in this home: relative → under the warehouse; former warehouse → current."""
    wh = (properties.get(WAREHOUSE) or "").rstrip("/")
    if not wh:
        return location
    if is_relative(location):
        return f"{wh}/{location}"
    for old in former(properties):
        for spelled in spellings(old):
            if location.startswith(spelled + "/"):
                return wh + location[len(spelled) :]
    return location


def under(location: str, prefixes: list[str]) -> bool:
    return any(location.startswith(s + "/") for p in prefixes for s in spellings(p))


def former(properties: Mapping[str, str]) -> list[str]:
    try:
        value = json.loads(properties.get(FORMER) or "[]")
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def dataset_of(location: str) -> str | None:
    """The dataset name in a table path (``.../mixtrain/<name>.<id>/...`` or ``.../mixtrain.db/<name>/...``)."""
    parts = location.replace("file://", "").split("/")
    for i, part in enumerate(parts[:-1]):
        if part in ("mixtrain", "mixtrain.db") and i + 1 < len(parts) - 1:
            return parts[i + 1].split(".")[0]
    return None
