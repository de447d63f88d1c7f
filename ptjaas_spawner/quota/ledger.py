"""Who holds what: the charges of starting and running servers, with running totals. Pure.

A decision reads a user's total and the totals of the user's pools; keeping them as charges
come and go makes it cost the same at 10 or 10,000 running servers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

RESOURCES = ("gpus", "cpu", "memory", "servers")


@dataclass(frozen=True)
class Amount:
    gpus: int = 0
    cpu: float = 0.0
    memory: int = 0
    servers: int = 1

    def __add__(self, other: Amount) -> Amount:
        return Amount(*(getattr(self, r) + getattr(other, r) for r in RESOURCES))

    def get(self, resource: str):
        return getattr(self, resource)

    def as_dict(self) -> dict:
        return asdict(self)


ZERO = Amount(0, 0.0, 0, 0)


@dataclass
class Charge:
    """One starting or running server's share."""

    user: str
    server: str
    amount: Amount
    pool: str | None = None
    size: str = ""
    image: str = ""
    version: str = ""
    cpu_limit: float = 0.0  # shown beside the guarantee (not charged)
    mem_limit: int = 0
    namespace: str = ""  # where the server's pod runs ("" when not known)


_NANO = 10**9


def _units(amount: Amount) -> tuple:
    """An amount as whole numbers (CPU in nanocores), so running totals stay exact however many
    charges come and go."""
    return (amount.gpus, round(amount.cpu * _NANO), amount.memory, amount.servers)


def _amount(units) -> Amount:
    gpus, nanocpu, memory, servers = units
    return Amount(gpus, nanocpu / _NANO, memory, servers)


class _Group:
    """The charges of one user or one pool and their running total."""

    __slots__ = ("charges", "total")

    def __init__(self):
        self.charges: dict[tuple, Charge] = {}
        self.total = [0, 0, 0, 0]

    def add(self, key, charge):
        self.charges[key] = charge
        for i, v in enumerate(_units(charge.amount)):
            self.total[i] += v

    def remove(self, key) -> bool:
        """Remove ``key``; True when the group is left empty."""
        charge = self.charges.pop(key)
        for i, v in enumerate(_units(charge.amount)):
            self.total[i] -= v
        return not self.charges

    def usage(self, exclude=None) -> Amount:
        excluded = self.charges.get(exclude) if exclude is not None else None
        if excluded is None:
            return _amount(self.total)
        return _amount([t - v for t, v in zip(self.total, _units(excluded.amount))])

    def in_order(self, exclude=None) -> list:
        return [c for key, c in sorted(self.charges.items()) if key != exclude]


class Ledger:
    """Charges by ``(user, server name)``, with a running total per user and per pool kept as
    charges come and go: a decision costs the same whatever the number of running servers. Not
    thread-safe: used from the hub's event loop.

    ``on_add(charge)`` and ``on_remove(charge)`` (optional) are called after each change (the hub
    keeps its Prometheus gauges with them); replacing a charge removes the old one first.
    """

    def __init__(self, on_add=None, on_remove=None):
        self.charges: dict[tuple, Charge] = {}  # read-only outside: change through add/remove
        self._users: dict[str, _Group] = {}
        self._pools: dict[str, _Group] = {}
        self.on_add, self.on_remove = on_add, on_remove

    def __len__(self):
        return len(self.charges)

    def add(self, charge: Charge) -> Charge | None:
        """Charge a server; returns the charge it replaced (same user and server), if any."""
        key = (charge.user, charge.server)
        old = self.remove(*key)
        self.charges[key] = charge
        self._users.setdefault(charge.user, _Group()).add(key, charge)
        if charge.pool is not None:
            self._pools.setdefault(charge.pool, _Group()).add(key, charge)
        if self.on_add is not None:
            self.on_add(charge)
        return old

    def remove(self, user: str, server: str) -> Charge | None:
        key = (user, server)
        charge = self.charges.pop(key, None)
        if charge is None:
            return None
        if self._users[user].remove(key):
            del self._users[user]
        if charge.pool is not None and self._pools[charge.pool].remove(key):
            del self._pools[charge.pool]
        if self.on_remove is not None:
            self.on_remove(charge)
        return charge

    def get(self, user: str, server: str) -> Charge | None:
        return self.charges.get((user, server))

    def clear(self):
        for user, server in list(self.charges):
            self.remove(user, server)

    def user_usage(self, user, exclude=None) -> Amount:
        group = self._users.get(user)
        return group.usage(exclude) if group is not None else ZERO

    def pool_usage(self, pool, exclude=None) -> Amount:
        group = self._pools.get(pool)
        return group.usage(exclude) if group is not None else ZERO

    def holders(self, pool=None, user=None, exclude=None) -> list:
        """Charges sorted by (user, server), of one user and/or one pool (sorting only those)."""
        if user is not None:
            group = self._users.get(user)
            mine = group.in_order(exclude) if group is not None else []
            return [c for c in mine if pool is None or c.pool == pool]
        if pool is not None:
            group = self._pools.get(pool)
            return group.in_order(exclude) if group is not None else []
        return [c for key, c in sorted(self.charges.items()) if key != exclude]


