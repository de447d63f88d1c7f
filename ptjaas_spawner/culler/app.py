"""``python -m ptjaas_spawner.culler`` / ``ptjaas-culler``: the culler as a hub-managed service.

Accepts jupyterhub-idle-culler's options with the same meaning (so z2jh's ``cull.*`` values
keep theirs), plus the per-size policy, hooks and ``--once``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys

import aiohttp
from tornado.log import LogFormatter
from traitlets import default
from traitlets.config import Application

from ..hubapi import HubAPI, HubAPIError
from ..kube import Kube, configured
from .hooks import CullAudit, Snapshotter, UsageRecorder, import_hook
from .options import POLICY_ENV, CullerOptions, option_aliases, option_flags
from .policy import CullPolicy, PolicyError, labels_by_server
from .prometheus import PrometheusGpuProbe, pod_names
from .service import cull_pass


class PtjaasCuller(CullerOptions, Application):
    name = "ptjaas-culler"
    description = __doc__

    aliases = option_aliases("PtjaasCuller", config="config_file", **{"log-level": "Application.log_level"})
    # a bare `--cull-users` (as z2jh passes it) means True; `--cull-users=false` also works
    flags = dict(option_flags("PtjaasCuller"), once=({"PtjaasCuller": {"once": True}}, "Run one culling pass and exit."))

    _log_formatter_cls = LogFormatter

    @default("log_level")
    def _log_level_default(self):
        return logging.INFO

    @default("log_format")
    def _log_format_default(self):
        return "%(color)s[%(levelname)1.1s %(asctime)s.%(msecs).03d %(name)s]%(end_color)s %(message)s"

    def build_policy(self) -> CullPolicy:
        data = {}
        if self.policy_file:
            with open(self.policy_file, encoding="utf-8") as f:
                data = json.load(f)
        elif os.environ.get(POLICY_ENV):
            data = json.loads(os.environ[POLICY_ENV])
        return CullPolicy.from_dict(
            data, timeout=self.timeout, max_age=self.max_age, cull_users=self.cull_users,
            cull_admin_users=self.cull_admin_users, cull_default_servers=self.cull_default_servers,
            cull_named_servers=self.cull_named_servers)

    def build_hooks(self, specs, policy: CullPolicy) -> list:
        hooks = []
        for spec in specs:
            if callable(spec):
                hooks.append(spec)
            elif spec == "usage":
                hooks.append(self._usage or UsageRecorder(self.usage_file, policy))
                self._usage = hooks[-1]
            elif spec == "snapshot":
                if self._snapshotter is None:
                    self._snapshotter = Snapshotter(
                        self.kube, snapshot_class=self.snapshot_class, keep=self.snapshot_keep,
                        claim_template=self.claim_name_template, log=self.log)
                hooks.append(self._snapshotter)
            else:
                hooks.append(import_hook(spec))
        return hooks

    async def _watch_hub(self, main: asyncio.Task) -> None:
        """Cancel ``main`` (exit status 3) when the hub is gone: the process that started this
        managed service has exited, or the hub API has not answered for ``hub_gone_timeout``."""
        managed = bool(os.environ.get("JUPYTERHUB_SERVICE_NAME"))
        parent = os.getppid()
        timeout = self.hub_gone_timeout
        ping_every = min(5.0, timeout / 3) if timeout else 5.0
        last_ok = asyncio.get_running_loop().time()
        next_ping = 0.0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=max(1.0, min(5.0, ping_every)))) as http:
            while True:
                now = asyncio.get_running_loop().time()
                if managed and os.getppid() != parent:
                    self._exit = (3, f"the hub process (pid {parent}) that started this culler has exited")
                    break
                if timeout and now >= next_ping:
                    next_ping = now + ping_every
                    try:
                        async with http.get(self.url.rstrip("/") + "/") as r:
                            await r.read()
                        last_ok = asyncio.get_running_loop().time()
                    except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                        if asyncio.get_running_loop().time() - last_ok >= timeout:
                            self._exit = (3, f"the hub API at {self.url} has not answered for {timeout:g}s")
                            break
                await asyncio.sleep(0.5)
        main.cancel()

    async def server_pod_labels(self) -> dict:
        """{(username, servername): pod labels} of the single-user pods (one list call)."""
        return labels_by_server(await self.kube.list_pods("component=singleuser-server"))

    async def server_pod_names(self) -> dict:
        """{(username, servername): (namespace, pod name)} of the single-user pods (one list call)."""
        if not configured():
            raise RuntimeError("no Kubernetes access to find the servers' pods")
        return pod_names(await self.kube.list_pods("component=singleuser-server"))

    async def run(self) -> int:
        policy = self.build_policy()
        self._usage = self._snapshotter = None
        self._exit = None
        self.kube = Kube(self.namespace)
        pod_labels = self.server_pod_labels if self.pod_labels and configured() else None
        before = self.build_hooks(self.before_cull_hooks, policy)
        after = self.build_hooks(self.after_cull_hooks, policy)
        if self.audit_file:
            after.insert(0, CullAudit(self.audit_file, self.log))
        gpu_probe = None
        if self.prometheus_url:
            gpu_probe = PrometheusGpuProbe(self.prometheus_url, self.gpu_idle_query, self.gpu_idle_threshold,
                                           self.server_pod_names, log=self.log, timeout=self.prometheus_timeout)
            self.log.info("GPU-idle rule: GPU servers under %g %% utilisation for their idle timeout "
                          "are idle (Prometheus at %s)", self.gpu_idle_threshold, self.prometheus_url)
        shortest = policy.shortest_timeout
        every = self.cull_every or (max(1, shortest // 2) if shortest else 300)
        api = HubAPI(self.url, os.environ.get("JUPYTERHUB_API_TOKEN", ""),
                     concurrency=self.concurrency, log=self.log)
        self.log.info("ptjaas culler: global timeout %ss, max age %ss, %d size and %d image policies, "
                      "every %ss", policy.timeout, policy.max_age, len(policy.sizes), len(policy.images),
                      every)
        main = asyncio.current_task()
        loop = asyncio.get_running_loop()

        def on_signal(signum):
            self._exit = (0, f"stopping on {signal.Signals(signum).name}")
            main.cancel()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        watchdog = None if self.once else asyncio.ensure_future(self._watch_hub(main))
        failed = False
        try:
            while True:
                try:
                    res = await cull_pass(
                        api, policy, before_hooks=before, after_hooks=after,
                        hook_timeout=self.hook_timeout, remove_named_servers=self.remove_named_servers,
                        page_size=self.api_page_size, stop_timeout=self.stop_timeout, log=self.log,
                        pod_labels=pod_labels, gpu_probe=gpu_probe)
                    failed = bool(res.failed)
                except (HubAPIError, aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                    self.log.error("culling pass failed, hub API unavailable: %s", e or type(e).__name__)
                    failed = True
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - a bad pass must not end the service
                    self.log.exception("culling pass failed")
                    failed = True
                if self.once:
                    return 1 if failed else 0
                await asyncio.sleep(every)
        except asyncio.CancelledError:
            if self._exit is None:
                raise
            code, why = self._exit
            (self.log.info if code == 0 else self.log.error)("ptjaas culler exiting: %s", why)
            return code
        finally:
            if watchdog is not None:
                watchdog.cancel()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            await api.close()
            if gpu_probe is not None:
                await gpu_probe.close()
            await self.kube.close()

    def start(self):
        if self.config_file:
            self.load_config_file(self.config_file)
            self.update_config(self.cli_config)  # the command line wins over the file
        if self.ssl_enabled:
            self.log.error("--ssl-enabled (internal SSL) is not supported by the ptjaas culler")
            sys.exit(2)
        try:
            code = asyncio.run(self.run())
        except (PolicyError, ValueError) as e:
            self.log.error("invalid culler configuration: %s", e)
            sys.exit(2)
        except KeyboardInterrupt:
            code = 0
        if code in (0, 3) and not self.once:
            # stopped by a signal, or its hub is gone: leave at once (the hub polls for the exit
            # with a growing back-off; tearing down the interpreter only makes it wait longer)
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        sys.exit(code)


def main(argv=None):
    PtjaasCuller.launch_instance(argv)
