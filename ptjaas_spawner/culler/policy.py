"""Pure culling policy: which servers to cull, and why.

No I/O here. Inputs are plain data (the hub REST API's user/server models as dicts, the
catalog's size/image dicts, a ``now`` datetime); outputs are plain data.

Timeouts come from the spawner's catalog config (``c.PtjaasSpawner.sizes`` / ``images``):
a size or an image may carry ``cull_idle_timeout``, ``cull_max_age`` and
``kernel_idle_timeout`` (seconds). For each key:

- absent / None: inherit (the culler's global ``--timeout`` / ``--max-age``);
- a positive integer: that limit;
- 0: no limit of that kind for servers of this size/image.

When both the server's size and its image set a key, the stricter (smaller positive) value
wins, so a CUDA image can be culled sooner whatever size it runs on. A server whose size is
unknown (no ``user_options``, or a size since removed from the catalog) gets the global limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from ..objects import label_value
from ..errors import SettingError
from ..settings_schema import CULL_KEYS
from ..timestamps import parse_time  # noqa: F401 - also a hook helper (culler.policy:parse_time)


#: default names of the keys the spawner records in a server's ``user_options``
DEFAULT_OPTION_KEYS = {"size": "size", "image": "image", "version": "version"}


class PolicyError(SettingError):
    """Invalid culling configuration; the message names the offending config key."""


def _check_seconds(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (
        isinstance(value, float) and not value.is_integer()
    ):
        raise PolicyError(f"{where} must be a whole number of seconds >= 0 (0 = no limit), not {value!r}")
    return int(value)


def extract_policy(
    sizes: Mapping[str, Mapping] | None,
    images: Mapping[str, Mapping] | None,
    *,
    config_prefix: str = "c.PtjaasSpawner",
) -> dict:
    """Validate the culling keys of a catalog and return the JSON-able policy data.

    Only what the culler needs is kept: the three culling keys per size and per image, and
    each size's GPU count (for usage records). Raises :class:`PolicyError` naming the key
    (e.g. ``c.PtjaasSpawner.sizes['gpu-small']['cull_idle_timeout']``) on bad values.
    """
    out: dict = {"sizes": {}, "images": {}}
    for kind, table in (("sizes", sizes or {}), ("images", images or {})):
        if not isinstance(table, Mapping):
            raise PolicyError(f"{config_prefix}.{kind} must be a dict, not {type(table).__name__}")
        for key, spec in table.items():
            if not isinstance(spec, Mapping):
                raise PolicyError(f"{config_prefix}.{kind}[{key!r}] must be a dict")
            entry = {}
            for ck in CULL_KEYS:
                v = _check_seconds(spec.get(ck), f"{config_prefix}.{kind}[{key!r}][{ck!r}]")
                if v is not None:
                    entry[ck] = v
            if kind == "sizes":
                gpu = spec.get("gpu", 0) or 0
                if isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 0:
                    raise PolicyError(
                        f"{config_prefix}.sizes[{key!r}]['gpu'] must be an integer >= 0, not {gpu!r}")
                entry["gpu"] = gpu
            out[kind][key] = entry
    return out


def _combine(*values: int | None) -> int | None:
    """Stricter of the values that are set: smallest positive; 0 only if all set ones are 0."""
    given = [v for v in values if v is not None]
    if not given:
        return None
    positive = [v for v in given if v > 0]
    return min(positive) if positive else 0


#: the idle timeout (seconds) of servers whose size and image set none: z2jh's ``cull.timeout``
#: default, the one default of the culler's command line, its hub service and its policy
DEFAULT_TIMEOUT = 3600


@dataclass(frozen=True)
class CullPolicy:
    """Everything a culling decision depends on (plain data, JSON round-trippable)."""

    timeout: int = DEFAULT_TIMEOUT  # global idle timeout (--timeout)
    max_age: int = 0  # global max age (--max-age), 0 = none
    sizes: Mapping[str, Mapping] = field(default_factory=dict)
    images: Mapping[str, Mapping] = field(default_factory=dict)
    option_keys: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_OPTION_KEYS))
    cull_default_servers: bool = True
    cull_named_servers: bool = True
    cull_users: bool = False
    cull_admin_users: bool = True

    @classmethod
    def from_dict(cls, data: Mapping | None, **overrides) -> "CullPolicy":
        data = dict(data or {})
        data.update({k: v for k, v in overrides.items() if v is not None})
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise PolicyError(f"unknown culling policy keys: {sorted(unknown)}")
        checked = extract_policy(data.get("sizes"), data.get("images"), config_prefix="policy")
        data["sizes"], data["images"] = checked["sizes"], checked["images"]
        keys = dict(DEFAULT_OPTION_KEYS)
        keys.update(data.get("option_keys") or {})
        data["option_keys"] = keys
        for k in ("timeout", "max_age"):
            if k in data:
                data[k] = _check_seconds(data[k], k) or 0
        return cls(**data)

    def to_dict(self) -> dict:
        return {
            "timeout": self.timeout,
            "max_age": self.max_age,
            "sizes": {k: dict(v) for k, v in self.sizes.items()},
            "images": {k: dict(v) for k, v in self.images.items()},
            "option_keys": dict(self.option_keys),
            "cull_default_servers": self.cull_default_servers,
            "cull_named_servers": self.cull_named_servers,
            "cull_users": self.cull_users,
            "cull_admin_users": self.cull_admin_users,
        }

    def identify(self, server: Mapping) -> tuple[str | None, str | None, str | None]:
        """(size, image, version) recorded in a server model's ``user_options``."""
        opts = server.get("user_options") or {}
        if not isinstance(opts, Mapping):
            return None, None, None

        def get(name):
            v = opts.get(self.option_keys[name])
            # form submissions may arrive as one-element lists
            if isinstance(v, list):
                v = v[0] if v else None
            return v if isinstance(v, str) and v else None

        return get("size"), get("image"), get("version")

    def limits(self, size: str | None, image: str | None) -> tuple[int, int]:
        """(idle timeout, max age) in seconds for a size/image; 0 = no limit."""
        s = self.sizes.get(size or "", {}) if size else {}
        i = self.images.get(image or "", {}) if image else {}
        idle = _combine(s.get("cull_idle_timeout"), i.get("cull_idle_timeout"))
        age = _combine(s.get("cull_max_age"), i.get("cull_max_age"))
        return (self.timeout if idle is None else idle, self.max_age if age is None else age)

    def gpus(self, size: str | None) -> int:
        return int(self.sizes.get(size or "", {}).get("gpu", 0) or 0) if size else 0

    @property
    def shortest_timeout(self) -> int:
        """Smallest positive idle limit anywhere (used to pick a sensible --cull-every)."""
        vals = [self.timeout] + [
            t.get("cull_idle_timeout") for t in (*self.sizes.values(), *self.images.values())
        ]
        vals = [v for v in vals if v]
        return min(vals) if vals else 0


