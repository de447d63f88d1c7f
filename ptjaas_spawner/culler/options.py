"""The culler's options, written once: the traits of ``CullerOptions`` are the command line of
``python -m ptjaas_spawner.culler`` (``PtjaasCuller``: each option ``--name-with-dashes``, a
bare ``--flag`` for booleans) and the keyword arguments of ``service_config`` /
``install_culler``, which turn them back into that command line. The Helm values that set them
(``cull.*``, ``custom.ptjaas.culler.*``) name their option in ``settings_schema``.
Imports only traitlets: the hub reads it at config time.
"""

from __future__ import annotations

import json
import os
from textwrap import dedent

from traitlets import Bool, Callable, Float, Int, List, TraitError, Unicode, Union, default, validate
from traitlets.config import Configurable

from ..homevolume import HOME_CLAIM_TEMPLATE
from .gpuidle import DEFAULT_QUERY, DEFAULT_THRESHOLD, check_query_template, check_threshold
from .policy import DEFAULT_TIMEOUT, PolicyError

POLICY_ENV = "PTJAAS_CULL_POLICY"


class CullerOptions(Configurable):
    """jupyterhub-idle-culler's options with the same meaning (so z2jh's ``cull.*`` values keep
    theirs), plus the per-size policy, hooks and ``--once``."""

    url = Unicode(
        os.environ.get("JUPYTERHUB_API_URL", ""),
        help="The JupyterHub API URL (default: $JUPYTERHUB_API_URL, set by the hub for managed services).",
    ).tag(config=True)
    timeout = Int(DEFAULT_TIMEOUT, min=0, help=dedent("""
        Global idle timeout (seconds): servers whose size and image set no `cull_idle_timeout`
        are culled after this long without activity (z2jh `cull.timeout`). 0 = no global idle culling.
        """).strip()).tag(config=True)
    cull_every = Int(0, min=0, help=dedent("""
        Seconds between culling passes (z2jh `cull.every`). Default: half the shortest idle
        timeout in the policy (so a 30-minute GPU timeout is checked every 15 minutes), at least 1.
        """).strip()).tag(config=True)
    concurrency = Int(10, min=0, help=dedent("""
        Maximum hub API requests in flight at once (z2jh `cull.concurrency`).
        """).strip()).tag(config=True)
    max_age = Int(0, min=0, help=dedent("""
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
    api_page_size = Int(0, min=0, help=dedent("""
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
    hub_gone_timeout = Float(60, min=0, help=dedent("""
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
    hook_timeout = Float(60, min=0, help="Seconds each hook may take before it is abandoned (logged).").tag(
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
    snapshot_keep = Int(3, min=1, help="How many of its snapshots per home claim the `snapshot` action keeps.").tag(
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

    prometheus_url = Unicode("", help=dedent("""
        Base URL of a Prometheus that scrapes NVIDIA's DCGM exporter (e.g.
        `http://prometheus-server.monitoring`; the culler asks its `/api/v1/query`). When set, a
        server of a size with `gpu` > 0 whose GPUs stayed under --gpu-idle-threshold for its
        size's idle timeout is culled as idle even while its kernel reports activity (reason
        "GPU idle: under 5 % for 30 min"). Prometheus unreachable or answering an error means no
        decision (logged once): missing data never culls. '' = off (activity alone decides).
        """).strip()).tag(config=True)
    gpu_idle_query = Unicode(DEFAULT_QUERY, help=dedent(f"""
        PromQL query (with --prometheus-url) giving the highest GPU utilisation (0-100) of one
        server's pod over its idle timeout, one sample per GPU; the highest counts. Placeholders:
        `$pod` (required), `$namespace`, `$timeout` (the size's idle timeout in seconds), `$user`,
        `$server`; write `$$` for a literal `$`. Default: `{DEFAULT_QUERY}`.
        """).strip()).tag(config=True)
    gpu_idle_threshold = Float(DEFAULT_THRESHOLD, help=dedent("""
        GPU utilisation in percent (> 0, <= 100) under which, over a size's whole idle timeout,
        a GPU server counts as idle (with --prometheus-url).
        """).strip()).tag(config=True)
    prometheus_timeout = Float(10, min=0.1, help=dedent("""
        Seconds one Prometheus query may take (with --prometheus-url) before it counts as
        unanswered (no decision).
        """).strip()).tag(config=True)

    @validate("gpu_idle_query")
    def _check_gpu_idle_query(self, proposal):
        try:
            return check_query_template(proposal["value"])
        except PolicyError as e:
            raise TraitError(_unprefixed(e, "gpu_idle_query")) from None

    @validate("gpu_idle_threshold")
    def _check_gpu_idle_threshold(self, proposal):
        try:
            return check_threshold(proposal["value"])
        except PolicyError as e:
            raise TraitError(_unprefixed(e, "gpu_idle_threshold")) from None

    @validate("prometheus_url")
    def _check_prometheus_url(self, proposal):
        url = proposal["value"]
        if url and not (url.startswith(("http://", "https://")) and len(url) <= 500 and not any(
                c.isspace() for c in url)):
            raise TraitError("must be an http:// or https:// URL (at most 500 characters, no spaces), "
                             "or '' for off")
        return url

    @default("namespace")
    def _ns_default(self):
        return os.environ.get("POD_NAMESPACE") or "default"

    claim_name_template = Unicode(HOME_CLAIM_TEMPLATE, help=dedent("""
        Name of a user's home PersistentVolumeClaim for the `snapshot` action, for claims without
        the spawner's user label. {username} is KubeSpawner's 'safe' slug of the user name,
        {escaped_username} the legacy escape, {raw_username} the name itself. The default is the
        spawner's default `pvc_name_template` (`homevolume.HOME_CLAIM_TEMPLATE`); set both together.
        """).strip()).tag(config=True)


def _unprefixed(error: Exception, name: str) -> str:
    """A check's message without its leading 'culler <name>' (``command_line`` adds it)."""
    return str(error).removeprefix(f"culler {name}").lstrip(": ")


OPTIONS = CullerOptions.class_own_traits(config=True)


def option_aliases(section: str, **extra: str) -> dict:
    """``{"max-age": "<section>.max_age", ...}`` for every option, plus ``extra``
    (``alias=option name`` or ``alias="Class.trait"``)."""
    aliases = {name.replace("_", "-"): f"{section}.{name}" for name in OPTIONS}
    aliases.update({alias: target if "." in target else f"{section}.{target}" for alias, target in extra.items()})
    return aliases


def option_flags(section: str) -> dict:
    """A bare ``--cull-users`` for every boolean option, as z2jh passes them."""
    return {name.replace("_", "-"): ({section: {name: True}}, f"Same as --{name.replace('_', '-')}=True.")
            for name, trait in OPTIONS.items() if isinstance(trait, Bool)}


def command_line(options: dict) -> list[str]:
    """``["--timeout=3600", ...]`` for ``options`` (option name -> value; None and "" are left
    out). Raises PolicyError naming an unknown option or a value its option refuses."""
    probe = CullerOptions()
    args = []
    for name, value in options.items():
        trait = OPTIONS.get(name)
        if trait is None:
            raise PolicyError(f"culler: unknown option {name!r}; options: {', '.join(sorted(OPTIONS))}")
        if value is None or value == "":
            continue
        if isinstance(value, bool) and not isinstance(trait, Bool):
            raise PolicyError(f"culler {name} must be {'an integer' if isinstance(trait, Int) else 'a number'}, not {value!r}")
        try:
            setattr(probe, name, value)
        except TraitError as e:
            raise PolicyError(f"culler {name}: {str(e).replace(' of a CullerOptions instance', '')}") from None
        text = json.dumps(list(value)) if isinstance(value, (list, tuple)) else str(value)
        args.append(f"--{name.replace('_', '-')}={text}")
    return args
