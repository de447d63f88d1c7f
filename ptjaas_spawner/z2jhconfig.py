"""z2jh's own hub config, laid out on this machine as the chart's hub pod mounts it, without helm.

z2jh's hub runs ``jupyterhub --config /usr/local/etc/jupyterhub/jupyterhub_config.py``: the
chart's ``files/hub/jupyterhub_config.py`` and ``z2jh.py`` (from the hub ConfigMap), the Helm
values (chart defaults merged with the site's files) in the hub Secret's ``values.yaml``, the
generated secrets beside it, the resource names under ``config/``, and the Services'
``*_SERVICE_*`` variables Kubernetes sets. ``write_z2jh_hub`` writes that layout into a directory
and runs the chart's **real** files, unchanged except for the one path they hard-code
(``/usr/local/etc/jupyterhub``, which becomes the directory): it maps ``hub.*`` and
``singleuser.*`` onto traits, applies ``hub.config``, execs ``jupyterhub_config.d/*.py`` (a link
to our fragments) in name order, then ``hub.extraConfig``.

The files come from the chart beside the project (``../shared/charts/jupyterhub`` or
``$PTJAAS_SHARED_DIR``) when present, else from the single vendored copy in
``ptjaas_spawner/vendor/z2jh/`` (origin, version and licence in its README). ``ptjaas demo`` runs its hub from
this (``ptjaas_sandbox.z2jhhub``), ``ptjaas check-values`` runs the chart's mapping of values
through it (``chart_config``), the tests load it too; ``ptjaas_sandbox.charthub`` does the same
from ``helm template``'s output.

What a pod on a cluster gets from Kubernetes (Service addresses, a hub reachable as ``hub``)
is this machine's loopback instead: the ``jupyterhub_config.py`` written here sets those
variables, then runs the chart's file (``z2jh_jupyterhub_config.py``), then the demo's
``--config`` files. Hub and proxy addresses default to loopback unless the values set them.
"""

import contextlib
import io
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from .helmvalues import deep_merge

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MOUNT_ROOT = "/usr/local/etc/jupyterhub"
CHART_FILES = ("jupyterhub_config.py", "z2jh.py")
VENDOR_DIR = Path(__file__).resolve().parent / "vendor" / "z2jh"
CHART_CONFIG = "z2jh_jupyterhub_config.py"  # the chart's jupyterhub_config.py, as laid out here

WRAPPER = '''\
# written by ptjaas_spawner.z2jhconfig: the hub pod's Service variables on this machine, then z2jh's
# own hub config from {source} (unchanged but for its mount path), then `ptjaas demo --config` files
import glob
import os

for _key, _value in {env!r}.items():
    os.environ.setdefault(_key, _value)
_chart_config = os.path.join(os.path.dirname(os.path.realpath(__file__)), {chart_config!r})
with open(_chart_config) as _f:
    exec(compile(source=_f.read(), filename=_chart_config, mode="exec"))

# Python config files given to this hub (ptjaas demo --config), like hub.extraConfig: they see
# and change the same `c`, and are then checked like the fragments are
_ptjaas_extra_files = {extra_files!r}
for _ptjaas_path in _ptjaas_extra_files:
    print(f"Loading extra config file: {{_ptjaas_path}}")
    with open(_ptjaas_path) as _f:
        exec(compile(source=_f.read(), filename=_ptjaas_path, mode="exec"))
if _ptjaas_extra_files:
    for _path in sorted(glob.glob(os.path.join({fragments!r}, "99-*.py"))):
        with open(_path) as _f:
            exec(compile(source=_f.read(), filename=os.path.basename(_path), mode="exec"))
'''


def shared_dir():
    """``$PTJAAS_SHARED_DIR``, else the first ``shared/`` beside the project or one of its parents
    (the reference data: the z2jh chart, a real control plane's programs)."""
    if os.environ.get("PTJAAS_SHARED_DIR"):
        return Path(os.environ["PTJAAS_SHARED_DIR"])
    for parent in PROJECT_ROOT.parents:
        if (parent / "shared").is_dir():
            return parent / "shared"
    return PROJECT_ROOT.parent / "shared"


def chart_sources():
    """(directory holding the chart's two hub files, the chart's values.yaml, where from): the
    chart beside the project when present, else the vendored copy."""
    chart = shared_dir() / "charts" / "jupyterhub"
    hub_files = chart / "files" / "hub"
    if all((hub_files / name).is_file() for name in CHART_FILES) and (chart / "values.yaml").is_file():
        return hub_files, chart / "values.yaml", str(chart)
    return VENDOR_DIR, VENDOR_DIR / "values.yaml", "ptjaas_spawner/vendor/z2jh"


def copy_chart_files(hub_files, directory, names=None):
    """Copy the chart's hub files into ``directory`` with its mount path made ``directory``;
    ``names`` maps a chart file name to the name it gets here."""
    names = names or {}
    for name in CHART_FILES:
        text = (Path(hub_files) / name).read_text()
        (Path(directory) / names.get(name, name)).write_text(text.replace(MOUNT_ROOT, os.fspath(directory)))


def link_fragments(directory, fragment_dir):
    """``directory/jupyterhub_config.d`` made a link to ``fragment_dir`` (where the hub pod
    mounts the site's fragments)."""
    fragments = os.path.join(directory, "jupyterhub_config.d")
    if os.path.islink(fragments):
        os.unlink(fragments)
    elif os.path.isdir(fragments):
        shutil.rmtree(fragments)
    os.symlink(os.path.abspath(os.fspath(fragment_dir)), fragments)


