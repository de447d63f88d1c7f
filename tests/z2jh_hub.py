"""Load JupyterHub config the way z2jh's hub pod does, for tests (no Kubernetes involved).

z2jh's hub runs ``jupyterhub --config /usr/local/etc/jupyterhub/jupyterhub_config.py``. That
file (chart 4.x, files/hub/jupyterhub_config.py) imports ``get_config`` from the chart's
``z2jh.py`` (which reads the Helm values from the mounted secret ``values.yaml``) *into the
config namespace*, maps ``singleuser.*`` values onto ``c.KubeSpawner``, registers z2jh's own
culler when ``cull.enabled``, applies ``hub.config`` as ``c[Class].update(values)`` (dropping a
few secret keys), execs every ``jupyterhub_config.d/*.py`` in name order (compiled with the
base name as file name), then ``hub.extraConfig``. ``write_z2jh_hub`` writes a small stand-in
doing exactly those steps, with the values and fragment directory given, so that the real
``jupyterhub`` command (or JupyterHub's own config loader) can load the result.
"""

import json
import secrets
import subprocess
import sys
import textwrap

import yaml

Z2JH_MODULE = '''
"""Stand-in for z2jh's z2jh.py: values from the secret's values.yaml."""
import os
from functools import lru_cache
import yaml

_VALUES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "secret", "values.yaml")


@lru_cache
def _load_config():
    with open(_VALUES) as f:
        return yaml.safe_load(f)


def get_config(key, default=None):
    value = _load_config()
    for level in key.split("."):
        if not isinstance(value, dict) or level not in value:
            return default
        value = value[level]
    return value


def set_config_if_not_none(cparent, name, key):
    data = get_config(key)
    if data is not None:
        setattr(cparent, name, data)
'''

Z2JH_CONFIG = '''
import glob
import os
import sys

configuration_directory = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, configuration_directory)

from z2jh import get_config, set_config_if_not_none  # shadows traitlets' get_config, as in z2jh

c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.JupyterHub.cleanup_servers = False
# z2jh generates hub.config.CryptKeeper.keys once, keeps it in the hub's Secret, and loads it
# here (so that enable_auth_state works without setting a key by hand)
c.CryptKeeper.keys = [{crypt_key!r}]
c.KubeSpawner.namespace = os.environ.get("POD_NAMESPACE", "default")
c.KubeSpawner.common_labels = {{"app": "jupyterhub", "heritage": "jupyterhub"}}

for trait, key in (
    ("uid", "uid"), ("fs_gid", "fsGid"), ("start_timeout", "startTimeout"),
    ("events_enabled", "events"), ("extra_labels", "extraLabels"),
    ("node_selector", "nodeSelector"), ("environment", "extraEnv"),
    ("mem_guarantee", "memory.guarantee"), ("mem_limit", "memory.limit"),
    ("cpu_guarantee", "cpu.guarantee"), ("cpu_limit", "cpu.limit"),
    ("profile_list", "profileList"), ("extra_pod_config", "extraPodConfig"),
):
    set_config_if_not_none(c.KubeSpawner, trait, "singleuser." + key)
c.KubeSpawner.allow_privilege_escalation = get_config("singleuser.allowPrivilegeEscalation")

image = get_config("singleuser.image.name")
if image:
    tag = get_config("singleuser.image.tag")
    c.KubeSpawner.image = f"{{image}}:{{tag}}" if tag else image

storage_type = get_config("singleuser.storage.type")
if storage_type == "dynamic":
    c.KubeSpawner.pvc_name_template = get_config("singleuser.storage.dynamic.pvcNameTemplate") or "claim-{{username}}{{servername}}"
    c.KubeSpawner.storage_pvc_ensure = True
    set_config_if_not_none(c.KubeSpawner, "storage_capacity", "singleuser.storage.capacity")
    volume_name = get_config("singleuser.storage.dynamic.volumeNameTemplate")
    c.KubeSpawner.volumes = [{{"name": volume_name, "persistentVolumeClaim": {{"claimName": "{{pvc_name}}"}}}}]
    c.KubeSpawner.volume_mounts = [{{"mountPath": get_config("singleuser.storage.homeMountPath"), "name": volume_name}}]
elif storage_type == "static":
    c.KubeSpawner.volumes = [{{"name": "home", "persistentVolumeClaim": {{"claimName": get_config("singleuser.storage.static.pvcName")}}}}]
    c.KubeSpawner.volume_mounts = [{{"mountPath": get_config("singleuser.storage.homeMountPath"), "name": "home",
                                     "subPath": get_config("singleuser.storage.static.subPath")}}]

if get_config("singleuser.cloudMetadata.blockWithIptables"):
    c.KubeSpawner.init_containers = [{{
        "name": "block-cloud-metadata",
        "image": "quay.io/jupyterhub/k8s-network-tools:4.4.0",
        "command": ["iptables", "--append", "OUTPUT", "--protocol", "tcp",
                    "--destination", get_config("singleuser.cloudMetadata.ip"),
                    "--destination-port", "80", "--jump", "DROP"],
        "securityContext": {{"runAsUser": 0, "capabilities": {{"add": ["NET_ADMIN"]}}}},
    }}]

set_config_if_not_none(c.Spawner, "cmd", "singleuser.cmd")
set_config_if_not_none(c.Spawner, "default_url", "singleuser.defaultUrl")
for trait, key in (("concurrent_spawn_limit", "concurrentSpawnLimit"),
                   ("active_server_limit", "activeServerLimit")):
    set_config_if_not_none(c.JupyterHub, trait, "hub." + key)

c.JupyterHub.services = []
c.JupyterHub.load_roles = []
if get_config("cull.enabled", False):
    c.JupyterHub.services.append({{"name": "jupyterhub-idle-culler",
                                   "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                                               f"--timeout={{get_config('cull.timeout')}}"]}})
    c.JupyterHub.load_roles.append({{"name": "jupyterhub-idle-culler", "services": ["jupyterhub-idle-culler"],
                                     "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"]}})

for app, cfg in get_config("hub.config", {{}}).items():
    if app == "JupyterHub":
        cfg.pop("proxy_auth_token", None)
        cfg.pop("cookie_secret", None)
        cfg.pop("services", None)
    elif app == "ConfigurableHTTPProxy":
        cfg.pop("auth_token", None)
    elif app == "CryptKeeper":
        cfg.pop("keys", None)
    c[app].update(cfg)

config_dir = {fragment_dir!r}
if os.path.isdir(config_dir):
    for file_path in sorted(glob.glob(f"{{config_dir}}/*.py")):
        file_name = os.path.basename(file_path)
        print(f"Loading {{config_dir}} config: {{file_name}}")
        with open(file_path) as f:
            file_content = f.read()
        exec(compile(source=file_content, filename=file_name, mode="exec"))

for key, config_py in sorted(get_config("hub.extraConfig", {{}}).items()):
    exec(config_py)
'''

