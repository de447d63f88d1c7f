"""``QuotaMixin``: enforce ``ptjaas_spawner.quota.budget`` budgets in the spawner.

How it holds under races: the hub is one process with one event loop. A server's share is
decided and charged in one synchronous step (no ``await`` in between), so 20 simultaneous
starts for the last 4 GPUs see each other's charges and exactly 4 pass. This happens on the
final pod manifest (after every ``get_pod_manifest`` layer and ``modify_pod_hook``), just
before the pod is created. The charge is released when the start fails (any exception,
including the API server's ``403 exceeded quota``) and when the server stops. After a hub
restart the ledger is rebuilt once, before the first decision, from the pods in the cluster
(label ``component=singleuser-server``; owner from the ``hub.jupyter.org/username`` /
``servername`` annotations, resources from the pod spec, pool from ``ptjaas.io/quota-pool``).
"""

from __future__ import annotations

import asyncio
import re

from tornado import web
from traitlets import Bool, Dict, TraitError, observe, validate
from traitlets.config import LoggingConfigurable

from .budget import Charge, Ledger, QuotaConfigError, QuotaPolicy, parse_budget, availability, decide, pod_amount, pod_limits, size_amount, summary
from .metrics import count_refusal, update_metrics

POOL_ANNOTATION = "ptjaas.io/quota-pool"
SIZE_LABEL = "ptjaas.io/size"
IMAGE_LABEL = "ptjaas.io/image"
VERSION_LABEL = "ptjaas.io/version"

# process-wide (the hub): one ledger, rebuilt once per namespace
LEDGER = Ledger()
_REBUILDS: dict = {}


class QuotaExceeded(web.HTTPError):
    """A start refused by a budget; ``jupyterhub_message`` is what the user reads."""

    def __init__(self, message: str, reason: str = "quota"):
        super().__init__(403, message.replace("%", "%%"))
        self.jupyterhub_message = message
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


def _rebuilt(namespace) -> bool:
    fut = _REBUILDS.get(namespace)
    return fut is not None and fut.done() and not fut.cancelled() and fut.exception() is None


