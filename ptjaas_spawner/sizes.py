"""CPU/GPU sizes: quantities, entitlements and the spawner settings a size implies. Pure.

A size is a dict (see ``PtjaasSpawner.sizes``)::

    {"display_name": "Small", "cpu_guarantee": 0.5, "cpu_limit": 2,
     "mem_guarantee": "1Gi", "mem_limit": "4Gi",
     "gpu": 1, "gpu_resource": "nvidia.com/gpu",
     "node_selector": {...}, "tolerations": [...], "groups": [...]}
"""

from .quantity import human_quantity, parse_bytes, parse_cpu
from .settings_schema import SIZE, keys

DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
SIZE_KEYS = keys(SIZE)

def groups_allow(entry: dict, user_groups) -> bool:
    """True if ``entry`` has no ``groups`` restriction or shares a group with the user."""
    allowed = entry.get("groups")
    if not allowed:
        return True
    return bool(set(allowed) & set(user_groups or ()))


def allowed_sizes(sizes: dict, user_groups) -> list:
    """Size keys the user's groups entitle them to, in the admin's order."""
    return [key for key, size in sizes.items() if groups_allow(size, user_groups)]


def gpu_count(size: dict) -> int:
    return int(size.get("gpu") or 0)


def size_summary(size: dict) -> str:
    """One line for the form: '2 CPU, 4Gi memory, 1 GPU'."""
    parts = [f"{human_quantity(size['cpu_limit'], 'cpu')} CPU",
             f"{human_quantity(size['mem_limit'], 'memory')} memory"]
    gpus = gpu_count(size)
    if gpus:
        parts.append(f"{gpus} GPU" + ("s" if gpus > 1 else ""))
    return ", ".join(parts)


def resources_text(cpu_guarantee, cpu_limit, mem_guarantee, mem_limit, gpus=0) -> str:
    """CPU and memory as guarantee → limit, and GPUs: 'CPU 0.5 → 2, memory 1Gi → 4Gi, 1 GPU'.
    The one way the form and the usage page show resources (numbers or quantities)."""
    parts = [
        f"CPU {human_quantity(cpu_guarantee or 0, 'cpu')} \u2192 {human_quantity(cpu_limit or 0, 'cpu')}",
        f"memory {human_quantity(mem_guarantee or 0, 'memory')} \u2192 {human_quantity(mem_limit or 0, 'memory')}",
    ]
    gpus = int(gpus or 0)
    if gpus:
        parts.append(f"{gpus} GPU" + ("s" if gpus > 1 else ""))
    return ", ".join(parts)


def spawner_settings(size: dict) -> dict:
    """KubeSpawner trait values for a size: resources, node selector, tolerations.

    GPUs are an extended resource: only the limit is set (Kubernetes makes the request equal).
    """
    settings = {
        "cpu_guarantee": parse_cpu(size["cpu_guarantee"]),
        "cpu_limit": parse_cpu(size["cpu_limit"]),
        "mem_guarantee": parse_bytes(size["mem_guarantee"]),
        "mem_limit": parse_bytes(size["mem_limit"]),
        "extra_resource_limits": {},
        "node_selector": dict(size.get("node_selector") or {}),
        "tolerations": list(size.get("tolerations") or []),
    }
    gpus = gpu_count(size)
    if gpus:
        resource = size.get("gpu_resource") or DEFAULT_GPU_RESOURCE
        settings["extra_resource_limits"] = {resource: str(gpus)}
    return settings
