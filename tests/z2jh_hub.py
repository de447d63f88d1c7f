"""Load JupyterHub config the way z2jh's hub pod does, for tests (no Kubernetes involved).

z2jh's own hub config dir, laid out on this machine, is ``ptjaas_sandbox.z2jhhub`` (``ptjaas demo`` runs its hub
from it too); ``load_with_jupyterhub`` loads one with JupyterHub's own loader and reports what
the spawner and authenticator instances carry.
"""

import json
import subprocess
import sys
from pathlib import Path

from ptjaas_sandbox import z2jhhub

RUNNER = r'''
import asyncio, json, sys
from jupyterhub.app import JupyterHub

config_file = sys.argv[1]
app = JupyterHub()
app.config_file = config_file
app.load_config_file(config_file)
spawner_cls, auth_cls = app.spawner_class, app.authenticator_class


async def make():  # the hub creates spawners inside its event loop; so do we
    from types import SimpleNamespace

    # the user and hub a spawner reads (as JupyterHub's own objects have them)
    user = SimpleNamespace(name="someone", id=1, url="/user/someone/", admin=False, groups=[])
    hub = SimpleNamespace(public_host="", url="http://127.0.0.1:8081/hub/", base_url="/hub/",
                          api_url="http://127.0.0.1:8081/hub/api")
    return spawner_cls(config=app.config, user=user, hub=hub), auth_cls(config=app.config)


spawner, auth = asyncio.run(make())
names = ("images", "sizes", "home_volume_storage_class", "home_volume_size",
         "home_volume_size_by_group", "home_volume_access_modes", "home_mount_path",
         "delete_home_volume", "delete_pvc", "storage_pvc_ensure", "volumes", "image",
         "uid", "fs_gid", "allow_privilege_escalation", "quota_default", "quota_groups")
out = {name: getattr(spawner, name) for name in names if hasattr(spawner, name)}
# z2jh appends its own as kubernetes_asyncio V1Container objects, sites as dicts
out["init_containers"] = [ic["name"] if isinstance(ic, dict) else ic.name for ic in spawner.init_containers]
out["spawner_class"] = f"{spawner_cls.__module__}.{spawner_cls.__name__}"
out["authenticator_class"] = f"{auth_cls.__module__}.{auth_cls.__name__}"
out["auth"] = {n: getattr(auth, n, None) for n in ("oidc_issuer", "client_id", "groups_claim",
                                             "manage_groups", "admin_groups", "allowed_groups")}
out["services"] = [{"name": s["name"], "command": s.get("command")} for s in app.services]
out["concurrent_spawn_limit"] = app.concurrent_spawn_limit
print("PTJAAS-RESULT " + json.dumps(out, default=sorted))
'''


def write_z2jh_hub(directory, values, fragment_dir, **kwargs):
    """Lay out z2jh's own hub config dir (the chart's files, secret/, config/) for ``values``."""
    return Path(z2jhhub.write_z2jh_hub(directory, values, fragment_dir, **kwargs))


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