def labels_by_server(pods: Iterable[Mapping]) -> dict[tuple[str, str], dict]:
    """{(username, servername): pod labels} of single-user pods (plain JSON, as listed)."""
    out = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        ann = meta.get("annotations") or {}
        user = ann.get("hub.jupyter.org/username")
        if user:
            out[(user, ann.get("hub.jupyter.org/servername", ""))] = dict(meta.get("labels") or {})
    return out


def home_claim_names(claims: Iterable[Mapping], username: str) -> list[str]:
    """Names of the spawner's home claims of ``username`` among claims listed by its label
    ``ptjaas.io/user`` (the annotation ``ptjaas.io/username``, where present, is the exact name)."""
    names = []
    for pvc in claims:
        meta = pvc.get("metadata") or {}
        if (meta.get("annotations") or {}).get("ptjaas.io/username", username) == username:
            names.append(meta["name"])
    return sorted(names)


def choice_from_labels(policy: CullPolicy, labels: Mapping[str, str]) -> dict:
    """user_options-style ``{size, image, version}`` (under ``policy.option_keys`` names) from
    a single-user pod's ``ptjaas.io/size|image|version`` labels, mapped back to catalog keys
    (labels hold label-safe values). Unknown values are dropped, except the version."""
    out = {}
    for what, table in (("size", policy.sizes), ("image", policy.images)):
        value = labels.get(f"ptjaas.io/{what}")
        if value:
            for key in table:
                if label_value(key) == value:
                    out[policy.option_keys[what]] = key
                    break
    if labels.get("ptjaas.io/version"):
        out[policy.option_keys["version"]] = labels["ptjaas.io/version"]
    return out


def needs_choice(policy: CullPolicy, server: Mapping) -> bool:
    """True when a per-size policy exists but the server's user_options do not name a size."""
    return bool(policy.sizes or policy.images) and policy.identify(server)[0] is None


@dataclass(frozen=True)
class Verdict:
    """The decision for one server."""

    user: str
    server_name: str  # "" = the default server
    cull: bool
    reason: str  # human-readable, for logs
    kind: str  # "idle", "max-age", "gpu-idle" (culler.gpuidle), or "keep"/"skip"
    size: str | None = None
    image: str | None = None
    version: str | None = None
    inactive: float | None = None  # seconds
    age: float | None = None  # seconds
    started: str | None = None
    last_activity: str | None = None

    @property
    def log_name(self) -> str:
        return f"{self.user}/{self.server_name}" if self.server_name else self.user


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "unknown"
    s = int(s)
    return f"{s // 3600:02}:{s % 3600 // 60:02}:{s % 60:02}"


