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
from textwrap import dedent

import aiohttp
from tornado.log import LogFormatter
from traitlets import Bool, Float, Int, List, Unicode, Union, Callable, default
from traitlets.config import Application

from .hooks import CullAudit, Snapshotter, UsageRecorder, import_hook
from .hubapi import HubAPI, HubAPIError
from .k8s import Kube
from .policy import CullPolicy, PolicyError
from .service import cull_pass

POLICY_ENV = "PTJAAS_CULL_POLICY"


class PtjaasCuller(Application):
    name = "ptjaas-culler"
    description = __doc__

    url = Unicode(
        os.environ.get("JUPYTERHUB_API_URL", ""),
        help="The JupyterHub API URL (default: $JUPYTERHUB_API_URL, set by the hub for managed services).",
    ).tag(config=True)
    timeout = Int(600, help=dedent("""
        Global idle timeout (seconds): servers whose size and image set no `cull_idle_timeout`
        are culled after this long without activity (z2jh `cull.timeout`). 0 = no global idle culling.
        """).strip()).tag(config=True)
    cull_every = Int(0, help=dedent("""
        Seconds between culling passes (z2jh `cull.every`). Default: half the shortest idle
        timeout in the policy (so a 30-minute GPU timeout is checked every 15 minutes), at least 1.
        """).strip()).tag(config=True)
    concurrency = Int(10, help=dedent("""
        Maximum hub API requests in flight at once (z2jh `cull.concurrency`).
        """).strip()).tag(config=True)
    max_age = Int(0, help=dedent("""
        Global maximum server age (seconds) after which a server is culled even if active, for
        servers whose size and image set no `cull_max_age` (z2jh `cull.maxAge`). 0 = none.
        """).strip()).tag(config=True)
    cull_users = Bool(False, help=dedent("""
        Also delete *users* inactive past --timeout once their servers are stopped (z2jh
        `cull.users`). Off by default; needs the `delete:users` scope. Their home volumes stay
        (unless an admin set `c.PtjaasSpawner.delete_home_volume = True`).
        """).strip()).tag(config=True)
    cull_admin_users = Bool(True, help=dedent("""
        With --cull-users, whether admin users may be deleted too (z2jh `cull.adminUsers`).
        """).strip()).tag(config=True)
    remove_named_servers = Bool(False, help=dedent("""
        Remove culled named servers from the hub's database instead of only stopping them
        (z2jh `cull.removeNamedServers`). The home volume is kept either way.
        """).strip()).tag(config=True)
    cull_default_servers = Bool(True, help="Whether default (unnamed) servers are culled.").tag(config=True)
    cull_named_servers = Bool(True, help="Whether named servers are culled.").tag(config=True)
    api_page_size = Int(0, help=dedent("""
        Users per page when listing (JupyterHub >= 2 pagination). 0 = the hub's maximum page
        (`c.JupyterHub.api_page_max_limit`), i.e. the fewest requests.
        """).strip()).tag(config=True)
    ssl_enabled = Bool(False, help="Unsupported here (internal SSL); kept so the option is recognised.").tag(
        config=True)
    internal_certs_location = Unicode("internal-ssl", help="Unused; accepted for compatibility.").tag(
        config=True)
    config_file = Unicode("", help=dedent("""
        A Python config file for this culler (`c.PtjaasCuller.before_cull_hooks = [my_function]`,
        ...). Loaded if given.
        """).strip()).tag(config=True)

    policy_file = Unicode("", help=dedent(f"""
        JSON file with the per-size / per-image policy: `{{"sizes": {{size: {{"cull_idle_timeout":
        s, "cull_max_age": s, "gpu": n}}}}, "images": {{image: {{...}}}}, "option_keys": {{"size":
        "size", "image": "image", "version": "version"}}}}` (`option_keys` name the keys of the
        server's `user_options` that hold its size/image/version). If empty, the JSON in
        ${POLICY_ENV} is used (what `ptjaas_spawner.culler.service_config()` passes); if neither,
        every server gets --timeout / --max-age.
        """).strip()).tag(config=True)
    once = Bool(False, help="Run a single culling pass and exit (exit status 1 if a cull failed).").tag(
        config=True)
    hub_gone_timeout = Float(60, help=dedent("""
        Exit (status 3) once the hub API has not answered for this many seconds, so that a
        culler whose hub died (killed, crashed) does not poll a dead address forever. A culler
        started by the hub (a managed service) also exits as soon as the hub process that
        started it is gone. 0 = never give up.
        """).strip()).tag(config=True)

    before_cull_hooks = List(Union([Unicode(), Callable()]), help=dedent("""
        Actions run before a server is stopped: built-in names (`usage`, `snapshot`), dotted
        paths 'module:function', or callables (in a --config file). Each gets a dict describing
        the cull; failures and timeouts are logged and never block the cull.
        """).strip()).tag(config=True)
    after_cull_hooks = List(Union([Unicode(), Callable()]), help=dedent("""
        Actions run after the hub confirmed the stop (same forms as --before-cull-hooks), e.g.
        `snapshot` and `usage`.
        """).strip()).tag(config=True)
    hook_timeout = Float(60, help="Seconds each hook may take before it is abandoned (logged).").tag(
        config=True)
    stop_timeout = Float(
        120, help="Seconds to wait for a slow stop (hub answered 202) before after-hooks."
    ).tag(config=True)
    usage_file = Unicode("", help=dedent("""
        JSON-lines file the `usage` action appends to (one line per culled server: user, server,
        size, image, version, start, stop, hours, gpus, gpu_hours, reason).
        """).strip()).tag(config=True)
    audit_file = Unicode("", help=dedent("""
        The hub's data-access audit record (`c.PtjaasSpawner.audit_log_file`, filled in by
        `install_culler`): each cull appends a `server-cull` line (user, server, size, image,
        version, reason) after the stop. '' = none.
        """).strip()).tag(config=True)
    snapshot_class = Unicode(
        "", help="VolumeSnapshotClass for the `snapshot` action ('' = the cluster's default class)."
    ).tag(config=True)
    snapshot_keep = Int(3, help="How many of its snapshots per home claim the `snapshot` action keeps.").tag(
        config=True)
    namespace = Unicode(help=dedent("""
        Namespace of the user pods and home claims (default: $POD_NAMESPACE, else 'default').
        Used by the `snapshot` action and to read a server's size from its pod's labels when
        its user_options do not name one.
        """).strip()).tag(config=True)
    pod_labels = Bool(True, help=dedent("""
        Read the size of servers whose user_options name none from their pod's `ptjaas.io/size`
        label (one pod list per pass, only when needed and Kubernetes is reachable).
        """).strip()).tag(config=True)

    @default("namespace")
    def _ns_default(self):
        return os.environ.get("POD_NAMESPACE") or "default"

    claim_name_template = Unicode("claim-{username}", help=dedent("""
        Name of a user's home PersistentVolumeClaim for the `snapshot` action. {username} is
        KubeSpawner's 'safe' slug of the user name, {escaped_username} the legacy escape,
        {raw_username} the name itself. Must match the spawner's home claim name.
        """).strip()).tag(config=True)

    aliases = {
        "api-page-size": "PtjaasCuller.api_page_size",
        "concurrency": "PtjaasCuller.concurrency",
        "config": "PtjaasCuller.config_file",
        "cull-admin-users": "PtjaasCuller.cull_admin_users",
        "cull-default-servers": "PtjaasCuller.cull_default_servers",
        "cull-every": "PtjaasCuller.cull_every",
        "cull-named-servers": "PtjaasCuller.cull_named_servers",
        "cull-users": "PtjaasCuller.cull_users",
        "internal-certs-location": "PtjaasCuller.internal_certs_location",
        "max-age": "PtjaasCuller.max_age",
        "remove-named-servers": "PtjaasCuller.remove_named_servers",
        "ssl-enabled": "PtjaasCuller.ssl_enabled",
        "timeout": "PtjaasCuller.timeout",
        "url": "PtjaasCuller.url",
        "policy-file": "PtjaasCuller.policy_file",
        "before-cull-hooks": "PtjaasCuller.before_cull_hooks",
        "after-cull-hooks": "PtjaasCuller.after_cull_hooks",
        "hook-timeout": "PtjaasCuller.hook_timeout",
        "hub-gone-timeout": "PtjaasCuller.hub_gone_timeout",
        "stop-timeout": "PtjaasCuller.stop_timeout",
        "usage-file": "PtjaasCuller.usage_file",
        "audit-file": "PtjaasCuller.audit_file",
        "snapshot-class": "PtjaasCuller.snapshot_class",
        "snapshot-keep": "PtjaasCuller.snapshot_keep",
        "namespace": "PtjaasCuller.namespace",
        "pod-labels": "PtjaasCuller.pod_labels",
        "claim-name-template": "PtjaasCuller.claim_name_template",
        "log-level": "Application.log_level",
    }
    # a bare `--cull-users` (as z2jh passes it) means True; `--cull-users=false` also works
    flags = {
        "once": ({"PtjaasCuller": {"once": True}}, "Run one culling pass and exit."),
        **{
            opt: ({"PtjaasCuller": {opt.replace("-", "_"): True}}, f"Same as --{opt}=True.")
            for opt in ("cull-users", "cull-admin-users", "remove-named-servers",
                        "cull-default-servers", "cull-named-servers")
        },
    }

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

    async def run(self) -> int:
        policy = self.build_policy()
        self._usage = self._snapshotter = None
        self._exit = None
        self.kube = Kube(self.namespace)
        pod_labels = self.kube.server_pod_labels if self.pod_labels and Kube.available() else None
        before = self.build_hooks(self.before_cull_hooks, policy)
        after = self.build_hooks(self.after_cull_hooks, policy)
        if self.audit_file:
            after.insert(0, CullAudit(self.audit_file, self.log))
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
                        pod_labels=pod_labels)
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
