"""Incremental persistence of the store: a snapshot (``objects.json``) plus an append-only journal
(``objects.journal``, one JSON line per save: the objects written and removed since the last
one). The journal is folded into a new snapshot once it outgrows the snapshot, so a save costs
what changed, and rewriting everything is amortised over as many changes as there are objects.

Both files hold every Secret and the API token: they are 0600 from their first byte.
"""

import json
import logging
import os

from .auth import write_private
from .objcopy import clone

log = logging.getLogger("ptjaas.cluster")
MIN_JOURNAL_BYTES = 1 << 20   # compact no sooner than this


def _ident(obj):
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def _diff(old, new, path=()):
    """(paths set with their values, paths removed) turning dict ``old`` into ``new``."""
    sets, unsets = [], []
    for key, value in new.items():
        if key not in old:
            sets.append((list(path + (key,)), value))
        elif isinstance(value, dict) and isinstance(old[key], dict):
            more_sets, more_unsets = _diff(old[key], value, path + (key,))
            sets += more_sets
            unsets += more_unsets
        elif old[key] != value:
            sets.append((list(path + (key,)), value))
    unsets += [list(path + (key,)) for key in old if key not in new]
    return sets, unsets


def _apply(data, sets, unsets):
    for path, value in sets:
        target = data
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    for path in unsets:
        target = data
        for key in path[:-1]:
            target = target.get(key) or {}
        target.pop(path[-1], None)


class Journal:
    def __init__(self, path):
        self.path = path
        self.journal_path = os.path.splitext(path)[0] + ".journal"
        self.snapshot_bytes = 0
        self.journal_bytes = 0
        self.last_extra = {}
        self._fd = None

    def exists(self):
        return self._fd is not None and os.path.exists(self.path)

    def snapshot(self, rv, objects, extra):
        text = json.dumps({"resourceVersion": rv, "objects": list(objects), "extra": extra})
        write_private(self.path, text)
        self.close()
        # a crash between these two leaves journal lines at or below the snapshot's rv: skipped on load
        self._fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        os.fchmod(self._fd, 0o600)
        self.snapshot_bytes = len(text)
        self.journal_bytes = 0
        self.last_extra = clone(extra)

    def append(self, rv, puts, deletes, extra):
        """Write one batch; True when the journal is due to be folded into a new snapshot."""
        line = {"rv": rv}
        if puts:
            line["put"] = puts
        if deletes:
            line["del"] = deletes
        if extra != self.last_extra:
            line["extra"] = _diff(self.last_extra, extra)
            self.last_extra = clone(extra)
        if len(line) == 1:
            return False
        data = (json.dumps(line) + "\n").encode()
        os.write(self._fd, data)
        self.journal_bytes += len(data)
        return self.journal_bytes > max(MIN_JOURNAL_BYTES, self.snapshot_bytes)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def load(self):
        """(resourceVersion, objects, extra) as last saved: the snapshot, then the journal replayed."""
        with open(self.path) as f:
            data = json.load(f)
        rv = int(data["resourceVersion"])
        objects = {_ident(obj): obj for obj in data["objects"]}
        extra = data.get("extra") or {}
        if os.path.exists(self.journal_path):
            os.chmod(self.journal_path, 0o600)
            with open(self.journal_path) as f:
                for number, text in enumerate(f, 1):
                    try:
                        line = json.loads(text)
                    except ValueError:   # a save cut short: what it held was not acknowledged as saved
                        log.warning("%s: line %d unreadable, ignored", self.journal_path, number)
                        continue
                    if line["rv"] <= int(data["resourceVersion"]):
                        continue
                    rv = max(rv, line["rv"])
                    for obj in line.get("put") or ():
                        objects[_ident(obj)] = obj
                    for ident in line.get("del") or ():
                        objects.pop(tuple(ident), None)
                    if "extra" in line:
                        _apply(extra, *line["extra"])
        return rv, list(objects.values()), extra
