"""The hubs ``spawn.py`` compares: each spawner's config (plain KubeSpawner, KubeSpawner through
z2jh's hub config with the chart's default values, ptjaas with the production values through
the same z2jh hub config and our fragments), the benchmark's own settings on them, and the
benchmark-only light single-user server. See ``spawn.py``'s docstring."""

import os
import uuid

VARIANTS = {
    "kubespawner": """
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.KubeSpawner.storage_pvc_ensure = True
c.KubeSpawner.storage_capacity = "10Gi"
c.KubeSpawner.volumes = [{"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}]
c.KubeSpawner.volume_mounts = [{"name": "home", "mountPath": "/home/jovyan"}]
c.KubeSpawner.cpu_guarantee = 0.1
c.KubeSpawner.mem_guarantee = "256M"
""",
    # KubeSpawner as z2jh runs it: the chart's hub config and default values (its settings of
    # KubeSpawner, last_activity_interval 60, the idle culler service), dynamic home storage on the
    # embedded cluster's class; the config is written by z2jh_kubespawner_hub
    "z2jh-kubespawner": "",
    "ptjaas": """
c.JupyterHub.spawner_class = "ptjaas"
c.PtjaasSpawner.images = {"base": {"display_name": "Base", "versions": {
    "1": {"image": "quay.io/jupyter/base-notebook:2025-11-24", "default": True}}}}
c.PtjaasSpawner.sizes = {"small": {"display_name": "Small", "cpu_guarantee": 0.1, "cpu_limit": 1,
                                   "mem_guarantee": "256Mi", "mem_limit": "1Gi"}}
""",
}

# the benchmark-only single-user server (see the module's docstring); 0.0.0.0 becomes the pod's address
LIGHT_SERVER = (
    "import signal,sys\n"
    "from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
    "class H(BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = b'{\"light\": true}'\n"
    "        self.send_response(200)\n"
    "        self.send_header('Content-Type', 'application/json')\n"
    "        self.send_header('Content-Length', str(len(body)))\n"
    "        self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "    def log_message(self, *args):\n"
    "        pass\n"
    "ThreadingHTTPServer(('0.0.0.0', 8888), H).serve_forever()\n")
LIGHT_CONFIG = f"c.KubeSpawner.cmd = ['python3', '-S', '-c', {LIGHT_SERVER!r}]\n"


def profile_config(path):
    """Config lines that profile the hub's event-loop thread (cProfile) from its config load to its exit
    and write the profile to ``path`` (read it with ``python -m pstats``)."""
    return ("\nimport atexit as _atexit, cProfile as _cProfile\n"
            "_hub_profile = _cProfile.Profile()\n_hub_profile.enable()\n"
            f"_atexit.register(lambda: _hub_profile.dump_stats({path!r}))\n")


PRODUCTION_VALUES = ("values.yaml", "values-gpu.yaml", "values-teams.yaml")


def bench_settings_file(hub, args, spawner_class, name):
    """The benchmark's own settings on a z2jh hub, in a config file run after the chart's config
    (returns its path): its admin service, spawns answered at once, the spawn limit, the light
    server, the profile."""
    path = os.path.join(hub.workdir, "bench_config.py")
    with open(path, "w") as f:
        f.write(f"c.JupyterHub.services.append({{'name': 'bench-admin', 'api_token': {hub.token!r}}})\n"
                "c.JupyterHub.load_roles.append({'name': 'admin', 'services': ['bench-admin']})\n"
                "c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 0}\n"
                "c.JupyterHub.log_level = 'INFO'\n"
                f"c.JupyterHub.concurrent_spawn_limit = {args.spawn_limit}\n"
                f"c.{spawner_class}.start_timeout = 120\n"
                + (LIGHT_CONFIG.replace("c.KubeSpawner.cmd", f"c.{spawner_class}.cmd") if args.server == "light" else "")
                + (profile_config(os.path.join(os.path.abspath(args.profile_hub), f"{name}-{uuid.uuid4().hex[:6]}.prof"))
                   if args.profile_hub else ""))
    return path


def production_hub(hub, args):
    """Rewrite ``hub``'s config as z2jh's hub with the production values (``PRODUCTION_VALUES``,
    then the demo overlay's local settings) and the fragments; the benchmark's own settings
    (ports, an admin token, the light server) go in a config file run after the fragments."""
    from ptjaas_sandbox import demo, z2jhhub

    values = demo.demo_values(values_files=[os.path.join(demo.values_dir(), f) for f in PRODUCTION_VALUES],
                              port=hub.port, ip="127.0.0.1", hub_port=hub.hub_port,
                              proxy_api_port=hub.proxy_api_port)
    extra = bench_settings_file(hub, args, "PtjaasSpawner", "ptjaas")
    z2jhhub.write_z2jh_hub(hub.workdir, values, demo.fragments_dir(), extra_config_files=[extra])


def z2jh_kubespawner_hub(hub, args):
    """Rewrite ``hub``'s config as z2jh's hub with the chart's default values and plain KubeSpawner:
    what "KubeSpawner and z2jh" costs before ptjaas's fragments and values. Only what makes it run
    on this machine is set (loopback addresses, the embedded cluster's StorageClass, no image
    pull, no iptables init container, no user-scheduler), as the demo overlay does for ptjaas; the
    benchmark's own settings go in a config file run after the chart's."""
    from ptjaas_sandbox import z2jhhub

    values = {
        "hub": {"config": {
            "JupyterHub": {"ip": "127.0.0.1", "port": hub.port, "hub_port": hub.hub_port, "hub_ip": "127.0.0.1",
                           "hub_connect_ip": "127.0.0.1"},
            "ConfigurableHTTPProxy": {"api_url": f"http://127.0.0.1:{hub.proxy_api_port}"},
        }},
        "singleuser": {"image": {"pullPolicy": "IfNotPresent"}, "cloudMetadata": {"blockWithIptables": False},
                       "startTimeout": 120, "storage": {"dynamic": {"storageClass": "standard"}}},
        "scheduling": {"userScheduler": {"enabled": False}, "podPriority": {"enabled": False}},
    }
    extra = bench_settings_file(hub, args, "KubeSpawner", "z2jh-kubespawner")
    fragments = os.path.join(hub.workdir, "no-fragments")
    os.makedirs(fragments, exist_ok=True)
    z2jhhub.write_z2jh_hub(hub.workdir, values, fragments, extra_config_files=[extra])
