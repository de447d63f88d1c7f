"""Settings remembered by their value. Pure.

Every new spawner (one per user in a hub process) checks and parses the same settings: the
catalog against its schema and its rules between fields, the quota settings into a policy. What
passed (or was parsed) once is remembered, keyed by the settings' pickle, and bounded; settings
that fail are never remembered, so they raise each time (issue 21: these checks were most of a
new spawner's own cost).
"""

from __future__ import annotations

import pickle


def settings_key(*settings) -> bytes | None:
    """A key equal only for equal settings of the same types (a list is not a tuple, 1 is not
    1.0 nor True, key order kept): their pickle, made in C (walking them in Python cost about
    1 ms per new spawner); None for settings that cannot be pickled (then never remembered)."""
    try:
        return pickle.dumps(settings, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - any object may refuse to be pickled
        return None


class Remembered:
    """At most ``size`` values by key, the oldest forgotten first; a None key is never kept."""

    def __init__(self, size: int):
        self.size = size
        self._values: dict = {}

    def get(self, key):
        return None if key is None else self._values.get(key)

    def get_or_make(self, key, make):
        """The value kept for ``key``, else ``make()``'s, kept (a None key: made each time). What
        ``make`` raises is raised and nothing is kept."""
        value = self.get(key)
        if value is None:
            value = make()
            self.add(key, value)
        return value

    def add(self, key, value=True) -> None:
        if key is None:
            return
        if len(self._values) >= self.size:
            self._values.pop(next(iter(self._values)))
        self._values[key] = value
