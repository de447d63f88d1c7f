"""What ``ptjaas demo`` runs: the production configuration on this machine.

The hub is configured exactly as z2jh's hub is in a cluster: the Helm values files (merged as
``helm -f`` merges them), then ``jupyterhub_config.d/`` (see :mod:`ptjaas_sandbox.z2jhhub`). The
only demo-specific settings are in ``helm-values/values-demo.yaml`` (development login, loopback
addresses, the embedded cluster's StorageClass), applied last, plus what the command line says
(ports, where the state lives).
"""

import ipaddress
import json
import os
import secrets


from ptjaas_spawner.helmvalues import ValuesFileError, deep_merge, read_file

from . import z2jhhub

DEMO_PASSWORD = "ptjaas"
DEMO_ADMIN = "admin"


def project_dir():
    """The source tree holding helm-values/ and jupyterhub_config.d/ (ptjaas runs from a clone)."""
    return os.environ.get("PTJAAS_PROJECT_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def values_dir():
    return os.path.join(project_dir(), "helm-values")


def fragments_dir():
    return os.path.join(project_dir(), "jupyterhub_config.d")


def default_values_files():
    """``ptjaas demo`` without ``-f``: the base values, the GPU overlay, short GPU timeouts."""
    return [os.path.join(values_dir(), name) for name in ("values.yaml", "values-gpu.yaml", "values-demo-culling.yaml")]


def demo_overlay_file():
    return os.path.join(values_dir(), "values-demo.yaml")


class DemoError(Exception):
    """A problem with the demo's command line or files; the message says what to do."""


def load_values(paths):
    """Merge Helm values files the way ``helm -f a -f b`` does."""
    values = {}
    for path in paths:
        try:
            values = deep_merge(values, read_file(path))
        except ValuesFileError as e:
            raise DemoError(f"-f {e}") from e
    return values


def is_loopback(ip):
    if ip in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def servers_run_as(euid=None):
    """Who the demo's notebook servers run as, in words (true as root and not)."""
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        return ("Notebook servers run on this machine as processes of uid 1000 (the images' jovyan user, "
                "or the user a pod's securityContext names), not in containers.")
    import pwd
    try:
        name = pwd.getpwuid(euid).pw_name
    except KeyError:
        name = f"uid {euid}"
    return f"Notebook servers run on this machine as processes of this machine's user {name}, with its rights."


def remote_warning(ip, port, oidc, euid=None):
    login = ("the local OpenID Connect provider's users (alice, bob, admin) share the password "
             f"{DEMO_PASSWORD!r}" if oidc else
             f"the development login lets ANYONE in with any username and the shared password {DEMO_PASSWORD!r}, "
             f"and '{DEMO_ADMIN}' is an admin")
    return (f"WARNING: ptjaas demo listens on {ip}:{port}, reachable from other machines: {login}. "
            f"{servers_run_as(euid)} The demo is not a shared hub.")


def demo_values(*, values_files, port, ip, hub_port, proxy_api_port, extra=None):
    """The merged values the demo hub runs from: the files, the demo overlay, the command line."""
    values = load_values([*values_files, demo_overlay_file()])
    runtime = {"hub": {"config": {
        "JupyterHub": {"ip": ip, "port": port, "hub_port": hub_port},
        "ConfigurableHTTPProxy": {"api_url": f"http://127.0.0.1:{proxy_api_port}"},
    }}}
    values = deep_merge(values, runtime)
    if extra:
        values = deep_merge(values, extra)
    return values


def write_demo_hub(hub_dir, values, extra_config_files=()):
    """The hub's config directory under the state dir; returns the config file's path. The
    directory is the hub's alone (0700), its files 0600, the database included (made empty
    before the hub opens it: SQLite keeps a file's mode)."""
    private_dir(hub_dir)
    config = z2jhhub.write_z2jh_hub(hub_dir, values, fragments_dir(), extra_config_files=extra_config_files,
                                    crypt_key=kept_secret(hub_dir, "auth-state-key"),
                                    cookie_secret=kept_secret(hub_dir, "cookie-secret"))
    private_dir(os.path.join(hub_dir, "secret"))
    private_dir(os.path.join(hub_dir, "config"))
    private_file(os.path.join(hub_dir, "jupyterhub.sqlite"))
    for name in ("jupyterhub_config.py", z2jhhub.CHART_CONFIG, "z2jh.py", "ports.json"):
        if os.path.exists(os.path.join(hub_dir, name)):
            os.chmod(os.path.join(hub_dir, name), 0o600)
    return config


def private_dir(path):
    """``path`` made if missing, 0700 (this user's alone)."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)


def private_file(path):
    """``path`` made (empty) if missing, 0600 (this user's alone)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def kept_secret(hub_dir, name):
    """A secret (the auth-state key, the cookie secret) kept across demo restarts in
    ``hub_dir/name``, as z2jh keeps them in the hub's Secret."""
    path = os.path.join(hub_dir, name)
    if not os.path.exists(path):
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(secrets.token_hex(32))
    with open(path) as f:
        return f.read().strip()


def stable_ports(data_dir):
    """The hub's internal ports, chosen once per state dir: running servers keep the hub's API URL
    in their environment (as pods keep a Service name), so a restarted demo must answer there."""
    from .cluster.server import free_port
    path = os.path.join(data_dir, "ports.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        ports = {"hub": free_port(), "proxy_api": free_port()}
        private_dir(data_dir)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            json.dump(ports, f)
        return ports