def decide_server(policy: CullPolicy, user: str, name: str, server: Mapping, now: datetime) -> Verdict:
    """Decide whether to cull one server (a hub API server model)."""
    size, image, version = policy.identify(server)
    started = parse_time(server.get("started"))
    last = parse_time(server.get("last_activity"))
    age = (now - started).total_seconds() if started else None
    inactive = (now - last).total_seconds() if last else age
    base = dict(
        user=user, server_name=name, size=size, image=image, version=version, inactive=inactive,
        age=age, started=server.get("started"), last_activity=server.get("last_activity"),
    )
    if server.get("pending"):
        return Verdict(cull=False, kind="skip", reason=f"pending {server['pending']}", **base)
    if not server.get("ready", bool(server.get("url"))):
        return Verdict(cull=False, kind="skip", reason="not ready", **base)
    if name and not policy.cull_named_servers or not name and not policy.cull_default_servers:
        return Verdict(cull=False, kind="skip", reason="culling of this server kind is off", **base)
    idle_limit, age_limit = policy.limits(size, image)
    what = f"size {size or 'unknown'}" + (f", image {image}" if image else "")
    if idle_limit and inactive is not None and inactive >= idle_limit:
        return Verdict(
            cull=True, kind="idle",
            reason=f"inactive for {fmt_seconds(inactive)} >= {fmt_seconds(idle_limit)} ({what})", **base,
        )
    if age_limit and age is not None and age >= age_limit:
        return Verdict(
            cull=True, kind="max-age",
            reason=f"age {fmt_seconds(age)} >= max age {fmt_seconds(age_limit)} ({what})", **base,
        )
    return Verdict(
        cull=False, kind="keep",
        reason=f"inactive for {fmt_seconds(inactive)}, age {fmt_seconds(age)} ({what})", **base,
    )


def decide_user(
    policy: CullPolicy, user: Mapping, servers_left: int, now: datetime
) -> tuple[bool, str]:
    """Whether to delete a *user* (only with cull_users; never with servers still running)."""
    if not policy.cull_users:
        return False, "cull-users is off"
    if servers_left:
        return False, f"{servers_left} server(s) still running"
    if user.get("admin") and not policy.cull_admin_users:
        return False, "admin user"
    created = parse_time(user.get("created"))
    last = parse_time(user.get("last_activity"))
    age = (now - created).total_seconds() if created else None
    inactive = (now - last).total_seconds() if last else age
    if policy.timeout and inactive is not None and inactive >= policy.timeout:
        return True, f"inactive for {fmt_seconds(inactive)}"
    if policy.max_age and age is not None and age >= policy.max_age:
        return True, f"age {fmt_seconds(age)}"
    return False, f"inactive for {fmt_seconds(inactive)}"


def server_items(user: Mapping) -> Iterable[tuple[str, Mapping]]:
    """(name, server model) pairs of a user model (JupyterHub >= 0.9 'servers' dict)."""
    servers = user.get("servers")
    if servers is None:
        return []
    return servers.items()


def usage_entry(policy: CullPolicy, event: Mapping, now: datetime) -> dict:
    """A usage record for a culled server (from a hook event): who, what, when, GPU-hours.

    ``stop`` is the event's stop time (else ``now``); GPU-hours = hours x the size's ``gpu``.
    """
    start = parse_time(event.get("started"))
    stop = parse_time(event.get("stop")) or now
    hours = (stop - start).total_seconds() / 3600 if start else None
    gpus = policy.gpus(event.get("size"))
    return {
        "user": event.get("user"),
        "server": event.get("server"),
        "size": event.get("size"),
        "image": event.get("image"),
        "version": event.get("version"),
        "start": event.get("started"),
        "stop": isoformat(stop),
        "hours": None if hours is None else round(hours, 6),
        "gpus": gpus,
        "gpu_hours": None if hours is None else round(hours * gpus, 6),
        "reason": event.get("kind"),
    }


def isoformat(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def kernel_culling_args(
    size: Mapping | None, image: Mapping | None = None, *, cull_connected: bool = True
) -> list[str]:
    """Extra single-user server arguments that shut idle kernels down early for a size.

    ``size`` / ``image`` are catalog entries (dicts). When either sets ``kernel_idle_timeout``
    (positive seconds; the stricter wins), jupyter-server's own kernel culling is switched on:
    kernels idle that long are shut down (``cull_connected``: even with a browser tab open,
    which is what hands GPU memory back), busy kernels are never culled. Returns [] otherwise.
    """
    timeout = _combine(
        _check_seconds((size or {}).get("kernel_idle_timeout"), "size['kernel_idle_timeout']"),
        _check_seconds((image or {}).get("kernel_idle_timeout"), "image['kernel_idle_timeout']"),
    )
    if not timeout:
        return []
    interval = max(1, min(300, math.ceil(timeout / 4)))
    return [
        f"--MappingKernelManager.cull_idle_timeout={timeout}",
        f"--MappingKernelManager.cull_interval={interval}",
        f"--MappingKernelManager.cull_connected={cull_connected}",
        "--MappingKernelManager.cull_busy=False",
    ]


def snapshots_to_prune(snapshots: Iterable[Mapping], keep: int) -> list[str]:
    """Names of the snapshot objects beyond the newest ``keep`` (by creationTimestamp, name)."""
    if keep < 0:
        raise PolicyError(f"snapshot keep must be >= 0, not {keep}")

    def key(obj):
        meta = obj.get("metadata", {})
        return (meta.get("creationTimestamp") or "", meta.get("name") or "")

    ordered = sorted(snapshots, key=key, reverse=True)
    return [o["metadata"]["name"] for o in ordered[keep:]]
