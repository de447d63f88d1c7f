"""Quota arithmetic. Pure: plain data in, plain data out, no I/O, no clock.

Resources: ``gpus`` (count), ``cpu`` (guaranteed cores), ``memory`` (guaranteed bytes),
``servers`` (count). A budget maps a resource to a limit; a missing resource (or ``None``) is
unlimited.

- Per-user budget: ``quota_default`` for everyone, raised by the ``per_user`` budget of each of
  the user's groups (most generous wins, per resource), replaced per resource by
  ``quota_users[name]``.
- Group pools (``quota_groups[g]``, without ``per_user``) are shared by all members. A user in
  pooled groups has each server charged to exactly one of those pools: the one it fits in,
  preferring the one left with the most headroom. A user in no pooled group has no pool limit.
- Counted over all of the user's starting and running servers, named servers included.

The charges and their running totals are kept in ``ledger.Ledger`` (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SettingError
from ..quantity import human_quantity, parse_bytes, parse_cpu
from .ledger import RESOURCES, ZERO, Amount, Charge, Ledger  # noqa: F401 - Charge: part of this module's vocabulary
from .policyshape import BudgetPolicy
from .timebudget import TIME_KEYS, TimeBudgetError, parse_time_budget

NOUN = {"gpus": "GPUs", "cpu": "CPU cores", "memory": "memory", "servers": "servers"}


class QuotaConfigError(SettingError):
    """A quota setting is invalid; the message names the config key."""


def fmt(resource: str, value) -> str:
    """Human text for an amount of a resource ('4Gi', '2.5', '3')."""
    return "unlimited" if value is None else human_quantity(value, resource)


def parse_budget(spec, where: str, allow_per_user: bool = False) -> tuple[dict, dict]:
    """Validate one budget; returns ``(limits, per_user_limits)``. ``where`` names the key."""
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise QuotaConfigError(f"{where} must be a dict of {', '.join(RESOURCES)}, got {spec!r}")
    # a group's "datasets" ({count, storage}: team datasets) is checked by datasets.policy
    allowed = set(RESOURCES) | set(TIME_KEYS) | ({"per_user", "datasets"} if allow_per_user else set())
    unknown = set(spec) - allowed
    if unknown:
        raise QuotaConfigError(
            f"{where} has unknown key(s) {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    limits = {}
    for r in RESOURCES:
        if spec.get(r) is None:
            continue
        value = spec[r]
        try:
            if r in ("gpus", "servers"):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"not a whole number >= 0: {value!r}")
                limits[r] = value
            elif r == "cpu":
                limits[r] = parse_cpu(value)
            else:
                limits[r] = parse_bytes(value)
        except ValueError as e:
            raise QuotaConfigError(f"{where}[{r!r}] is invalid: {e}") from None
    try:
        parse_time_budget(spec, where)  # gpu_hours, cpu_hours, window: see quota.timebudget
    except TimeBudgetError as e:
        raise QuotaConfigError(str(e)) from None
    per_user = {}
    if allow_per_user and spec.get("per_user") is not None:
        per_user, _ = parse_budget(spec["per_user"], f"{where}['per_user']")
    return limits, per_user


@dataclass
class QuotaPolicy(BudgetPolicy):
    """Concurrent limits (``RESOURCES``) over default / users / groups (see ``policyshape``)."""

    RESOURCES = RESOURCES
    LISTS_UNLIMITED = True  # {resource: limit or None}

    @classmethod
    def parse(cls, spec, where: str, group: bool = False) -> tuple[dict, dict]:
        return parse_budget(spec, where, allow_per_user=group)

    @staticmethod
    def more_generous(extra, limit) -> bool:
        return extra > limit

    def user_pools(self, groups) -> list:
        return sorted(g for g in (groups or ()) if g in self.pools)


@dataclass
class Decision:
    allowed: bool
    pool: str | None = None
    message: str = ""  # refusal: which budget is full and how to free it
    note: str = ""  # short text for the form ("2 of 4 vision GPUs free")
    how: str = ""  # refusal: how to free the budget
    kind: str = ""  # refusal: "user" (the user's own budget) or "pool" (a group's pool)


def _over(usage: Amount, amount: Amount, limits: dict) -> list:
    """Resources whose limit ``usage + amount`` would exceed (only those the request uses)."""
    total = usage + amount
    return [
        r for r in RESOURCES
        if limits.get(r) is not None and amount.get(r) > 0 and total.get(r) > limits[r] + 1e-9
    ]


def _headroom(usage: Amount, amount: Amount, limits: dict) -> float:
    """Smallest remaining fraction over the limited resources after charging ``amount``."""
    fracs = [
        (limits[r] - (usage + amount).get(r)) / limits[r]
        for r in RESOURCES if limits.get(r)
    ]
    return min(fracs) if fracs else 1.0


def _servers_text(charges) -> str:
    names = [f"{c.user}/{c.server}" if c.server else f"{c.user}/(default)" for c in charges]
    return ", ".join(names) if names else "none"


@dataclass
class _Standing:
    """What a user's decisions start from, read once from the ledger (one per form, not per size)."""

    user: str
    key: tuple
    limits: dict
    usage: Amount
    pools: list  # [(pool, usage of the pool)]


