"""Config for running a real JupyterHub on this machine against a (usually embedded) cluster.

Shared by ``ptjaas demo`` and the test suite, so that what the tests start is what a person
evaluating ptjaas starts.
"""

import json


def local_hub_config(*, ip="127.0.0.1", port=8000, hub_port=8081, proxy_api_port=8001, data_dir,
                     namespace="default", spawner_class="ptjaas", authenticator_class="dummy",
                     api_tokens=None):
    """JupyterHub config text: hub and proxy on loopback, state in ``data_dir``, pods reach the hub
    on 127.0.0.1, and KubeSpawner talks to the cluster of the current kubeconfig."""
    services = [{"name": name, "api_token": token} for name, token in (api_tokens or {}).items()]
    roles = [{"name": "admin", "services": [s["name"] for s in services]}] if services else []
    return f"""
# --- ptjaas local hub (generated) ---
import os
# the hub's database, cookie secret and logs: the hub's alone (notebook servers run as other users)
os.makedirs({str(data_dir)!r}, exist_ok=True)
os.chmod({str(data_dir)!r}, 0o700)
c.JupyterHub.ip = {ip!r}
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.hub_connect_ip = "127.0.0.1"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = os.path.join({str(data_dir)!r}, "proxy.pid")
c.JupyterHub.db_url = "sqlite:///" + os.path.join({str(data_dir)!r}, "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join({str(data_dir)!r}, "jupyterhub_cookie_secret")
c.JupyterHub.cleanup_servers = False
c.JupyterHub.spawner_class = {spawner_class!r}
c.JupyterHub.authenticator_class = {authenticator_class!r}
c.Authenticator.allow_all = True
c.JupyterHub.services = {json.dumps(services)}
c.JupyterHub.load_roles = {json.dumps(roles)}
c.KubeSpawner.namespace = {namespace!r}
c.KubeSpawner.start_timeout = 120
c.KubeSpawner.http_timeout = 90
c.KubeSpawner.image = "quay.io/jupyter/base-notebook:2025-11-24"
c.KubeSpawner.image_pull_policy = "IfNotPresent"
c.KubeSpawner.default_url = "/lab"
"""
