"""The z2jh chart's own hub config, laid out on this machine as the chart's hub pod mounts it.

z2jh's hub pod runs ``jupyterhub --config /usr/local/etc/jupyterhub/jupyterhub_config.py`` with
the chart's ``files/hub/jupyterhub_config.py`` and ``z2jh.py`` mounted from the hub ConfigMap,
the rendered Helm values (chart defaults merged with the site's files) from the hub Secret's
``values.yaml``, and the Services' ``*_SERVICE_HOST`` / ``*_SERVICE_PORT`` variables Kubernetes
sets. ``write_chart_hub`` renders the chart with the real ``helm template``, takes the Secret
and ConfigMap it renders, and writes them under a directory of this machine; the two chart files
are copied unchanged except for the one path they hard-code (``/usr/local/etc/jupyterhub``,
which becomes that directory). Loading its ``jupyterhub_config.py`` then runs z2jh's real
mapping of Helm values to traits and execs our ``jupyterhub_config.d`` fragments the way the
hub pod does; ``z2jhhub`` runs the same files without helm.
"""

import base64
import os
import subprocess

import yaml

from ptjaas_spawner.z2jhconfig import copy_chart_files, link_fragments

RELEASE = "ptjaas"


def render_hub_objects(chart_dir, values_files, helm="helm", namespace="ptjaas", release=RELEASE):
    """(hub Secret, hub ConfigMap) as ``helm template`` renders them for ``values_files``."""
    argv = [helm, "template", release, os.fspath(chart_dir), "--namespace", namespace,
            "--show-only", "templates/hub/secret.yaml", "--show-only", "templates/hub/configmap.yaml"]
    for path in values_files:
        argv += ["-f", os.fspath(path)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"helm template failed: {out.stderr.strip()}")
    docs = {d["kind"]: d for d in yaml.safe_load_all(out.stdout) if d}
    return docs["Secret"], docs["ConfigMap"]


def write_chart_hub(directory, chart_dir, values_files, fragment_dir, helm="helm", namespace="ptjaas",
                    hub_port=8081, proxy_api_port=8001, proxy_public_port=8000):
    """Lay out the chart's hub config in ``directory``; returns (config file path, environment)
    for loading it (the Services' variables the hub pod gets, ``POD_NAMESPACE`` included)."""
    directory = os.path.abspath(os.fspath(directory))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    secret, configmap = render_hub_objects(chart_dir, values_files, helm=helm, namespace=namespace)
    for folder, files, decode in (("secret", secret.get("data") or {}, True),
                                  ("config", configmap.get("data") or {}, False)):
        os.makedirs(os.path.join(directory, folder), mode=0o700, exist_ok=True)
        for name, value in files.items():
            text = base64.b64decode(value).decode() if decode else value
            with open(os.path.join(directory, folder, name), "w") as f:
                f.write(text)
    copy_chart_files(os.path.join(os.fspath(chart_dir), "files", "hub"), directory)
    link_fragments(directory, fragment_dir)
    env = {"POD_NAMESPACE": namespace}
    names = configmap.get("data") or {}
    for service, port in (("hub", hub_port), ("proxy-api", proxy_api_port), ("proxy-public", proxy_public_port)):
        key = names.get(service, service).upper().replace("-", "_")  # z2jh.get_name_env's variable
        env[f"{key}_SERVICE_HOST"] = "127.0.0.1"
        env[f"{key}_SERVICE_PORT"] = str(port)
    return os.path.join(directory, "jupyterhub_config.py"), env
