"""``QuotaMixin``: enforce ``ptjaas_spawner.quota.budget`` budgets in the spawner.

How it holds under races: the hub is one process with one event loop. A server's share is
decided and charged in one synchronous step (no ``await`` in between), so 20 simultaneous
starts for the last 4 GPUs see each other's charges and exactly 4 pass. This happens on the
final pod manifest (after every ``get_pod_manifest`` layer and ``modify_pod_hook``), just
before the pod is created (``quota_charge_pod``, called by the spawner's start). The charge is
released when the start fails (any exception, including the API server's ``403 exceeded
quota``) and when the server stops: ``start.py`` calls ``quota_release``.

After a hub restart the ledger is rebuilt once, before the first decision, from the server pods
KubeSpawner's pod reflector already holds (its one list and watch; the rebuild sends no request
of its own): owner from the ``hub.jupyter.org/username`` / ``servername`` annotations, resources
from the pod spec, pool from ``ptjaas.io/quota-pool``. It works through the pods in slices of
about ``reconcile.REBUILD_SLICE`` seconds, yielding to the event loop in between, and every decision
waits for it to finish. With no budget configured nothing is kept, rebuilt or decided. The
ledger held against the cluster's pods (the rebuild, and the reconcile after an API server
outage) is ``reconcile``.
"""

from __future__ import annotations

import asyncio
import functools
import re

from traitlets import Bool, Dict, TraitError, observe, validate
from traitlets.config import Config, LoggingConfigurable

from . import reconcile
from .budget import (
    Ledger, QuotaConfigError, QuotaPolicy, decide, decide_sizes, form_verdict, parse_budget, pod_amount, size_amount,
    summary,
)
from ..errors import Refusal
from .ledger import Charge
from .metrics import charge_added, charge_removed, count_refusal
from ..remembered import Remembered, settings_key
from .reconcile import POOL_ANNOTATION, charge_from_pod, rebuild_ledger

# process-wide (the hub): one ledger (the gauges follow it), rebuilt once per pod reflector
LEDGER = Ledger(on_add=charge_added, on_remove=charge_removed)
_REBUILDS: dict = {}
# (setting name, value's pickle) that passed the check: each new spawner sets the same three
_CHECKED = Remembered(64)


class QuotaExceeded(Refusal):
    """A start refused by a budget; ``jupyterhub_message`` is what the user reads."""

    def __init__(self, message: str, reason: str = "quota"):
        super().__init__(403, message)
        self.quota_reason = reason


_RQ = re.compile(r"exceeded quota: ([^,]+), requested: (.+?), used: (.+?), limited: (.+)$")


def resourcequota_message(body: str, namespace: str) -> str:
    """Readable text for an API server ``403 ... exceeded quota`` body (JSON Status or text)."""
    import json

    text = body
    try:
        text = json.loads(body).get("message", body)
    except (ValueError, AttributeError):
        pass
    m = _RQ.search(text or "")
    detail = (
        f"quota {m.group(1)!r} allows {m.group(4)}, {m.group(3)} is in use and this server asks for {m.group(2)}"
        if m
        else (text or "exceeded quota")
    )
    return (
        f"The cluster refused to start your server: namespace {namespace!r} is at its resource "
        f"quota ({detail}). The server was not created. Stop another server of your group, or choose a "
        f"smaller size, then try again."
    )


def _rebuilt(key) -> bool:
    fut = _REBUILDS.get(key)
    return fut is not None and fut.done() and not fut.cancelled() and fut.exception() is None


@functools.lru_cache(maxsize=None)
def _quota_settings_class(spawner_class):
    """A QuotaMixin that reads its settings from ``spawner_class``'s config sections."""
    sections = spawner_class.section_names()
    return type(f"{spawner_class.__name__}QuotaSettings", (QuotaMixin,),
                {"section_names": classmethod(lambda cls: sections)})


