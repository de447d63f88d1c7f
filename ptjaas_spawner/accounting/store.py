"""The accounting record: one append-only JSON-lines file of server runs, beside the hub's
database (``c.PtjaasSpawner.accounting_file``), read once per hub process and kept in memory.

Two kinds of line, both written by the hub process only:

- ``{"event": "start", "id", "user", "server", "team", "image", "version", "size", "gpus",
  "cpu", "memory", "start"}`` when a server has started (``id``: the pod's uid, unique per run);
- ``{"event": "end", "id", "end", "reason"}`` when it ended (stopped by its user, an admin,
  the culler, a budget, or found gone by the hub's poll, also after a hub restart).

A run is counted once: a second start line of the same id and every end line after the first
are ignored (a hub restart between writing and remembering cannot double-count). Times are the
accounting clock's (``time.time`` unless a clock is given: tests set the time). Unreadable lines
are skipped with one warning each; a missing file is an empty record.

Reading 100,000 runs line by line takes seconds, so a load that replayed many lines leaves a
checkpoint beside the record (``<record>.checkpoint``: every run as a row, the open runs, and
how many bytes of the record it covers with a hash of their first and last bytes). The next load reads the
checkpoint and replays only the lines appended after it; a checkpoint that does not match the
record (replaced, truncated, unreadable) is ignored and the whole record read. The record stays
the one source of truth: deleting the checkpoint loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import fields

from .. import appendfile
from ..quota.runs import Run

_FIELDS = ("user", "server", "team", "image", "version", "size", "gpus", "cpu", "memory", "start")
_STORES: dict = {}
_LOCK = threading.Lock()
#: a load that replayed at least this many lines after the checkpoint writes a new one
CHECKPOINT_AFTER = 5000
_CHECKPOINT_VERSION = 1
_ROW = tuple(f.name for f in fields(Run))
#: bytes at the start and the end of the covered part of the record whose hash the checkpoint keeps
_TAIL = 4096


def checkpoint_path(path: str) -> str:
    return path + ".checkpoint"


def _tail_hash(f, end: int) -> str:
    """Hash of the first and the last ``_TAIL`` bytes of the record's first ``end`` bytes."""
    f.seek(0)
    head = f.read(min(end, _TAIL))
    f.seek(max(0, end - _TAIL))
    return hashlib.sha256(head + f.read(min(end, _TAIL))).hexdigest()


