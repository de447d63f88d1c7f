"""Append whole lines to a record file (the audit record, the usage record), kept open.

Each line is one ``os.write`` on a descriptor opened with ``O_APPEND`` (created 0600), so a line
is never split or interleaved with another writer's. Opening and closing the file for every line
cost a start two opens (issue 21); the descriptor is now kept, and before each line a ``stat`` of
the path tells whether the file is still the one held: if it was rotated (renamed and a new one
made, as logrotate does) or removed, the path is opened again,
so the line lands in the file at the path, as before. The inode held cannot be reused by a new
file while it is open, so a device and inode that match mean the same file.
"""

from __future__ import annotations

import errno
import os
import threading

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
_MAX_OPEN = 16  # paths held open at once (a hub has two records; tests make many)

_lock = threading.Lock()
_open: dict = {}  # path -> (fd, st_dev, st_ino)


def _close(path: str) -> None:
    held = _open.pop(path, None)
    if held is not None:
        try:
            os.close(held[0])
        except OSError:
            pass


def _reopen(path: str, make_dirs: bool) -> int:
    _close(path)
    try:
        fd = os.open(path, _FLAGS, 0o600)
    except FileNotFoundError:
        if not make_dirs:
            raise
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)  # its directory was removed
        fd = os.open(path, _FLAGS, 0o600)
    st = os.fstat(fd)
    if len(_open) >= _MAX_OPEN:
        _close(next(iter(_open)))
    _open[path] = (fd, st.st_dev, st.st_ino)
    return fd


def append_line(path: str, line: str, make_dirs: bool = False) -> None:
    """Append ``line`` and a newline to ``path`` in one write (the file created 0600 if missing;
    with ``make_dirs`` its directory too). Raises OSError as ``open``/``write`` would."""
    data = (line + "\n").encode()
    with _lock:
        held = _open.get(path)
        fd = None
        if held is not None:
            try:
                st = os.stat(path)
                if (st.st_dev, st.st_ino) == held[1:]:
                    fd = held[0]
            except OSError:  # removed (or unreadable): opened again below
                pass
        if fd is None:
            fd = _reopen(path, make_dirs)
        try:
            os.write(fd, data)
        except OSError as e:  # the descriptor went bad: one more try on a fresh one
            if e.errno != errno.EBADF:
                raise
            fd = _reopen(path, make_dirs)
            os.write(fd, data)


def close_all() -> None:
    """Close every file held (a test that removes its folder does not need it: files are
    reopened when their path changes)."""
    with _lock:
        for path in list(_open):
            _close(path)