def _standing(policy: QuotaPolicy, ledger: Ledger, user: str, groups, server: str) -> _Standing:
    key = (user, server)
    return _Standing(
        user, key, policy.user_limits(user, groups), ledger.user_usage(user, exclude=key),
        [(p, ledger.pool_usage(p, exclude=key)) for p in policy.user_pools(groups)],
    )


def decide(policy: QuotaPolicy, ledger: Ledger, user: str, groups, amount: Amount, server: str = "") -> Decision:
    """May ``user`` (in ``groups``) start ``server`` needing ``amount``? Pure; does not charge."""
    return _decide(policy, ledger, _standing(policy, ledger, user, groups, server), amount)


def _decide(policy: QuotaPolicy, ledger: Ledger, st: _Standing, amount: Amount) -> Decision:
    user, key, limits, usage = st.user, st.key, st.limits, st.usage
    over = _over(usage, amount, limits)
    if over:
        r = over[0]
        mine = ledger.holders(user=user, exclude=key)
        how = f"Stop one of your servers ({_servers_text(mine)}) or choose a smaller size."
        return Decision(
            False,
            message=(
                f"Your personal {NOUN[r]} budget is full: your servers hold {fmt(r, usage.get(r))} of "
                f"{fmt(r, limits[r])} {NOUN[r]} and this one needs {fmt(r, amount.get(r))} more. {how}"
            ),
            note=f"your {NOUN[r]}: {fmt(r, usage.get(r))} of {fmt(r, limits[r])} in use",
            how=how,
            kind="user",
        )
    if not st.pools:
        return Decision(True, None, note=_user_note(limits, usage, amount))
    fitting, refusals = [], []
    for p, pusage in st.pools:
        pover = _over(pusage, amount, policy.pools[p])
        if pover:
            refusals.append((p, pover[0], pusage))
        else:
            fitting.append((-_headroom(pusage, amount, policy.pools[p]), p, pusage))
    if fitting:
        fitting.sort()
        _, p, pusage = fitting[0]
        return Decision(True, p, note=_pool_note(p, policy.pools[p], pusage, amount))
    parts, notes = [], []
    for p, r, pusage in refusals:
        # the user's own servers holding some of this resource in this pool
        mine = [c for c in ledger.holders(pool=p, user=user, exclude=key) if c.amount.get(r) > 0]
        parts.append(
            f"group {p!r} holds {fmt(r, pusage.get(r))} of its {fmt(r, policy.pools[p][r])} {NOUN[r]}"
            + (f" ({fmt(r, sum(c.amount.get(r) for c in mine))} of them yours)" if mine else "")
        )
        notes.append(f"{fmt(r, max(0, policy.pools[p][r] - pusage.get(r)))} of {fmt(r, policy.pools[p][r])} {p} {NOUN[r]} free")
    r0 = refusals[0][1]
    how = (
        "A share is freed when a server of the group stops: stop one of yours, ask a team "
        "member to stop one, or choose a smaller size."
    )
    return Decision(
        False,
        message=(
            f"Your team {NOUN[r0]} budget is full: {'; '.join(parts)}, and this server needs "
            f"{fmt(r0, amount.get(r0))}. {how}"
        ),
        note="; ".join(notes),
        how=how,
        kind="pool",
    )


