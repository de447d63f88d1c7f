"""The sandbox's ``ptjaas`` commands: ``ptjaas cluster`` and ``ptjaas demo``.

They are added to the ``ptjaas`` command through the ``ptjaas.commands`` entry points (see
``ptjaas_spawner.cli``), so the production package never imports the sandbox.
"""

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys


def _default_state_dir():
    return os.environ.get("PTJAAS_STATE_DIR") or os.path.join(os.getcwd(), ".ptjaas")


def cmd_cluster(args):
    from .cluster import EmbeddedCluster
    from .cluster.server import load_node_specs

    state_dir = os.path.abspath(args.state_dir or os.path.join(_default_state_dir(), "cluster"))
    nodes = load_node_specs(args.nodes) if args.nodes else None
    cluster = EmbeddedCluster(state_dir=state_dir, port=args.port, nodes=nodes, event_ttl=args.event_ttl,
                              bind_delay=args.bind_delay, images=args.images)

    async def main():
        await cluster.start()
        kubeconfig = cluster.write_kubeconfig(args.kubeconfig) if args.kubeconfig else cluster.kubeconfig_path
        print(f"ptjaas embedded Kubernetes API: {cluster.url}", flush=True)
        print(f"kubeconfig: {kubeconfig}", flush=True)
        print(f"state dir: {state_dir}", flush=True)
        print(f"try: KUBECONFIG={kubeconfig} kubectl get nodes   (Ctrl-C stops it; pods and volumes are kept)",
              flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print("stopping the embedded cluster...", flush=True)
        await cluster.stop()

    asyncio.run(main())
    return 0


# the demo's virtual node: a GPU node as the GPU sizes of helm-values/values-gpu.yaml expect it
# (the label GPU Feature Discovery sets; 4 GPUs for team vision's pool)
DEMO_NODE_LABELS = {"nvidia.com/gpu.present": "true"}


def _label_demo_node(cluster):
    """Give the node of a cluster made by an older demo the GPU label (new ones get it at seeding)."""
    import json
    import urllib.request

    req = urllib.request.Request(
        f"{cluster.url}/api/v1/nodes/ptjaas-node-1", method="PATCH",
        data=json.dumps({"metadata": {"labels": DEMO_NODE_LABELS}}).encode(),
        headers={"Content-Type": "application/merge-patch+json", "Authorization": f"Bearer {cluster.token}"})
    try:
        urllib.request.urlopen(req, timeout=10).close()
    except OSError:   # no such node (a custom cluster): nothing to label
        pass


DEMO_POD_SECURITY = {"pod-security.kubernetes.io/enforce": "baseline",
                     "pod-security.kubernetes.io/enforce-version": "latest"}


def enforce_demo_pod_security(cluster, namespace):
    """The user pods' namespace enforces Pod Security at ``baseline`` (no hostPath, privileged or
    host-namespace pods), as a production namespace should: ptjaas's notebook pods meet it (the
    demo's values turn z2jh's root NET_ADMIN cloud-metadata init container off), the
    home-migration copy pods too."""
    from .cluster import errors
    from .cluster.resources import BY_PLURAL

    def label():
        try:
            cluster.registry.patch(BY_PLURAL["namespaces"], "", namespace, {"metadata": {"labels": DEMO_POD_SECURITY}},
                                   "application/merge-patch+json")
        except errors.ApiError as e:
            if e.code != 404:
                raise
            cluster.registry.create(BY_PLURAL["namespaces"], "", {"metadata": {"name": namespace,
                                                                              "labels": dict(DEMO_POD_SECURITY)}})
    cluster.call(label)


def cmd_demo(args):
    from .demo import (DEMO_ADMIN, DEMO_PASSWORD, DemoError, default_values_files, demo_overlay_file,
                       demo_values, is_loopback, load_values, remote_warning, stable_ports, write_demo_hub)

    def fail(message):
        print(f"ptjaas demo: {message}", file=sys.stderr)
        return 2

    if not is_loopback(args.ip):
        print(remote_warning(args.ip, args.port, args.oidc), file=sys.stderr, flush=True)
        if not (args.allow_remote or args.oidc):
            return fail(f"refusing to listen on {args.ip} without --allow-remote (or --oidc, a real login); "
                        "the default --ip 127.0.0.1 keeps the demo on this machine")
    state_dir = os.path.abspath(args.state_dir or _default_state_dir())
    os.makedirs(state_dir, exist_ok=True)
    os.chmod(state_dir, 0o700)   # hub database, identity provider secrets, cluster: not for the notebooks' users
    hub_dir = os.path.join(state_dir, "hub")
    if shutil.which("configurable-http-proxy") is None:
        return fail("configurable-http-proxy is not on PATH. Install it with "
                    "'npm install configurable-http-proxy' (./dev demo does this for you).")
    if args.config and not os.path.isfile(args.config):
        return fail(f"--config {args.config}: no such file")
    values_files = [os.path.abspath(p) for p in args.values] if args.values else default_values_files()
    if not os.path.isfile(demo_overlay_file()):
        return fail(f"{demo_overlay_file()} not found: run ptjaas demo from a clone of ptjaas "
                    "(or set PTJAAS_PROJECT_DIR to one)")
    try:
        site_values = load_values(values_files)   # a missing or broken file: said before anything starts
    except DemoError as e:
        return fail(str(e))
    from ptjaas_spawner.checkvalues import check_values
    problems = check_values(load_values([*values_files, demo_overlay_file()]))
    if problems:   # what the hub would refuse at start-up, said before anything starts
        return fail("the values have problems (as `ptjaas check-values` reports them):\n" +
                    "\n".join(f"  {path}: {message}" for path, message in problems))
    os.makedirs(hub_dir, exist_ok=True)
    os.chmod(state_dir, 0o700)
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["POD_NAMESPACE"] = args.namespace      # as z2jh's hub pod gets its namespace
    env.pop("PTJAAS_VALUES", None)
    cluster = None
    if args.use_current_context:
        kubeconfig = os.environ.get("KUBECONFIG", os.path.expanduser("~/.kube/config"))
        where = f"the current context of {kubeconfig}"
    else:
        from .cluster import EmbeddedCluster
        from .cluster.server import NodeSpec
        cluster = EmbeddedCluster(state_dir=os.path.join(state_dir, "cluster"),
                                  nodes=[NodeSpec(labels=dict(DEMO_NODE_LABELS))])
        cluster.start_in_thread()
        _label_demo_node(cluster)
        enforce_demo_pod_security(cluster, args.namespace)
        ensure_demo_snapshot_class(cluster)
        kubeconfig = cluster.kubeconfig_path
        env["KUBECONFIG"] = kubeconfig
        where = f"the embedded cluster at {cluster.url}"
    url = f"http://{args.ip}:{args.port}"
    ports = stable_ports(hub_dir)
    idp = None
    extra = None
    if args.oidc:
        idp, extra = start_demo_oidc(state_dir, url, site_values)
        login = (f"through the local OpenID Connect provider at {idp.issuer}:\n"
                 f"               alice (groups: vision), bob (data-science), {DEMO_ADMIN} (jupyter-admins; "
                 f"an admin); carol is in no allowed group and is refused")
    else:
        login = f"any username (e.g. alice, who is in the 'vision' group; '{DEMO_ADMIN}' is an admin)"
    values = demo_values(values_files=values_files, port=args.port, ip=args.ip, hub_port=ports["hub"],
                         proxy_api_port=ports["proxy_api"], extra=extra)
    if args.use_current_context:
        # not the embedded cluster, whose StorageClass values-demo.yaml names: the files' class
        # (null: the cluster's default)
        site = ((site_values.get("hub") or {}).get("config") or {}).get("PtjaasSpawner") or {}
        values["hub"]["config"]["PtjaasSpawner"]["home_volume_storage_class"] = site.get("home_volume_storage_class")
    config_path = write_demo_hub(hub_dir, values, [os.path.abspath(args.config)] if args.config else [])
    def shown_path(path):   # relative to where the command runs when below it, else absolute
        rel = os.path.relpath(path)
        return path if rel.startswith("..") else rel

    shown = ", ".join(shown_path(p) for p in values_files)
    print(f"""
ptjaas demo
  JupyterHub:  {url}/hub/login
  log in as:   {login}
  password:    {DEMO_PASSWORD}
  values:      {shown}, then {shown_path(demo_overlay_file())} (the demo's login and addresses)
  Kubernetes:  {where}
  kubeconfig:  {kubeconfig}
  state dir:   {state_dir}  (home volumes and the hub database live here; rerun with the same dir to keep them)
Ctrl-C stops the hub; running notebook servers stop with the embedded cluster and come back on the next run.
""", flush=True)
    proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", config_path], cwd=hub_dir, env=env)
    stopping = False

    def forward(signum, frame):
        nonlocal stopping
        stopping = True
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    code = proc.wait()
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # a second Ctrl-C must not interrupt the clean-up
    if idp is not None:
        idp.stop()
    if cluster is not None:
        cluster.stop_thread()
    return 0 if stopping else code


def ensure_demo_snapshot_class(cluster, name="ptjaas-local-snapshots"):
    """A VolumeSnapshotClass for the embedded provisioner (as a CSI driver's install adds one);
    values-demo.yaml maps the StorageClass `standard` to it (home snapshots on)."""
    from .cluster import errors
    from .cluster.resources import BY_PLURAL

    def create():
        try:
            cluster.registry.create(BY_PLURAL["volumesnapshotclasses"], "", {
                "metadata": {"name": name}, "driver": "ptjaas.io/local-path", "deletionPolicy": "Delete"})
        except errors.ApiError:
            pass  # there already (a restarted demo)
    cluster.call(create)
    return name


def start_demo_oidc(state_dir, hub_url, site_values):
    """A real OpenID Connect provider (npm oidc-provider) on loopback, with demo users in the
    groups of the base values; returns it and the values that point the site's
    PtjaasAuthenticator settings at it."""
    from .demo import DEMO_ADMIN, DEMO_PASSWORD
    from .devoidc import DevOIDCProvider

    idp = DevOIDCProvider(users={"alice": {"password": DEMO_PASSWORD, "groups": ["vision"]},
                                 "bob": {"password": DEMO_PASSWORD, "groups": ["data-science"]},
                                 "carol": {"password": DEMO_PASSWORD, "groups": ["marketing"]},
                                 DEMO_ADMIN: {"password": DEMO_PASSWORD, "groups": ["jupyter-admins"]}},
                          state_dir=os.path.join(state_dir, "oidc")).start()
    idp.set_redirect_uris([f"{hub_url}/hub/oauth_callback"])
    site = ((site_values.get("hub") or {}).get("config") or {}).get("PtjaasAuthenticator") or {}
    auth = dict(site)
    auth.update(idp.authenticator_config(oauth_callback_url=f"{hub_url}/hub/oauth_callback"))
    auth.setdefault("allowed_groups", ["vision", "data-science", "jupyter-admins"])
    auth.setdefault("admin_groups", ["jupyter-admins"])
    auth["enable_auth_state"] = True
    extra = {"hub": {"config": {
        "JupyterHub": {"authenticator_class": "ptjaas", "load_groups": None},
        "Authenticator": {"allow_all": False, "admin_users": None},
        "DevLoginAuthenticator": None,
        "PtjaasAuthenticator": auth,
    }}}
    return idp, extra


def _bind_delay(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 600:
        raise argparse.ArgumentTypeError("--bind-delay must be a number of seconds from 0 to 600")
    return value


def add_cluster_command(sub):
    p = sub.add_parser("cluster", help="run the embedded Kubernetes in the foreground")
    p.add_argument("--kubeconfig", help="also write the kubeconfig here (default: STATE_DIR/kubeconfig)")
    p.add_argument("--state-dir", help="objects, volumes and pod logs (default: ./.ptjaas/cluster)")
    p.add_argument("--port", type=int, default=0, help="API server port on 127.0.0.1 (default: a free one)")
    p.add_argument("--nodes", help='virtual nodes as JSON, e.g. \'[{"name": "gpu-1", "cpu": "32", "gpus": 8}]\'')
    p.add_argument("--event-ttl", type=float, default=3600,
                   help="seconds an event is kept after its last update, as kube-apiserver's --event-ttl (default 3600)")
    p.add_argument("--bind-delay", type=_bind_delay, default=0.0, metavar="SECONDS",
                   help="seconds the volume provisioner takes to make a new claim's volume, as a real CSI "
                        "driver (default 0: at once)")
    p.add_argument("--images", nargs="+", metavar="PATTERN",
                   help="the images the node can pull, as glob patterns (e.g. 'quay.io/jupyter/*'); any other "
                        "fails as a kubelet's pull does (ErrImagePull, ImagePullBackOff). Default: every image")
    p.set_defaults(func=cmd_cluster)


def add_demo_command(sub):
    p = sub.add_parser("demo", help="run a real JupyterHub with ptjaas on the embedded cluster")
    p.add_argument("-f", "--values", action="append", metavar="VALUES_YAML",
                   help="a Helm values file, as for `helm -f` (repeat; later files win). Default: "
                        "helm-values/values.yaml, values-gpu.yaml and values-demo-culling.yaml. "
                        "helm-values/values-demo.yaml (login, addresses) is always applied last")
    p.add_argument("--config", help="an extra Python config file, run after the fragments (like hub.extraConfig)")
    p.add_argument("--port", type=int, default=8000, help="public port (default 8000)")
    p.add_argument("--ip", default="127.0.0.1",
                   help="public address (default 127.0.0.1); another address needs --allow-remote or --oidc")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow an --ip other than loopback with the development login (anyone who can reach "
                        "the port logs in with the shared password)")
    p.add_argument("--state-dir", help="hub database, cluster state and home volumes (default: ./.ptjaas)")
    p.add_argument("--namespace", default="default", help="namespace for user pods (default: default)")
    p.add_argument("--oidc", action="store_true",
                   help="log in through a real local OpenID Connect provider (npm oidc-provider) instead of "
                        "the development login")
    p.add_argument("--use-current-context", action="store_true",
                   help="use the current kubeconfig context instead of the embedded cluster")
    p.set_defaults(func=cmd_demo)

