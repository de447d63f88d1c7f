"""The sandbox's ``ptjaas`` commands: ``ptjaas cluster`` and ``ptjaas demo``.

They are added to the ``ptjaas`` command through the ``ptjaas.commands`` entry points (see
``ptjaas_spawner.cli``), so the production package never imports the sandbox.
"""

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
    cluster = EmbeddedCluster(state_dir=state_dir, port=args.port, nodes=nodes)

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


def cmd_demo(args):
    from .demo import DEMO_ADMIN, DEMO_PASSWORD, demo_config

    state_dir = os.path.abspath(args.state_dir or _default_state_dir())
    hub_dir = os.path.join(state_dir, "hub")
    os.makedirs(hub_dir, exist_ok=True)
    if shutil.which("configurable-http-proxy") is None:
        print("ptjaas demo: configurable-http-proxy is not on PATH. Install it with "
              "'npm install configurable-http-proxy' (./dev demo does this for you).", file=sys.stderr)
        return 2
    if args.config and not os.path.isfile(args.config):
        print(f"ptjaas demo: --config {args.config}: no such file", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    cluster = None
    snapshot_classes = {}
    if args.use_current_context:
        kubeconfig = os.environ.get("KUBECONFIG", os.path.expanduser("~/.kube/config"))
        where = f"the current context of {kubeconfig}"
    else:
        from .cluster import EmbeddedCluster
        cluster = EmbeddedCluster(state_dir=os.path.join(state_dir, "cluster"))
        cluster.start_in_thread()
        snapshot_classes = {"standard": ensure_demo_snapshot_class(cluster)}
        kubeconfig = cluster.kubeconfig_path
        env["KUBECONFIG"] = kubeconfig
        where = f"the embedded cluster at {cluster.url}"
    config_path = os.path.join(hub_dir, "jupyterhub_config.py")
    url = f"http://{args.ip}:{args.port}"
    text = demo_config(data_dir=hub_dir, port=args.port, ip=args.ip, namespace=args.namespace, oidc=args.oidc,
                       snapshot_classes=snapshot_classes)
    idp = None
    if args.oidc:
        idp, oidc_text = start_demo_oidc(state_dir, url)
        text += oidc_text
        login = (f"through the local OpenID Connect provider at {idp.issuer}:\n"
                 f"               alice (groups: vision), bob (nlp), {DEMO_ADMIN} (hubadmins; an admin); "
                 f"carol is in no allowed group and is refused")
    else:
        login = f"any username (e.g. alice, who is in the 'vision' group; '{DEMO_ADMIN}' is an admin)"
    if args.config:
        text += f"\n# --- the admin's extra config (--config), loaded last ---\nload_subconfig({os.path.abspath(args.config)!r})\n"
    with open(config_path, "w") as f:
        f.write(text)
    print(f"""
ptjaas demo
  JupyterHub:  {url}/hub/login
  log in as:   {login}
  password:    {DEMO_PASSWORD}
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
    if idp is not None:
        idp.stop()
    if cluster is not None:
        cluster.stop_thread()
    return 0 if stopping else code


def ensure_demo_snapshot_class(cluster, name="ptjaas-local-snapshots"):
    """A VolumeSnapshotClass for the embedded provisioner (as a CSI driver's install adds one)."""
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


def start_demo_oidc(state_dir, hub_url):
    """A real OpenID Connect provider (npm oidc-provider) on loopback, with demo users in groups."""
    import secrets

    from .demo import DEMO_ADMIN, DEMO_PASSWORD
    from .devoidc import DevOIDCProvider

    idp = DevOIDCProvider(users={"alice": {"password": DEMO_PASSWORD, "groups": ["vision"]},
                                 "bob": {"password": DEMO_PASSWORD, "groups": ["nlp"]},
                                 "carol": {"password": DEMO_PASSWORD, "groups": ["marketing"]},
                                 DEMO_ADMIN: {"password": DEMO_PASSWORD, "groups": ["hubadmins"]}},
                          state_dir=os.path.join(state_dir, "oidc")).start()
    text = idp.hub_config_text(hub_url, allowed_groups=["vision", "nlp", "hubadmins"], admin_groups=["hubadmins"])
    key_file = os.path.join(state_dir, "hub", "auth-state-key")   # stable across demo restarts
    if not os.path.exists(key_file):
        with open(key_file, "w") as f:
            f.write(secrets.token_hex(32))
        os.chmod(key_file, 0o600)
    with open(key_file) as f:
        text += f"c.CryptKeeper.keys = [bytes.fromhex({f.read().strip()!r})]\n"
    return idp, text


def add_cluster_command(sub):
    p = sub.add_parser("cluster", help="run the embedded Kubernetes in the foreground")
    p.add_argument("--kubeconfig", help="also write the kubeconfig here (default: STATE_DIR/kubeconfig)")
    p.add_argument("--state-dir", help="objects, volumes and pod logs (default: ./.ptjaas/cluster)")
    p.add_argument("--port", type=int, default=0, help="API server port on 127.0.0.1 (default: a free one)")
    p.add_argument("--nodes", help='virtual nodes as JSON, e.g. \'[{"name": "gpu-1", "cpu": "32", "gpus": 8}]\'')
    p.set_defaults(func=cmd_cluster)


def add_demo_command(sub):
    p = sub.add_parser("demo", help="run a real JupyterHub with ptjaas on the embedded cluster")
    p.add_argument("--config", help="an extra JupyterHub config file, loaded last")
    p.add_argument("--port", type=int, default=8000, help="public port (default 8000)")
    p.add_argument("--ip", default="127.0.0.1", help="public address (default 127.0.0.1)")
    p.add_argument("--state-dir", help="hub database, cluster state and home volumes (default: ./.ptjaas)")
    p.add_argument("--namespace", default="default", help="namespace for user pods (default: default)")
    p.add_argument("--oidc", action="store_true",
                   help="log in through a real local OpenID Connect provider (npm oidc-provider) instead of "
                        "the development login")
    p.add_argument("--use-current-context", action="store_true",
                   help="use the current kubeconfig context instead of the embedded cluster")
    p.set_defaults(func=cmd_demo)