def _pool_note(pool, limits, usage, amount) -> str:
    for r in ("gpus", "cpu", "memory", "servers"):
        if limits.get(r) is not None and (amount.get(r) > 0 or r == "servers"):
            free = max(0, limits[r] - usage.get(r))
            return f"{fmt(r, free)} of {fmt(r, limits[r])} {pool} {NOUN[r]} free"
    return ""


def _user_note(limits, usage, amount) -> str:
    for r in ("gpus", "cpu", "memory", "servers"):
        if limits.get(r) is not None and (amount.get(r) > 0 or r == "servers"):
            free = max(0, limits[r] - usage.get(r))
            return f"{fmt(r, free)} of your {fmt(r, limits[r])} {NOUN[r]} free"
    return ""


def decide_sizes(policy, ledger, user, groups, amounts: dict, server: str = "") -> dict:
    """``{size_key: Decision}`` for every ``{size_key: Amount}``, reading the ledger once."""
    st = _standing(policy, ledger, user, groups, server)
    return {key: _decide(policy, ledger, st, amount) for key, amount in amounts.items()}


def form_verdict(d: Decision) -> tuple:
    """A decision as the spawn form shows it: ``(allowed, note)``."""
    return (d.allowed, d.note if d.allowed else f"{d.note}. {d.how}")


def availability(policy, ledger, user, groups, amounts: dict, server: str = "") -> dict:
    """``{size_key: (allowed, note)}`` for the spawn form, from ``{size_key: Amount}``."""
    decisions = decide_sizes(policy, ledger, user, groups, amounts, server)
    return {key: form_verdict(d) for key, d in decisions.items()}


def container_amount(requests: dict, limits: dict) -> Amount:
    """The one rule for what a container holds (the form's verdicts and the charge both use
    it): per resource its request, or its limit when it has no request (Kubernetes then sets
    the request to the limit); GPUs from any ``*/gpu`` request or limit."""
    requests, limits = requests or {}, limits or {}
    cpu = requests.get("cpu", limits.get("cpu"))
    mem = requests.get("memory", limits.get("memory"))
    gpu = [v for k, v in {**requests, **limits}.items() if k.endswith("/gpu")]
    return Amount(
        gpus=int(parse_cpu(gpu[0])) if gpu else 0,
        cpu=parse_cpu(cpu) if cpu is not None else 0.0,
        memory=parse_bytes(mem) if mem is not None else 0,
        servers=1,
    )


def size_resources(size: dict):
    """(requests, limits) of the pod KubeSpawner makes for a size (see ``PtjaasSpawner.sizes``):
    like KubeSpawner, a guarantee or limit of 0 sets nothing."""
    requests, limits = {}, {}
    for key, value in (("cpu", size.get("cpu_guarantee")), ("memory", size.get("mem_guarantee"))):
        if value and (parse_cpu(value) if key == "cpu" else parse_bytes(value)):
            requests[key] = value
    for key, value in (("cpu", size.get("cpu_limit")), ("memory", size.get("mem_limit"))):
        if value and (parse_cpu(value) if key == "cpu" else parse_bytes(value)):
            limits[key] = value
    gpus = int(size.get("gpu") or 0)
    if gpus:
        limits[size.get("gpu_resource") or "nvidia.com/gpu"] = str(gpus)
    return requests, limits


def size_amount(size: dict) -> Amount:
    """What a server of this size will be charged: ``container_amount`` of its pod's resources."""
    return container_amount(*size_resources(size))


def pod_amount(pod: dict) -> Amount:
    """What a pod (API JSON form) is charged: the sum of ``container_amount`` over its
    containers (one server)."""
    total = ZERO
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        total = total + container_amount(res.get("requests"), res.get("limits"))
    return Amount(gpus=total.gpus, cpu=total.cpu, memory=total.memory, servers=1)


