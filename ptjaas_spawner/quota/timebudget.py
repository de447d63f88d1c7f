"""Budgets over time: GPU-hours and CPU-hours per window. Pure: plain data in, plain data out,
no I/O, no clock (``now`` is an argument).

Declared beside the concurrent budgets (``quota.budget``), with the same keys' scopes:

- ``quota_default``: ``{"gpu_hours": 20, "cpu_hours": 500, "window": "month"}`` for every user;
- ``quota_groups[g]["per_user"]``: raises each member's own (most generous wins, per resource);
- ``quota_users[name]``: replaces the user's own, resource by resource;
- ``quota_groups[g]`` (top level): the team's pool, shared by the runs accounted to team ``g``.

``window``: ``"30d"`` (rolling, any ``Nd``) or ``"month"`` (calendar, UTC); default ``"30d"``.
A run is accounted to one team (``Run.team``): its team namespace's group, else the first of
its user's groups (sorted) with a time pool.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SettingError
from .policyshape import BudgetPolicy
from .runs import HOUR, RESOURCE_OF, Window, WindowError, frees_at, parse_window, rate, used_in_window

TIME_KEYS = ("gpu_hours", "cpu_hours", "window")
RESOURCES = ("gpu_hours", "cpu_hours")
NOUN = {"gpu_hours": "GPU-hours", "cpu_hours": "CPU-hours"}
DEFAULT_WINDOW = "30d"
WARN_AT = 0.9


class TimeBudgetError(SettingError):
    """A time budget setting is invalid; the message names the key."""


@dataclass(frozen=True)
class Limit:
    hours: float
    window: Window


def parse_time_budget(spec, where: str) -> dict:
    """``{resource: Limit}`` of one budget dict (only its time keys are read)."""
    spec = spec if isinstance(spec, dict) else {}
    if not any(spec.get(r) is not None for r in RESOURCES):
        if spec.get("window") is not None:
            raise TimeBudgetError(f"{where}['window'] is set but neither gpu_hours nor cpu_hours is")
        return {}
    try:
        window = parse_window(spec.get("window", DEFAULT_WINDOW), f"{where}['window']")
    except WindowError as e:
        raise TimeBudgetError(str(e)) from None
    out = {}
    for r in RESOURCES:
        value = spec.get(r)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 10**7:
            raise TimeBudgetError(f"{where}[{r!r}] must be a number of hours from 0 to 10000000, got {repr(value)[:40]}")
        out[r] = Limit(float(value), window)
    return out


@dataclass
class TimePolicy(BudgetPolicy):
    """Hours per window (``RESOURCES``) over default / users / groups (see ``policyshape``)."""

    RESOURCES = RESOURCES

    @classmethod
    def parse(cls, spec, where: str, group: bool = False) -> tuple[dict, dict]:
        limits = parse_time_budget(spec, where)
        if not group:
            return limits, {}
        return limits, parse_time_budget((spec or {}).get("per_user") if isinstance(spec, dict) else None,
                                         f"{where}['per_user']")

    @staticmethod
    def more_generous(extra, limit) -> bool:
        return extra.hours > limit.hours

    def team_of(self, groups, team_namespace_group: str = "") -> str:
        """The team a new run is accounted to."""
        if team_namespace_group:
            return team_namespace_group
        pooled = sorted(g for g in (groups or ()) if g in self.pools)
        return pooled[0] if pooled else ""


@dataclass
class Standing:
    """One budget as it stands: who (``scope`` "user" or "team", ``name``), what, how much."""

    scope: str
    name: str
    resource: str
    limit: Limit
    used: float  # resource-seconds in the window
    rate: float  # resource-seconds per second of the running runs it counts

    @property
    def limit_seconds(self) -> float:
        return self.limit.hours * HOUR

    @property
    def left_hours(self) -> float:
        return max(0.0, self.limit_seconds - self.used) / HOUR

    @property
    def fraction(self) -> float:
        return self.used / self.limit_seconds if self.limit_seconds else (1.0 if self.used or self.rate else 0.0)

    @property
    def who(self) -> str:
        return "you" if self.scope == "user" else self.name

    def line(self) -> str:
        """'vision: 142 of 200 GPU-hours left this month'."""
        return (f"{self.who}: {_h(self.left_hours)} of {_h(self.limit.hours)} {NOUN[self.resource]} left "
                f"{self.limit.window.text}")


def _h(hours: float) -> str:
    return f"{hours:.1f}".rstrip("0").rstrip(".") if hours < 10 else f"{hours:.0f}"


def standings(policy: TimePolicy, runs, user: str, groups, team: str, now: float) -> list[Standing]:
    """The user's own time budgets and those of ``team``'s pool, as they stand ``now``."""
    out = []
    mine = [r for r in runs if r.user == user]
    for r, limit in policy.user_limits(user, groups).items():
        out.append(_standing("user", user, r, limit, mine, now))
    if team and team in policy.pools:
        theirs = [r for r in runs if r.team == team]
        for r, limit in policy.pools[team].items():
            out.append(_standing("team", team, r, limit, theirs, now))
    return out


def _standing(scope, name, resource, limit, runs, now) -> Standing:
    running = sum(rate(r, resource) for r in runs if r.end is None)
    return Standing(scope, name, resource, limit, used_in_window(runs, resource, limit.window, now), running)


def _when(t: float, now: float) -> str:
    from datetime import datetime, timezone

    if t <= now:
        return "now"
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def check_start(policy: TimePolicy, runs, user: str, groups, team: str, gpus: int, cpu: float,
                now: float) -> str:
    """'' when a new server using ``gpus`` GPUs and ``cpu`` cores may start ``now``, else the
    refusal: which budget is used up, what is left, and when it frees up."""
    asks = {"gpu_hours": gpus, "cpu_hours": cpu}
    for st in standings(policy, runs, user, groups, team, now):
        if asks[st.resource] <= 0 or st.used < st.limit_seconds:
            continue
        counted = [r for r in runs if (r.user == user if st.scope == "user" else r.team == team)]
        free = frees_at(counted, st.resource, st.limit.window, st.limit_seconds, now)
        owner = "Your" if st.scope == "user" else f"Team {team}'s"
        running = " once the servers counting against it stop" if st.rate else ""
        return (f"{owner} {NOUN[st.resource]} budget is used up: {_h(st.used / HOUR)} of "
                f"{_h(st.limit.hours)} {NOUN[st.resource]} {st.limit.window.text}, 0 left. It frees up "
                f"{'at ' + _when(free, now) if free > now else 'now'}{running}. "
                f"Choose a size without {'GPUs' if st.resource == 'gpu_hours' else 'CPU guarantee'} "
                f"or ask an administrator for a larger budget.")
    return ""


def over_budget(st: Standing, grace_seconds: float) -> bool:
    """A running server counted by ``st`` is stopped: 100 % used plus what its running servers
    use in ``grace_seconds``."""
    return st.rate > 0 and st.used >= st.limit_seconds + st.rate * grace_seconds


def counts(st: Standing, run) -> bool:
    """Does the running ``run`` count against ``st``?"""
    if getattr(run, RESOURCE_OF[st.resource]) <= 0:
        return False
    return run.user == st.name if st.scope == "user" else run.team == st.name


def budget_line(policy: TimePolicy, runs, user: str, groups, team: str, now: float) -> str:
    """The form's line: 'vision: 142 of 200 GPU-hours left this month; you: ...' ('' without)."""
    found = standings(policy, runs, user, groups, team, now)
    return "; ".join(st.line() for st in sorted(found, key=lambda st: st.scope != "team"))
