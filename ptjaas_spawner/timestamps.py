"""Timestamps as Kubernetes, the hub and admins write them, read one way. Pure.

``parse_time`` reads RFC 3339 / ISO 8601 text (``2026-01-02T03:04:05Z``, with fractions of any
length, an offset, or a date alone) with ``datetime.fromisoformat`` (Python 3.11+ reads ``Z``
and any fraction) as an aware datetime, UTC where the text names no zone.
"""

from __future__ import annotations

import functools
from datetime import datetime, timezone


def parse_time(value) -> datetime | None:
    """``value`` as an aware datetime; None when absent, not a string, or unreadable. Each text
    is parsed once (a start looks at the same events and objects again while it runs)."""
    if not value or not isinstance(value, str):
        return None
    return _parse(value.strip())


@functools.lru_cache(maxsize=8192)
def _parse(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
