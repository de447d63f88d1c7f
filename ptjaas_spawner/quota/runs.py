"""Server runs summed into time windows. Pure: plain data in, plain data out, no I/O, no clock
(``now`` is always an argument).

A run is one server from a successful start to its end (``end`` None: still running, counted
up to ``now``). GPU-seconds are ``gpus x seconds``, CPU-seconds ``guaranteed cores x seconds``.

Windows (``window`` of a time budget): ``"30d"`` (any ``Nd``, 1 to 366) is rolling, the last N
days up to now; ``"month"`` is the calendar month (UTC) now is in.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from ..errors import SettingError

DAY = 86400.0
HOUR = 3600.0
MAX_WINDOW_DAYS = 366
_DAYS = re.compile(r"^([0-9]{1,3})d$")


@dataclass(slots=True)
class Run:
    id: str
    user: str
    server: str = ""
    team: str = ""
    image: str = ""
    version: str = ""
    size: str = ""
    gpus: int = 0
    cpu: float = 0.0  # guaranteed cores
    memory: int = 0  # guaranteed bytes
    start: float = 0.0  # epoch seconds
    end: float | None = None
    end_reason: str = ""

    def seconds(self, a: float, b: float, now: float) -> float:
        """Seconds of this run inside ``[a, b)``, a running run counted up to ``now``."""
        end = self.end if self.end is not None else now
        return max(0.0, min(end, b, now) - max(self.start, a))

    def as_dict(self) -> dict:
        return asdict(self)


class WindowError(SettingError):
    """A window setting is invalid (the message names the key)."""


@dataclass(frozen=True)
class Window:
    kind: str  # "rolling" or "month"
    days: int = 0

    def start(self, now: float) -> float:
        if self.kind == "month":
            t = datetime.fromtimestamp(now, timezone.utc)
            return datetime(t.year, t.month, 1, tzinfo=timezone.utc).timestamp()
        return now - self.days * DAY

    def next_reset(self, now: float) -> float:
        """Calendar month: when the next month begins (usage starts again from 0)."""
        t = datetime.fromtimestamp(now, timezone.utc)
        year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
        return datetime(year, month, 1, tzinfo=timezone.utc).timestamp()

    @property
    def text(self) -> str:
        return "this month" if self.kind == "month" else f"in the last {self.days} days"

    @property
    def spec(self) -> str:
        return "month" if self.kind == "month" else f"{self.days}d"


def parse_window(value, where: str) -> Window:
    """``"month"`` or ``"Nd"`` (1 <= N <= 366); anything else raises naming ``where``."""
    if value == "month":
        return Window("month")
    m = _DAYS.match(value) if isinstance(value, str) else None
    if m and 1 <= int(m.group(1)) <= MAX_WINDOW_DAYS:
        return Window("rolling", int(m.group(1)))
    shown = repr(value)[:40]
    raise WindowError(f"{where} must be \"month\" (calendar month, UTC) or a rolling number of days "
                      f"such as \"30d\" (1d to {MAX_WINDOW_DAYS}d), got {shown}")


RESOURCE_OF = {"gpu_hours": "gpus", "cpu_hours": "cpu"}


def rate(run: Run, resource: str) -> float:
    """Units of ``resource`` (``gpu_hours`` or ``cpu_hours``) a run uses per second."""
    return float(getattr(run, RESOURCE_OF[resource]))


def used_seconds(runs, resource: str, a: float, b: float, now: float) -> float:
    """Resource-seconds (GPU- or CPU-seconds) of ``runs`` inside ``[a, b)``."""
    return sum(rate(r, resource) * r.seconds(a, b, now) for r in runs)


def used_in_window(runs, resource: str, window: Window, now: float) -> float:
    return used_seconds(runs, resource, window.start(now), now, now)


def frees_at(runs, resource: str, window: Window, limit_seconds: float, now: float) -> float:
    """When the usage of ``runs`` in the window drops below ``limit_seconds`` if every running
    run stopped ``now`` (``now`` itself when it already is below)."""
    closed = [Run(**{**r.as_dict(), "end": r.end if r.end is not None else now}) for r in runs]
    if used_in_window(closed, resource, window, now) < limit_seconds:
        return now
    if window.kind == "month":
        return window.next_reset(now)
    span = window.days * DAY
    # U(x), x = t - span the window's start: each run adds rate * (end - max(start, x)) while
    # x < end, so U falls with slope -(sum of the rates of the runs with start < x < end): sweep
    x = now - span
    used = used_seconds(closed, resource, x, now, now)
    slope = -sum(rate(r, resource) for r in closed if r.start < x < r.end)
    events = sorted(
        [(r.start, -rate(r, resource)) for r in closed if r.start > x]
        + [(r.end, rate(r, resource)) for r in closed if r.end > x]
    )
    for at, change in events:
        if slope < 0 and used + slope * (at - x) < limit_seconds:
            return x + (limit_seconds - used) / slope + span
        used += slope * (at - x)
        x = at
        slope += change
    return x + span


def day_start(t: float) -> float:
    d = datetime.fromtimestamp(t, timezone.utc)
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp()


def daily(runs, now: float, days: int = 30, key=lambda r: r.user) -> dict:
    """Per UTC day for the last ``days`` days (today included, oldest first), per ``key(run)``:
    ``{"days": ["2026-12-07", ...], "series": {key: {"gpu_hours": [...], "cpu_hours": [...]}}}``."""
    today = day_start(now)
    starts = [today - (days - 1 - i) * DAY for i in range(days)]
    labels = [datetime.fromtimestamp(s, timezone.utc).strftime("%Y-%m-%d") for s in starts]
    series: dict = {}
    first = starts[0]
    for r in runs:
        if (r.end is not None and r.end <= first) or r.start >= now:
            continue
        row = series.setdefault(key(r), {"gpu_hours": [0.0] * days, "cpu_hours": [0.0] * days})
        for i, s in enumerate(starts):
            secs = r.seconds(s, s + DAY, now)
            if secs:
                row["gpu_hours"][i] += r.gpus * secs / HOUR
                row["cpu_hours"][i] += r.cpu * secs / HOUR
    return {"days": labels, "series": dict(sorted(series.items()))}


def totals(runs, a: float, b: float, now: float, key=lambda r: r.user) -> dict:
    """``{key: {"gpu_hours", "cpu_hours", "runs"}}`` of the runs' time inside ``[a, b)``."""
    out: dict = {}
    for r in runs:
        secs = r.seconds(a, b, now)
        if secs <= 0:
            continue
        row = out.setdefault(key(r), {"gpu_hours": 0.0, "cpu_hours": 0.0, "runs": 0})
        row["gpu_hours"] += r.gpus * secs / HOUR
        row["cpu_hours"] += r.cpu * secs / HOUR
        row["runs"] += 1
    return dict(sorted(out.items()))