class QuotaMixin(LoggingConfigurable):
    """Mix into a KubeSpawner subclass (before KubeSpawner in the bases)."""

    quota_default = Dict(
        config=True,
        help="""Budget of every user, counted over all their starting and running servers
        (named servers included): ``{"gpus": int, "cpu": cores (guaranteed), "memory": bytes
        or "16Gi" (guaranteed), "servers": int}``. A missing key is unlimited. Example:
        ``{"servers": 2, "gpus": 1}``.""",
    )

    quota_users = Dict(
        config=True,
        help="""Per-user budgets replacing ``quota_default`` resource by resource:
        ``{"alice": {"gpus": 4}}``.""",
    )

    quota_groups = Dict(
        config=True,
        help="""Group budgets, keyed by JupyterHub group (synced from the identity provider):
        ``{"vision": {"gpus": 4, "cpu": 32, "memory": "256Gi", "servers": 20,
        "per_user": {"gpus": 2}}}``. The top-level keys are a pool shared by all members (the
        team may hold 4 GPUs at once, whoever uses them); each server of a member is charged to
        one of the member's pools, the one it fits in. ``per_user`` raises each member's own
        budget above ``quota_default`` (a user in several groups gets the most generous value
        per resource). Missing keys are unlimited.""",
    )

    quota_rebuild_from_cluster = Bool(
        True,
        config=True,
        help="""Rebuild the usage ledger from the server pods in the cluster when the hub
        (re)starts (as it polls the running servers, or at the latest before the first quota
        decision), so usage survives hub restarts. It reads the pods KubeSpawner's pod reflector
        already holds and sends no request of its own. Turned off, usage counts only the servers
        started since the hub started. Nothing is rebuilt when no budget is configured.""",
    )

    @validate("quota_default", "quota_users", "quota_groups")
    def _validate_quota(self, proposal):
        name, value = proposal["trait"].name, proposal["value"]
        checked = settings_key(name, value)
        if _CHECKED.get(checked):
            return value
        where = f"c.PtjaasSpawner.{name}"
        try:
            if name == "quota_default":
                parse_budget(value, where)
            else:
                for key, spec in value.items():
                    parse_budget(spec, f"{where}[{key!r}]", allow_per_user=name == "quota_groups")
        except QuotaConfigError as e:
            raise TraitError(str(e)) from None
        _CHECKED.add(checked)
        return value

    @observe("quota_default", "quota_users", "quota_groups")
    def _quota_config_changed(self, change):
        self._quota_policy = None

    @property
    def quota_policy(self) -> QuotaPolicy:
        pol = getattr(self, "_quota_policy", None)
        if pol is None:
            pol = self._quota_policy = QuotaPolicy.from_config(
                self.quota_default, self.quota_users, self.quota_groups,
                prefix="c.PtjaasSpawner",
            )
        return pol

    @classmethod
    def quota_policy_for(cls, config) -> QuotaPolicy:
        """The policy every spawner of this class has under the hub's ``config``, without making
        a spawner (the usage pages): traitlets resolves the quota settings from this class's
        config sections (``c.PtjaasSpawner``, ``c.KubeSpawner``, ...) as it does for a spawner."""
        probe = _quota_settings_class(cls)
        # only the quota settings: the probe class would warn of every other key of the sections
        # ("Config option `image` not recognized by ...QuotaSettings") at each usage page load
        names = set(QuotaMixin.class_own_traits(config=True))
        quota_config = Config()
        for section in probe.section_names():
            if section in config:
                for name, value in config[section].items():
                    if name in names:
                        quota_config[section][name] = value
        return probe(config=quota_config).quota_policy

    def _quota_user_groups(self) -> list:
        return sorted(g.name for g in (getattr(self.user, "groups", None) or []))

    # ---- rebuild ----
    def _quota_rebuild_key(self):
        # one pod reflector per namespace, or one for all namespaces with user namespaces
        # (KubeSpawner._get_reflector_key, kubespawner 7.1)
        return None if self.enable_user_namespaces else self.namespace

    async def quota_ready(self):
        """Rebuild the ledger from the cluster once per process and pod reflector (shared by all
        concurrent callers); a failure is retried by the next caller. Nothing without quotas."""
        if not (self.quota_rebuild_from_cluster and self.quota_policy.enabled):
            return
        key = self._quota_rebuild_key()
        await self._rebuild_once(key, self._quota_rebuild)

    @staticmethod
    async def _rebuild_once(key, rebuild):
        """Run ``rebuild(key)`` once per process for ``key``, shared by all concurrent callers;
        a failure is forgotten, so the next caller tries again."""
        fut = _REBUILDS.get(key)
        if fut is None:
            fut = _REBUILDS[key] = asyncio.ensure_future(rebuild(key))
        try:
            await asyncio.shield(fut)
        except Exception:
            if _REBUILDS.get(key) is fut:
                del _REBUILDS[key]
            raise

    async def _pod_reflector_of(self, key):
        """KubeSpawner's pod reflector for ``key`` (a namespace, or None for all namespaces),
        shared by every spawner there; it makes a request only when it is not running yet."""
        if key == self._quota_rebuild_key():
            # KubeSpawner's own poll() and start() wait for the pod reflector this way
            # (kubespawner 7.1; no public hook)
            return await self._start_watching_pods()
        # another namespace than this spawner's (team namespaces): the reflector that
        # KubeSpawner 7.1's _start_reflector makes for a spawner there, under the same key
        from kubespawner.spawner import PodReflector

        reflectors = type(self).reflectors
        reflector = reflectors.get(("pods", key))
        if reflector is None:
            reflector = reflectors[("pods", key)] = PodReflector(
                parent=self, namespace=key, labels={"component": self.component_label}
            )
            await reflector.start()
        await reflector.first_load_future
        return reflector

    async def _quota_rebuild(self, key):
        reflector = await self._pod_reflector_of(key)
        reflector.first_load_future.result()  # a reflector whose first list failed holds nothing
        found = await rebuild_ledger(LEDGER, lambda: reflector.pods, self.log)
        where = "all namespaces" if key is None else f"namespace {key}"
        self.log.info("Quota ledger rebuilt from %d server pod(s) in %s", found, where)

    async def quota_reconcile(self):
        """Usage re-derived from this namespace's pods once its pod watch was restarted (after an
        API server outage): ``reconcile.reconcile_namespace``. Nothing without quotas."""
        if self.quota_policy.enabled:
            await reconcile.reconcile_namespace(LEDGER, self.namespace, self.pod_reflector, self.log)

    def quota_start_began(self):
        reconcile.start_began(self.user.name, self.name)

    def quota_start_ended(self):
        reconcile.start_ended(self.user.name, self.name)

    # ---- decisions ----
    async def size_decisions(self, sizes: dict) -> dict:
        """``{size_key: Decision}`` for this user's next server, for the spawn form ("2 of 4
        vision GPUs free", ``size_availability``) and the start's choice check. Advisory (the
        spawner also refuses a size it says no to, before creating anything); the binding
        decision is made atomically at pod creation. Empty without quotas."""
        if not self.quota_policy.enabled:
            return {}
        await self.quota_ready()
        amounts = {}
        for key, size in sizes.items():
            try:
                amounts[key] = size_amount(size)
            except (ValueError, TypeError):
                continue
        return decide_sizes(
            self.quota_policy, LEDGER, self.user.name, self._quota_user_groups(), amounts, self.name
        )

    async def size_availability(self, sizes: dict | None = None) -> dict:
        """``{size_key: (allowed, note)}``: ``size_decisions`` as the form shows them."""
        sizes = sizes if sizes is not None else getattr(self, "sizes", {}) or {}
        return {key: form_verdict(d) for key, d in (await self.size_decisions(sizes)).items()}

    @staticmethod
    def count_choice_refusal(decisions: dict, size) -> None:
        """A start refused because the size asked for was refused by ``decisions``: count it
        by the quota's reason (a refusal at pod creation is counted by ``quota_reserve``)."""
        d = decisions.get(size) if isinstance(size, str) else None
        if d is not None and not d.allowed:
            count_refusal(d.kind)

    async def quota_summary(self) -> str:
        """The user's quota in one line for the top of the form ('' without quotas)."""
        if not self.quota_policy.enabled:
            return ""
        await self.quota_ready()
        return summary(self.quota_policy, LEDGER, self.user.name, self._quota_user_groups(), self.name)

    def quota_reserve(self, pod: dict) -> Charge | None:
        """Decide and charge in one synchronous step. Raises QuotaExceeded. None without quotas."""
        if not self.quota_policy.enabled:
            return None
        user, server = self.user.name, self.name
        groups = self._quota_user_groups()
        amount = pod_amount(pod)
        d = decide(self.quota_policy, LEDGER, user, groups, amount, server)
        if not d.allowed:
            count_refusal(d.kind)
            self.log.warning("Quota refused %s/%s: %s", user, server, d.message)
            raise QuotaExceeded(d.message, d.kind)
        charge = charge_from_pod(user, server, pod, d.pool, self.namespace)
        LEDGER.add(charge)
        return charge

    def quota_release(self):
        LEDGER.remove(self.user.name, self.name)

    # ---- the pod create (called by the spawner's start) and the stop ----
    async def quota_charge_pod(self, pod) -> Charge | None:
        """Reserve (synchronously, idempotent across KubeSpawner's retries) on the final pod
        manifest (a client model), before the pod create; annotate the pod with its pool.
        Raises QuotaExceeded. None without quotas."""
        if not self.quota_policy.enabled:
            return None
        await self.quota_ready()
        charge = self.quota_reserve(self._charged_fields(pod))
        if charge.pool:
            pod.metadata.annotations = dict(pod.metadata.annotations or {}, **{POOL_ANNOTATION: charge.pool})
        return charge

    def _charged_fields(self, pod) -> dict:
        """The fields of a pod manifest (a client model) that ``quota_reserve`` reads (its labels,
        namespace and containers' resources) in API JSON form. Serialising the whole manifest
        (env, volumes, affinity, ...) cost about 3 ms per start that KubeSpawner's hub does not
        pay; KubeSpawner serialises it once more for the create anyway."""
        if isinstance(pod, dict):
            return pod
        sanitize = self.api.api_client.sanitize_for_serialization
        meta, spec = pod.metadata, pod.spec
        containers = [{"resources": sanitize(c.resources) or {}} for c in (spec.containers or ()) if c is not None]
        return {"metadata": {"labels": dict(meta.labels or {}), "namespace": meta.namespace},
                "spec": {"containers": containers}}

    def quota_refusal_of(self, error):
        """The API server's ``403 exceeded quota`` on a pod create as a readable QuotaExceeded
        (counted); None for any other error."""
        from kubernetes_asyncio.client.rest import ApiException

        if not isinstance(error, ApiException) or error.status != 403:
            return None
        body = error.body.decode("utf8", "replace") if isinstance(error.body, bytes) else str(error.body or "")
        if "exceeded quota" not in body:
            return None
        count_refusal("resourcequota")
        return QuotaExceeded(resourcequota_message(body, self.namespace), "resourcequota")

    async def quota_rebuild_once(self):
        """At a poll (``start.poll_server``): the hub polls every running server as it starts, so
        the ledger is rebuilt then, and the admin page and the metrics are right from the start,
        not only after the first spawn."""
        if (self.quota_rebuild_from_cluster and self.quota_policy.enabled
                and not _rebuilt(self._quota_rebuild_key())):
            try:
                await self.quota_ready()
            except Exception as e:
                self.log.warning("Quota ledger rebuild failed (retried at the next start): %s", e)
