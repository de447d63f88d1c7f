"""``AccountingMixin``: every server run recorded once (``store``), time budgets enforced
(``quota.timebudget``), GPU- and CPU-seconds counted for Prometheus (``accounting.metrics``).

Hook points in the spawner (the only lines elsewhere):

- ``accounting_check_start(plan)`` after the start's plan, before the pod: refuses a start
  that would begin over a time budget (``QuotaExceeded``, recorded as ``refused-quota``);
- ``accounting_started(plan)`` after a successful start: the run begins (id: the pod's uid);
- ``stop`` and ``poll`` (overridden here): the run ends when the server is stopped, whoever
  stops it, or when a poll finds it gone (a lost pod; after a hub restart, JupyterHub polls every
  server it had running). A poll finding a server running records a run it does not know yet.

A background check (every ``accounting_check_interval`` seconds, one per hub process) warns at
90 % of a budget (hub log, audit ``server-budget-warning``, the spawn form and
``/hub/ptjaas/usage/me``) and stops the servers that count against a budget at 100 % plus
``quota_time_grace`` (audit ``server-budget-stop``).
"""

from __future__ import annotations

import asyncio
import contextvars

from traitlets import Any, Float, Unicode
from traitlets.config import LoggingConfigurable

from ..quota.budget import size_amount
from ..quota.mixin import QuotaExceeded
from ..quota.timebudget import WARN_AT, TimePolicy, budget_line, check_start, counts, over_budget, standings
from . import metrics
from .store import store_for

_LIVE: dict = {}  # (user, server) -> spawner with a running run, for the background check
_WARNED: dict = {}  # user -> {(run id, scope, resource): warning text}
_CHECK: dict = {}  # "task" -> the background check's task


