"""The shape both budget policies share. Pure: plain data in, plain data out.

A budget policy (concurrent limits: ``quota.budget.QuotaPolicy``; hours per window:
``quota.timebudget.TimePolicy``) is read from the same three settings:

- ``quota_default``: every user's own budget;
- ``quota_users[name]``: replaces a user's own budget, resource by resource;
- ``quota_groups[g]``: the group's pool (its top-level keys), and with ``per_user`` a budget that
  raises each member's own (the most generous of the user's groups wins, per resource).

A subclass says which resources it has, how one budget dict is parsed and which of two limits
is the more generous; the rest (reading the settings, ``enabled``, ``user_limits``) is here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..remembered import Remembered, settings_key

_POLICIES = Remembered(32)  # (policy class, prefix, the settings' pickle) -> the policy


@dataclass
class BudgetPolicy:
    default: dict = field(default_factory=dict)  # resource -> limit, for every user
    users: dict = field(default_factory=dict)  # user -> {resource: limit}, replacing default's
    pools: dict = field(default_factory=dict)  # group -> {resource: limit}, shared by its members
    per_user: dict = field(default_factory=dict)  # group -> {resource: limit}, each member's own

    RESOURCES = ()  # the resources a budget limits, in the order user_limits lists them
    LISTS_UNLIMITED = False  # user_limits maps an unlimited resource to None (else leaves it out)

    @classmethod
    def parse(cls, spec, where: str, group: bool = False) -> tuple[dict, dict]:
        """``(limits, per_user limits)`` of one budget dict, ``where`` naming its setting;
        ``group``: it is a ``quota_groups`` entry (the only place ``per_user`` is allowed)."""
        raise NotImplementedError

    @staticmethod
    def more_generous(extra, limit) -> bool:
        """Whether limit ``extra`` allows more than ``limit``."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, default=None, users=None, groups=None, prefix="c.PtjaasSpawner"):
        """The policy of the three settings, each checked (errors name the setting). Parsed once
        per settings: every spawner (one per user in a hub process) asks for the same policy, so
        the one returned is shared and must be read, never changed. Bad settings raise each time."""
        settings = settings_key(default, users, groups)
        key = None if settings is None else (cls, prefix, settings)
        return _POLICIES.get_or_make(key, lambda: cls._parse_config(default, users, groups, prefix))

    @classmethod
    def _parse_config(cls, default, users, groups, prefix):
        pol = cls()
        pol.default, _ = cls.parse(default, f"{prefix}.quota_default")
        for name, spec in (users or {}).items():
            limits, _ = cls.parse(spec, f"{prefix}.quota_users[{name!r}]")
            if limits:  # a user with only the other policy's keys has none of this one
                pol.users[name] = limits
        for name, spec in (groups or {}).items():
            pool, per_user = cls.parse(spec, f"{prefix}.quota_groups[{name!r}]", group=True)
            if pool:
                pol.pools[name] = pool
            if per_user:
                pol.per_user[name] = per_user
        return pol

    @property
    def enabled(self) -> bool:
        return bool(self.default or self.users or self.pools or self.per_user)

    def user_limits(self, user: str, groups) -> dict:
        """A user's own limits: ``default``, raised by their groups' ``per_user`` (most generous
        wins; an unlimited default stays unlimited), replaced by their ``users`` entry."""
        out = {}
        for r in self.RESOURCES:
            limit = self.default.get(r)  # None: unlimited by default
            for g in sorted(groups or ()):
                extra = self.per_user.get(g, {}).get(r)
                if extra is not None and limit is not None and self.more_generous(extra, limit):
                    limit = extra
            if r in self.users.get(user, {}):
                limit = self.users[user][r]
            if limit is not None or self.LISTS_UNLIMITED:
                out[r] = limit
        return out