def pod_limits(pod: dict):
    """(CPU cores, memory bytes) limits of a pod (API JSON form), for display."""
    cpu, mem = 0.0, 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        limits = (c.get("resources") or {}).get("limits") or {}
        cpu += parse_cpu(limits["cpu"]) if "cpu" in limits else 0.0
        mem += parse_bytes(limits["memory"]) if "memory" in limits else 0
    return cpu, mem


SUMMARY_ORDER = ("servers", "gpus", "cpu", "memory")


def summary(policy: QuotaPolicy, ledger: Ledger, user: str, groups, server: str = "") -> str:
    """The user's quota in one line for the top of the form: 'you: 1 of 2 servers, 0 of 1
    GPUs; team vision: 3 of 4 GPUs free' ('' without quotas)."""
    if not policy.enabled:
        return ""
    key = (user, server)
    limits = policy.user_limits(user, groups)
    usage = ledger.user_usage(user, exclude=key)
    parts = []
    mine = [f"{fmt(r, usage.get(r))} of {fmt(r, limits[r])} {NOUN[r]}" for r in SUMMARY_ORDER
            if limits.get(r) is not None]
    if mine:
        parts.append("you: " + ", ".join(mine))
    for p in policy.user_pools(groups):
        pool, pusage = policy.pools[p], ledger.pool_usage(p, exclude=key)
        free = [f"{fmt(r, max(0, pool[r] - pusage.get(r)))} of {fmt(r, pool[r])} {NOUN[r]} free"
                for r in SUMMARY_ORDER if pool.get(r) is not None]
        parts.append(f"team {p}: " + ", ".join(free))
    return "; ".join(parts)


def usage_report(policy: QuotaPolicy, ledger: Ledger, user_groups: dict) -> dict:
    """Usage by user, group, size, image version and namespace (the admin JSON).
    ``user_groups``: name -> groups of the users who hold servers. ``namespaces``: namespace ->
    ``{gpus, cpu, memory, servers, cpu_limit, memory_limit, users}`` (team namespaces and the
    hub's; a server whose namespace is unknown under "(unknown)")."""
    by_user, by_group, by_size, by_version, by_namespace = {}, {}, {}, {}, {}

    def bump(table, key, c):
        row = table.setdefault(key, {**ZERO.as_dict()})
        for r in RESOURCES:
            row[r] = row[r] + c.amount.get(r)

    servers = []
    for c in ledger.holders():
        bump(by_user, c.user, c)
        row = by_user[c.user]
        row["cpu_limit"] = row.get("cpu_limit", 0.0) + c.cpu_limit
        row["memory_limit"] = row.get("memory_limit", 0) + c.mem_limit
        bump(by_size, c.size or "(unknown)", c)
        bump(by_version, f"{c.image or '(unknown)'}:{c.version or '(unknown)'}", c)
        if c.pool:
            bump(by_group, c.pool, c)
        ns = c.namespace or "(unknown)"
        bump(by_namespace, ns, c)
        row = by_namespace[ns]
        row["cpu_limit"] = row.get("cpu_limit", 0.0) + c.cpu_limit
        row["memory_limit"] = row.get("memory_limit", 0) + c.mem_limit
        row.setdefault("users", set()).add(c.user)
        servers.append({"user": c.user, "server": c.server, "pool": c.pool, "namespace": c.namespace or None,
                        "size": c.size, "image": c.image, "version": c.version, **c.amount.as_dict(),
                        "cpu_limit": c.cpu_limit, "memory_limit": c.mem_limit})
    for u, row in by_user.items():
        row["limits"] = policy.user_limits(u, user_groups.get(u, ()))
    groups = {}
    for g, limits in policy.pools.items():
        used = by_group.get(g, {**ZERO.as_dict()})
        groups[g] = {"used": used, "limits": {r: limits.get(r) for r in RESOURCES},
                     "holders": sorted({c.user for c in ledger.holders(pool=g)})}
    for row in by_namespace.values():
        row["users"] = sorted(row["users"])
    namespaces = dict(sorted(by_namespace.items()))
    return {"servers": servers, "users": by_user, "groups": groups, "sizes": by_size, "versions": by_version,
            "namespaces": namespaces}