class RunStore:
    def __init__(self, path: str, clock=time.time, log: logging.Logger | None = None, *,
                 checkpoint_after: int = CHECKPOINT_AFTER):
        self.path = path
        self.clock = clock
        self.log = log or logging.getLogger("ptjaas.accounting")
        self.runs: dict[str, Run] = {}
        self._open: dict[tuple, str] = {}  # (user, server) -> id of its running run
        self._by_user: dict[str, list] = {}  # user -> their runs (a decision reads only these)
        self._by_team: dict[str, list] = {}  # team -> its runs
        self.checkpoint_after = checkpoint_after
        self.replayed = 0  # record lines read at the last load (after the checkpoint, if any)
        self._load()

    def now(self) -> float:
        return float(self.clock())

    # ---- reading ----
    def _load(self):
        if not self.path or not os.path.exists(self.path):
            return
        with open(self.path, "rb") as f:
            offset = self._read_checkpoint(f)
            f.seek(offset)
            n = 0
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    self._apply(json.loads(line))
                except (ValueError, TypeError, KeyError, AttributeError) as e:
                    where = f"line {n} after its checkpoint" if offset else f"line {n}"
                    self.log.warning("Accounting record %s %s skipped (unreadable: %s)", self.path, where,
                                     type(e).__name__)
            self.replayed = n
            if n >= self.checkpoint_after:
                self._write_checkpoint(f, f.tell())

    def _read_checkpoint(self, record) -> int:
        """Load the checkpoint if it matches the record; the record offset to replay from."""
        try:
            with open(checkpoint_path(self.path), "rb") as f:
                cp = json.loads(f.read())
            covered = int(cp["record_bytes"])
            if cp.get("version") != _CHECKPOINT_VERSION or cp.get("fields") != list(_ROW):
                return 0
            if covered > os.fstat(record.fileno()).st_size or _tail_hash(record, covered) != cp["tail_sha256"]:
                self.log.warning("Accounting checkpoint %s does not match its record; reading the whole record",
                                 checkpoint_path(self.path))
                return 0
            runs = {row[0]: Run(*row) for row in cp["runs"]}
            opened = {(runs[rid].user, runs[rid].server): rid for rid in cp["open"]}
        except FileNotFoundError:
            return 0
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            self.log.warning("Accounting checkpoint %s unreadable (%s); reading the whole record",
                             checkpoint_path(self.path), type(e).__name__)
            return 0
        self.runs, self._open = runs, opened
        for run in runs.values():
            self._by_user.setdefault(run.user, []).append(run)
            if run.team:
                self._by_team.setdefault(run.team, []).append(run)
        return covered

    def _write_checkpoint(self, record, covered: int) -> None:
        """Write the checkpoint of the first ``covered`` bytes of the record (all read so far)."""
        target = checkpoint_path(self.path)
        data = {"version": _CHECKPOINT_VERSION, "record_bytes": covered, "tail_sha256": _tail_hash(record, covered),
                "fields": list(_ROW), "open": list(self._open.values()),
                "runs": [[getattr(run, k) for k in _ROW] for run in self.runs.values()]}
        try:
            fd = os.open(target + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf8") as f:
                json.dump(data, f, separators=(",", ":"))
            os.replace(target + ".new", target)
        except OSError as e:
            self.log.warning("Accounting checkpoint %s not written (%s); the next hub start reads the whole record",
                             target, e)

    def _apply(self, rec: dict) -> bool:
        """Apply one line; False when it changes nothing (a duplicate)."""
        rid = str(rec["id"])
        if rec["event"] == "start":
            if rid in self.runs:
                return False
            run = Run(
                id=rid, user=str(rec["user"]), server=str(rec.get("server") or ""), team=str(rec.get("team") or ""),
                image=str(rec.get("image") or ""), version=str(rec.get("version") or ""),
                size=str(rec.get("size") or ""), gpus=int(rec.get("gpus") or 0), cpu=float(rec.get("cpu") or 0),
                memory=int(rec.get("memory") or 0), start=float(rec["start"]),
            )
            self.runs[rid] = run
            self._open[(run.user, run.server)] = rid
            self._by_user.setdefault(run.user, []).append(run)
            if run.team:
                self._by_team.setdefault(run.team, []).append(run)
            return True
        if rec["event"] == "end":
            run = self.runs.get(rid)
            if run is None or run.end is not None:
                return False
            run.end = max(run.start, float(rec["end"]))
            run.end_reason = str(rec.get("reason") or "")
            if self._open.get((run.user, run.server)) == rid:
                del self._open[(run.user, run.server)]
            return True
        raise ValueError("unknown event")

    # ---- writing ----
    def _append(self, rec: dict):
        with _LOCK:
            if not self._apply(rec):
                return False
            if self.path:  # kept open; opened again after a rotation (appendfile)
                appendfile.append_line(self.path, json.dumps(rec, separators=(",", ":")))
            return True

    def runs_of(self, user: str = "", team: str = "") -> list[Run]:
        """The runs of ``user`` and those of ``team`` (each once): all a decision about a
        server of that user in that team reads, whatever the size of the record."""
        mine = self._by_user.get(user, []) if user else []
        theirs = [r for r in self._by_team.get(team, []) if r.user != user] if team else []
        return mine + theirs

    def open_run(self, user: str, server: str) -> Run | None:
        rid = self._open.get((user, server))
        return self.runs.get(rid) if rid else None

    def open_runs(self) -> list[Run]:
        return [self.runs[rid] for rid in self._open.values()]

    def started(self, rid: str, **fields) -> Run | None:
        """Record a run that started (its start defaults to now); a known id changes nothing.
        A still-open run of the same server (its end was never seen) is ended first, now."""
        if not rid or rid in self.runs:
            return self.runs.get(rid)
        stale = self.open_run(fields["user"], fields.get("server", ""))
        if stale is not None:
            self.ended(stale.id, "superseded")
        rec = {"event": "start", "id": rid, **{k: fields.get(k) for k in _FIELDS}}
        if rec["start"] is None:
            rec["start"] = self.now()
        self._append(rec)
        return self.runs[rid]

    def ended(self, rid: str, reason: str, when: float | None = None) -> Run | None:
        """Record the end of run ``rid`` (now); None when it is unknown or ended already."""
        run = self.runs.get(rid)
        if run is None or run.end is not None:
            return None
        end = self.now() if when is None else when
        self._append({"event": "end", "id": rid, "end": end, "reason": reason})
        return run


_ABSOLUTE: dict = {}  # path as configured -> absolute path (resolved once: each start asks several times)


def store_for(path: str, clock=None, log=None) -> RunStore:
    """The hub process's one store for ``path`` (read from the file the first time)."""
    key = _ABSOLUTE.get(path)
    if key is None:
        key = _ABSOLUTE[path] = os.path.abspath(path) if path else ""
    store = _STORES.get(key)
    if store is None:
        store = _STORES[key] = RunStore(path, clock or time.time, log)
    elif clock is not None:
        store.clock = clock
    return store
