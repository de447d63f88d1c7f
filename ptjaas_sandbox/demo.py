"""What ``ptjaas demo`` runs: a real JupyterHub with the ptjaas spawner on the embedded cluster
(or the current kubeconfig context), a development login and a small catalog."""

import json
import pprint
import os

from .localhub import local_hub_config

DEMO_PASSWORD = "ptjaas"
DEMO_ADMIN = "admin"

# A small catalog that shows every feature: two images, versions (one deprecated), CPU and GPU
# sizes (the embedded cluster's node has 4 virtual GPUs), a GPU-only CUDA image and a group-only size.
DEMO_IMAGES = {
    "scipy": {
        "display_name": "Scientific Python",
        "description": "NumPy, SciPy, pandas, Matplotlib (Jupyter Docker Stacks scipy-notebook)",
        "versions": {
            "2025.11": {"image": "quay.io/jupyter/scipy-notebook:2025-11-24", "label": "November 2025",
                        "notes": "Python 3.12, JupyterLab 4.4", "default": True},
            "2025.05": {"image": "quay.io/jupyter/scipy-notebook:2025-05-19", "label": "May 2025",
                        "notes": "Python 3.12, JupyterLab 4.3",
                        "deprecated": "Replaced by 2025.11; it will be removed in January."},
        },
    },
    "pytorch-cuda": {
        "display_name": "PyTorch (CUDA)",
        "description": "PyTorch with CUDA 12 (Jupyter Docker Stacks pytorch-notebook, cuda12 variant)",
        "versions": {
            "2025.11": {"image": "quay.io/jupyter/pytorch-notebook:cuda12-2025-11-24", "label": "November 2025",
                        "notes": "PyTorch 2.9, CUDA 12.8", "default": True},
        },
        "sizes": ["gpu-1", "gpu-2"],
    },
}

DEMO_SIZES = {
    "cpu-small": {"display_name": "Small", "description": "For exploring data and writing code", "cpu_guarantee": 0.5, "cpu_limit": 1,
                  "mem_guarantee": "1Gi", "mem_limit": "2Gi"},
    "cpu-large": {"display_name": "Large", "description": "For heavier pandas and scikit-learn work", "cpu_guarantee": 2, "cpu_limit": 4,
                  "mem_guarantee": "8Gi", "mem_limit": "16Gi"},
    "gpu-1": {"display_name": "1 GPU", "description": "For training models; culled after 30 idle minutes", "cpu_guarantee": 2, "cpu_limit": 4,
              "mem_guarantee": "8Gi", "mem_limit": "16Gi", "gpu": 1, "gpu_resource": "nvidia.com/gpu",
              "cull_idle_timeout": 1800},
    "gpu-2": {"display_name": "2 GPUs", "description": "Team vision only; culled after 30 idle minutes",
              "cpu_guarantee": 4, "cpu_limit": 8, "mem_guarantee": "16Gi", "mem_limit": "32Gi", "gpu": 2,
              "gpu_resource": "nvidia.com/gpu", "groups": ["vision"], "cull_idle_timeout": 1800},
}


def demo_config(*, data_dir, port=8000, hub_port=None, proxy_api_port=None, namespace="default",
                extra_config=None, ip="127.0.0.1", oidc=False, snapshot_classes=None):
    """The demo hub's jupyterhub_config.py text. ``snapshot_classes``: StorageClass ->
    VolumeSnapshotClass (home snapshots on; the embedded cluster has one for its class)."""
    ports = stable_ports(data_dir)
    hub_port = hub_port or ports["hub"]
    proxy_api_port = proxy_api_port or ports["proxy_api"]
    text = local_hub_config(ip=ip, port=port, hub_port=hub_port, proxy_api_port=proxy_api_port, data_dir=data_dir,
                            namespace=namespace, spawner_class="ptjaas", authenticator_class="dummy")
    text += f"""
# --- ptjaas demo ---
c.DummyAuthenticator.password = {DEMO_PASSWORD!r}
c.Authenticator.admin_users = {{{DEMO_ADMIN!r}}}
c.JupyterHub.load_groups = {{"vision": {{"users": ["alice"]}}}}
c.JupyterHub.allow_named_servers = True
c.PtjaasSpawner.images = {pprint.pformat(DEMO_IMAGES, sort_dicts=False)}
c.PtjaasSpawner.sizes = {pprint.pformat(DEMO_SIZES, sort_dicts=False)}
c.PtjaasSpawner.home_volume_size = "10Gi"
# quotas: everyone may run 2 servers and hold 1 GPU; team vision shares 4 GPUs, 2 per member
c.PtjaasSpawner.quota_default = {{"servers": 2, "gpus": 1}}
c.PtjaasSpawner.quota_groups = {{"vision": {{"gpus": 4, "per_user": {{"gpus": 2}}}}}}
# home snapshots (page /hub/ptjaas/snapshots and the home page); the audit record at /hub/ptjaas/audit
c.PtjaasSpawner.snapshot_classes = {dict(snapshot_classes or {})!r}
"""
    # the admin pages (usage, audit) and the snapshot page (PtjaasAuthenticator registers the
    # handlers by itself), and the home page template that lists the user's snapshots
    text += f"from ptjaas_spawner.pages import install\ninstall(c, handlers={not oidc})\n"
    if extra_config:
        text += f"\n# --- the admin's extra config (--config), loaded last ---\nload_subconfig({os.path.abspath(extra_config)!r})\n"
    return text


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
        with open(path, "w") as f:
            json.dump(ports, f)
        return ports