class AccountingMixin(LoggingConfigurable):
    accounting_file = Unicode(
        "ptjaas-accounting.jsonl",
        config=True,
        help="""Append-only JSON-lines record of every server run (user, team, image, version,
        size, GPUs, guaranteed CPU and memory, start and end), the source of GPU-hour and
        CPU-hour budgets, the usage charts and the usage CSV. A relative path is relative to
        the hub's working directory (z2jh: /srv/jupyterhub, beside jupyterhub.sqlite on the
        hub's database volume), so it survives hub restarts. Read once when the hub starts.""",
    )
    accounting_clock = Any(
        None,
        allow_none=True,
        config=True,
        help="""A callable returning the time in epoch seconds for the accounting (None: the
        system clock). For tests and simulations only.""",
    )
    accounting_check_interval = Float(
        60,
        config=True,
        help="""Seconds between checks of running servers against their GPU-hour and CPU-hour
        budgets (warning at 90 %, stop at 100 % plus ``quota_time_grace``). 0 turns the
        check off (starts are still refused over budget).""",
    )
    quota_time_grace = Float(
        600,
        config=True,
        help="""Seconds a running server may go on past 100 % of a GPU-hour or CPU-hour budget
        (``gpu_hours`` / ``cpu_hours`` in ``quota_default``, ``quota_groups``, ``quota_users``)
        before it is stopped; its user is warned at 90 %.""",
    )

    # ---- policy and record ----
    @property
    def time_policy(self) -> TimePolicy:
        return TimePolicy.from_config(getattr(self, "quota_default", {}), getattr(self, "quota_users", {}),
                                      getattr(self, "quota_groups", {}))

    @property
    def accounting(self):
        return store_for(self.accounting_file, self.accounting_clock, self.log)

    def _accounting_groups(self) -> list:
        return sorted(g.name for g in (getattr(self.user, "groups", None) or []))

    def _accounting_team(self) -> str:
        team_options = self.team_user_options() if hasattr(self, "team_user_options") else {}
        return self.time_policy.team_of(self._accounting_groups(), str(team_options.get("team") or ""))

    def time_budget_line(self) -> str:
        """'vision: 142 of 200 GPU-hours left this month; you: ...' for the spawn form."""
        policy = self.time_policy
        if not policy.enabled:
            return ""
        store, team = self.accounting, self._accounting_team()
        line = budget_line(policy, store.runs_of(self.user.name, team), self.user.name, self._accounting_groups(),
                           team, store.now())
        warnings = list(_WARNED.get(self.user.name, {}).values())
        return "; ".join([line] + warnings[:2]) if warnings else line

    # ---- hooks ----
    def accounting_check_start(self, plan) -> None:
        """Refuse (QuotaExceeded) a start that would begin over a time budget."""
        policy = self.time_policy
        choice = getattr(plan, "choice", None)
        if not policy.enabled or choice is None:
            return
        amount = size_amount(self.effective_catalog()[1][choice.size])
        store, team = self.accounting, self._accounting_team()
        message = check_start(policy, store.runs_of(self.user.name, team), self.user.name, self._accounting_groups(),
                              team, amount.gpus, amount.cpu, store.now())
        if message:
            self.log.warning("Time budget refused %s: %s", self._log_name, message)
            raise QuotaExceeded(message, "time")

    def accounting_started(self, plan=None) -> None:
        """The run of this server begins (never raises: accounting must not fail a start)."""
        try:
            pod = self._accounting_pod()
            if not pod:
                return
            self._accounting_record(pod, start=None)
        except Exception as e:  # noqa: BLE001
            self.log.error("Accounting: the start of %s was not recorded: %s", self._log_name, e)

    def _accounting_pod(self) -> dict:
        reflector = getattr(self, "pod_reflector", None)
        return (reflector.pods.get(f"{self.namespace}/{self.pod_name}") if reflector else None) or {}

    def _accounting_record(self, pod: dict, start):
        from ..quota.budget import pod_amount

        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        amount = pod_amount(pod)
        choice = getattr(self, "choice", None)
        run = self.accounting.started(
            meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}/{meta.get('creationTimestamp')}",
            user=self.user.name, server=self.name, team=self._accounting_team(),
            image=getattr(choice, "image", None) or labels.get("ptjaas.io/image", ""),
            version=getattr(choice, "version", None) or labels.get("ptjaas.io/version", ""),
            size=getattr(choice, "size", None) or labels.get("ptjaas.io/size", ""),
            gpus=amount.gpus, cpu=amount.cpu, memory=amount.memory, start=start,
        )
        if run is not None and run.end is None:
            _LIVE[(run.user, run.server)] = self
            metrics.seen(run, self.accounting.now())
            self._accounting_watch()
        return run

    def _accounting_ended(self, reason: str) -> None:
        try:
            store = self.accounting
            run = store.open_run(self.user.name, self.name)
            _LIVE.pop((self.user.name, self.name), None)
            if run is None:
                return
            store.ended(run.id, reason)
            metrics.account(run, store.now())
            warned = _WARNED.get(self.user.name, {})
            for key in [k for k in warned if k[0] == run.id]:
                del warned[key]
        except Exception as e:  # noqa: BLE001
            self.log.error("Accounting: the end of %s was not recorded: %s", self._log_name, e)

    def accounting_stopped(self) -> None:
        """The run ends: called by the stop (``start.stop_server``), not inside a start."""
        by = self.audit_requester() if hasattr(self, "audit_requester") else None
        reason = getattr(self, "_accounting_stop_reason", "") or (f"stopped by {by}" if by else "stopped")
        self._accounting_stop_reason = ""
        self._accounting_ended(reason)

    def accounting_polled(self, status) -> None:
        """After a poll outside a start (``start.poll_server``): a server found gone ends its
        run; a running server with no open run (the hub restarted) is counted from now."""
        if status is not None:
            self._accounting_ended("gone")  # its pod is gone: lost, or ended while the hub was down
        elif self.accounting.open_run(self.user.name, self.name) is None or (self.user.name, self.name) not in _LIVE:
            try:
                pod = self._accounting_pod()
                if pod:
                    self._accounting_record(pod, start=None)  # running and unknown: counted from now
            except Exception as e:  # noqa: BLE001
                self.log.error("Accounting: running server %s not recorded: %s", self._log_name, e)

    # ---- the background check ----
    def _accounting_watch(self):
        task = _CHECK.get("task")
        if self.accounting_check_interval > 0 and (task is None or task.done()):
            # in a context of its own: made during a start, it must not inherit the start's
            # context (startplan.in_start() would hold for every stop it makes)
            _CHECK["task"] = asyncio.get_running_loop().create_task(
                _check_loop(self.accounting_check_interval, self.log), context=contextvars.Context())

    def _accounting_check(self, run, store, done: set):
        policy = self.time_policy
        now = store.now()
        metrics.account(run, now)
        if not policy.enabled:
            return
        runs = store.runs_of(run.user, run.team)
        for st in standings(policy, runs, run.user, self._accounting_groups(), run.team, now):
            if not counts(st, run):
                continue
            if over_budget(st, self.quota_time_grace):
                done.add((run.user, run.server))
                return asyncio.ensure_future(self._budget_stop(st))
            key = (run.id, st.scope, st.resource)
            warned = _WARNED.setdefault(run.user, {})
            if st.fraction >= WARN_AT and key not in warned:
                warned[key] = f"warning: {st.line()}, servers are stopped at the limit"
                self.log.warning("Time budget at %d%% for %s: %s", int(st.fraction * 100), self._log_name, st.line())
                if hasattr(self, "audit"):
                    self.audit("server-budget-warning", server=self.name, message=st.line(), size=run.size)

    async def _budget_stop(self, st):
        if self.pending or (self.user.name, self.name) not in _LIVE:
            return
        text = (f"stopped at the end of its budget: {st.line()} ({st.used / 3600:.2f} of "
                f"{st.limit.hours:g} used, grace {self.quota_time_grace:g} s)")
        self.log.warning("Time budget: %s %s", self._log_name, text)
        if hasattr(self, "audit"):
            self.audit("server-budget-stop", server=self.name, message=text)
        self._accounting_stop_reason = "budget"
        await self._snapshot_before_budget_stop()
        proxy = (getattr(self.user, "settings", None) or {}).get("proxy")
        if proxy is not None:
            await proxy.delete_user(self.user, self.name)
        await self.user.stop(self.name)

    async def _snapshot_before_budget_stop(self):
        """Where snapshots are on (``snapshot_classes``), the home is snapshotted first (reason
        ``budget``); a snapshot that cannot be taken is logged and does not hold up the stop."""
        if not getattr(self, "snapshot_classes", None):
            return
        from ..snapshots import ops

        try:
            await ops.take(self, by="ptjaas-budget", reason="budget")
        except Exception as e:  # noqa: BLE001
            self.log.warning("Time budget: home of %s not snapshotted before the stop: %s", self._log_name, e)


async def _check_loop(interval: float, log):
    while _LIVE:
        await asyncio.sleep(interval)  # a period, not a synchronisation
        done: set = set()
        for key, spawner in list(_LIVE.items()):
            if key in done:
                continue
            try:
                run = spawner.accounting.open_run(*key)
                if run is not None:
                    spawner._accounting_check(run, spawner.accounting, done)
            except Exception as e:  # noqa: BLE001 - one server's failure must not stop the check
                log.error("Time budget check of %s/%s failed: %s", key[0], key[1], e)