RUNNER = r'''
import asyncio, json, sys
from jupyterhub.app import JupyterHub

config_file = sys.argv[1]
app = JupyterHub()
app.config_file = config_file
app.load_config_file(config_file)
spawner_cls, auth_cls = app.spawner_class, app.authenticator_class


async def make():  # the hub creates spawners inside its event loop; so do we
    return spawner_cls(config=app.config, _mock=True), auth_cls(config=app.config)


spawner, auth = asyncio.run(make())
names = ("images", "sizes", "home_volume_storage_class", "home_volume_size",
         "home_volume_size_by_group", "home_volume_access_modes", "home_mount_path",
         "delete_home_volume", "delete_pvc", "storage_pvc_ensure", "volumes", "image",
         "uid", "fs_gid", "allow_privilege_escalation", "quota_default", "quota_groups")
out = {name: getattr(spawner, name) for name in names if hasattr(spawner, name)}
out["init_containers"] = [ic["name"] for ic in spawner.init_containers]
out["spawner_class"] = f"{spawner_cls.__module__}.{spawner_cls.__name__}"
out["authenticator_class"] = f"{auth_cls.__module__}.{auth_cls.__name__}"
out["auth"] = {n: getattr(auth, n) for n in ("oidc_issuer", "client_id", "groups_claim",
                                             "manage_groups", "admin_groups", "allowed_groups")}
out["services"] = [{"name": s["name"], "command": s.get("command")} for s in app.services]
out["concurrent_spawn_limit"] = app.concurrent_spawn_limit
print("PTJAAS-RESULT " + json.dumps(out, default=sorted))
'''


def write_z2jh_hub(directory, values, fragment_dir):
    """Write a z2jh-like hub config dir (jupyterhub_config.py, z2jh.py, secret/values.yaml)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "secret").mkdir(exist_ok=True)
    values = dict(values)
    values.setdefault("Chart", {"Name": "jupyterhub", "Version": "4.4.0"})
    values.setdefault("Release", {"Name": "ptjaas", "Namespace": "ptjaas"})
    (directory / "secret" / "values.yaml").write_text(yaml.safe_dump(values))
    (directory / "z2jh.py").write_text(textwrap.dedent(Z2JH_MODULE))
    config = directory / "jupyterhub_config.py"
    config.write_text(Z2JH_CONFIG.format(fragment_dir=str(fragment_dir), crypt_key=secrets.token_hex(32)))
    return config


def load_with_jupyterhub(config_file, env=None, cwd=None, timeout=60):
    """Load ``config_file`` with JupyterHub's own loader in a fresh interpreter.

    Returns (result dict or None, CompletedProcess).
    """
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(config_file)],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("PTJAAS-RESULT "):
            return json.loads(line[len("PTJAAS-RESULT "):]), proc
    return None, proc