def _reason(decision) -> str:
    """Metric label of a refusal: a team pool or the user's own budget."""
    return "pool" if decision.message.startswith("Your team") else "user"


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
        help="""Rebuild the usage ledger from the pods in the cluster when the hub (re)starts
        (as it polls the running servers, or at the latest before the first quota decision):
        usage survives hub restarts. Turn off only when the hub cannot list pods (usage then
        counts only servers started since the hub started).""",
    )

    @validate("quota_default", "quota_users", "quota_groups")
    def _validate_quota(self, proposal):
        name, value = proposal["trait"].name, proposal["value"]
        where = f"c.PtjaasSpawner.{name}"
        try:
            if name == "quota_default":
                parse_budget(value, where)
            else:
                for key, spec in value.items():
                    parse_budget(spec, f"{where}[{key!r}]", allow_per_user=name == "quota_groups")
        except QuotaConfigError as e:
            raise TraitError(str(e)) from None
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

    @property
    def quota_ledger(self) -> Ledger:
        return LEDGER

    def _quota_user_groups(self) -> list:
        return sorted(g.name for g in (getattr(self.user, "groups", None) or []))

    # ---- rebuild ----
    async def quota_ready(self):
        """Rebuild the ledger from the cluster once per process and namespace (shared by all
        concurrent callers); a failure is retried by the next caller."""
        if not self.quota_rebuild_from_cluster:
            return
        ns = self.namespace
        fut = _REBUILDS.get(ns)
        if fut is None:
            fut = _REBUILDS[ns] = asyncio.ensure_future(self._quota_rebuild(ns))
        try:
            await asyncio.shield(fut)
        except Exception:
            if _REBUILDS.get(ns) is fut:
                del _REBUILDS[ns]
            raise

    async def _quota_rebuild(self, namespace):
        pods = await self.api.list_namespaced_pod(namespace, label_selector="component=singleuser-server")
        found = 0
        for pod in pods.items:
            d = self.api.api_client.sanitize_for_serialization(pod)
            meta = d.get("metadata") or {}
            ann = meta.get("annotations") or {}
            user = ann.get("hub.jupyter.org/username")
            if not user or meta.get("deletionTimestamp"):
                continue
            if (d.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            server = ann.get("hub.jupyter.org/servername", "")
            if LEDGER.get(user, server):
                continue
            LEDGER.add(self._charge_from_pod(user, server, d, ann.get(POOL_ANNOTATION) or None))
            found += 1
        self.log.info("Quota ledger rebuilt from %d server pod(s) in namespace %s", found, namespace)
        update_metrics(LEDGER)

    @staticmethod
    def _charge_from_pod(user, server, pod: dict, pool) -> Charge:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        return Charge(
            user, server, pod_amount(pod), pool,
            labels.get(SIZE_LABEL, ""), labels.get(IMAGE_LABEL, ""), labels.get(VERSION_LABEL, ""),
            *pod_limits(pod),
        )

    # ---- decisions ----
    async def size_availability(self, sizes: dict | None = None) -> dict:
        """``{size_key: (allowed, note)}`` for the spawn form ("2 of 4 vision GPUs free").
        Advisory (the spawner also refuses a size it says no to, before creating anything);
        the binding decision is made atomically at pod creation."""
        await self.quota_ready()
        sizes = sizes if sizes is not None else getattr(self, "sizes", {}) or {}
        amounts = {}
        for key, size in sizes.items():
            try:
                amounts[key] = size_amount(size)
            except (ValueError, TypeError):
                continue
        groups = self._quota_user_groups()
        result = availability(self.quota_policy, LEDGER, self.user.name, groups, amounts, self.name)
        self._quota_refusal_reasons = {
            key: _reason(decide(self.quota_policy, LEDGER, self.user.name, groups, amounts[key], self.name))
            for key, (ok, _) in result.items() if not ok
        }
        return result

    async def quota_summary(self) -> str:
        """The user's quota in one line for the top of the form ('' without quotas)."""
        if not self.quota_policy.enabled:
            return ""
        await self.quota_ready()
        return summary(self.quota_policy, LEDGER, self.user.name, self._quota_user_groups(), self.name)

    def quota_reserve(self, pod: dict) -> Charge:
        """Decide and charge in one synchronous step. Raises QuotaExceeded."""
        user, server = self.user.name, self.name
        groups = self._quota_user_groups()
        amount = pod_amount(pod)
        d = decide(self.quota_policy, LEDGER, user, groups, amount, server)
        if not d.allowed:
            reason = _reason(d)
            count_refusal(reason)
            self.log.warning("Quota refused %s/%s: %s", user, server, d.message)
            raise QuotaExceeded(d.message, reason)
        charge = self._charge_from_pod(user, server, pod, d.pool)
        LEDGER.add(charge)
        update_metrics(LEDGER)
        return charge

    def quota_release(self):
        if LEDGER.remove(self.user.name, self.name) is not None:
            update_metrics(LEDGER)

    # ---- KubeSpawner hooks ----
    def start(self):
        inner = super().start()
        return asyncio.ensure_future(self._quota_guarded_start(inner))

    async def _quota_guarded_start(self, inner):
        self._quota_in_start = True
        try:
            return await inner
        except BaseException as e:
            self.quota_release()
            if not isinstance(e, QuotaExceeded):
                # refused earlier on the form's advisory verdict (by the spawner's choice check)
                size = (self.user_options or {}).get("size")
                reason = (getattr(self, "_quota_refusal_reasons", None) or {}).get(size)
                if reason and isinstance(e, web.HTTPError) and e.status_code == 400:
                    count_refusal(reason)
            raise
        finally:
            self._quota_in_start = False

    async def _make_create_pod_request(self, pod, request_timeout):
        """Reserve (synchronously, idempotent across KubeSpawner's retries) on the final pod
        manifest, then create the pod; turn the API server's quota 403 into a readable refusal."""
        from kubernetes_asyncio.client.rest import ApiException

        await self.quota_ready()
        charge = self.quota_reserve(self.api.api_client.sanitize_for_serialization(pod))
        if charge.pool:
            pod.metadata.annotations = dict(pod.metadata.annotations or {}, **{POOL_ANNOTATION: charge.pool})
        try:
            return await super()._make_create_pod_request(pod, request_timeout)
        except ApiException as e:
            body = e.body.decode("utf8", "replace") if isinstance(e.body, bytes) else str(e.body or "")
            if e.status == 403 and "exceeded quota" in body:
                count_refusal("resourcequota")
                raise QuotaExceeded(resourcequota_message(body, self.namespace), "resourcequota") from None
            raise

    async def poll(self):
        # the hub polls every running server as it starts: rebuild the ledger then, so the
        # admin page and the metrics are right from the start, not only after the first spawn
        if self.quota_rebuild_from_cluster and not _rebuilt(self.namespace):
            try:
                await self.quota_ready()
            except Exception as e:
                self.log.warning("Quota ledger rebuild failed (retried at the next start): %s", e)
        return await super().poll()

    async def stop(self, now=False):
        try:
            return await super().stop(now=now)
        finally:
            # KubeSpawner itself calls stop() inside start to replace a leftover pod: the share
            # of the server being started stays charged then
            if not getattr(self, "_quota_in_start", False):
                self.quota_release()