def local_values(values):
    """What the hub pod reaches through Kubernetes Services, on loopback: the hub's bind and
    connect URLs and the proxy's API (z2jh points them at Service names) and a proxy the hub
    starts itself, each unless the values set it."""
    config = (values.get("hub") or {}).get("config") or {}
    hub = config.get("JupyterHub") or {}
    proxy = config.get("ConfigurableHTTPProxy") or {}
    hub_url = f"http://{hub.get('hub_ip') or '127.0.0.1'}:{hub.get('hub_port') or 8081}"
    local = {"JupyterHub": {"hub_bind_url": hub_url, "hub_connect_url": hub_url},
             "ConfigurableHTTPProxy": {"api_url": "http://127.0.0.1:8001", "should_start": True}}
    for section, given in (("JupyterHub", hub), ("ConfigurableHTTPProxy", proxy)):
        for key in list(local[section]):
            if key in given:
                del local[section][key]
    return deep_merge(values, {"hub": {"config": local}})


def _port(url, default):
    tail = url.rsplit(":", 1)[-1].split("/", 1)[0]
    return tail if tail.isdigit() else str(default)


def write_secret_file(path, text):
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)


def write_z2jh_hub(directory, values, fragment_dir, *, extra_config_files=(), crypt_key=None,
                   cookie_secret=None):
    """Lay out z2jh's hub config dir in ``directory`` for ``values`` (the site's merged Helm
    values; the chart's defaults go under them as ``helm`` does) and the fragments in
    ``fragment_dir``; ``extra_config_files`` are Python config files run after
    ``hub.extraConfig``; ``crypt_key`` and ``cookie_secret`` (hex) are the secrets z2jh keeps
    in the hub Secret (new ones if not given). Returns the path of ``jupyterhub_config.py``."""
    directory = os.path.abspath(os.fspath(directory))
    hub_files, chart_values, source = chart_sources()
    for folder in ("", "secret", "config"):
        os.makedirs(os.path.join(directory, folder), mode=0o700, exist_ok=True)
    defaults = yaml.safe_load(Path(chart_values).read_text()) or {}
    values = local_values(deep_merge(defaults, values))
    # the chart's Secret holds `merge dict .Values`: top-level keys that are null (nameOverride)
    # are not copied, nested ones are
    values = {key: value for key, value in values.items() if value is not None}
    values.setdefault("Chart", {"Name": "jupyterhub", "Version": "4.4.0"})
    values.setdefault("Release", {"Name": "ptjaas", "Namespace": "ptjaas"})

    # the hub Secret: the values and what the chart generates once and keeps
    secret = os.path.join(directory, "secret")
    write_secret_file(os.path.join(secret, "values.yaml"), yaml.safe_dump(values, sort_keys=False))
    write_secret_file(os.path.join(secret, "hub.config.JupyterHub.cookie_secret"),
                      cookie_secret or secrets.token_hex(32))
    write_secret_file(os.path.join(secret, "hub.config.CryptKeeper.keys"), crypt_key or secrets.token_hex(32))
    for key, service in ((values.get("hub") or {}).get("services") or {}).items():
        token = (service or {}).get("apiToken") or secrets.token_hex(32)
        write_secret_file(os.path.join(secret, f"hub.services.{key}.apiToken"), token)
    # the hub ConfigMap's resource names
    names = yaml.safe_load((VENDOR_DIR / "names.yaml").read_text())
    for name, value in names.items():
        with open(os.path.join(directory, "config", name), "w") as f:
            f.write(value)

    copy_chart_files(hub_files, directory, {"jupyterhub_config.py": CHART_CONFIG})
    link_fragments(directory, fragment_dir)
    hub_config = values["hub"]["config"]
    env = {}
    for name, port in ((names["hub"], _port(hub_config["JupyterHub"]["hub_connect_url"], 8081)),
                       (names["proxy-api"], _port(hub_config["ConfigurableHTTPProxy"]["api_url"], 8001)),
                       (names["proxy-public"], str(hub_config["JupyterHub"].get("port", 8000)))):
        key = name.upper().replace("-", "_")
        env[f"{key}_SERVICE_HOST"] = "127.0.0.1"
        env[f"{key}_SERVICE_PORT"] = port
    config = os.path.join(directory, "jupyterhub_config.py")
    with open(config, "w") as f:
        f.write(WRAPPER.format(source=source, env=env, chart_config=CHART_CONFIG,
                               extra_files=[os.path.abspath(p) for p in extra_config_files],
                               fragments=os.path.join(directory, "jupyterhub_config.d")))
    return config


def chart_config(values):
    """The traitlets config z2jh's own hub config makes of ``values`` (the chart's defaults
    under them), loaded in this process, without what a site adds to it (``hub.config``,
    ``hub.extraConfig``, fragments): z2jh's mapping of ``singleuser.*`` onto ``KubeSpawner``, as
    ``ptjaas check-values`` checks it. Its side effects on this process (``sys.path``, the
    environment, tornado's HTTP client choice, what it prints) are undone."""
    from tornado.httpclient import AsyncHTTPClient
    from traitlets.config.loader import PyFileConfigLoader

    values = deep_merge(values, {"hub": {"config": None, "extraConfig": None}})
    saved_path, saved_env = list(sys.path), dict(os.environ)
    saved_client = AsyncHTTPClient._save_configuration()
    with tempfile.TemporaryDirectory() as tmp:
        os.mkdir(os.path.join(tmp, "no-fragments"))
        path = write_z2jh_hub(os.path.join(tmp, "hub"), values, os.path.join(tmp, "no-fragments"))
        sys.modules.pop("z2jh", None)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                return PyFileConfigLoader(os.path.basename(path), os.path.dirname(path)).load_config()
        finally:
            sys.modules.pop("z2jh", None)
            sys.path[:] = saved_path
            os.environ.clear()
            os.environ.update(saved_env)
            AsyncHTTPClient._restore_configuration(saved_client)
