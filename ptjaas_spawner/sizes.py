"""CPU/GPU sizes: quantities, entitlements and the spawner settings a size implies. Pure.

A size is a dict (see ``PtjaasSpawner.sizes``)::

    {"display_name": "Small", "cpu_guarantee": 0.5, "cpu_limit": 2,
     "mem_guarantee": "1Gi", "mem_limit": "4Gi",
     "gpu": 1, "gpu_resource": "nvidia.com/gpu",
     "node_selector": {...}, "tolerations": [...], "groups": [...]}
"""

from decimal import Decimal, InvalidOperation

from .settings_schema import CULL_PROPERTIES, SIZE, keys

DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
CULL_KEYS = tuple(CULL_PROPERTIES)   # per-size / per-image culling keys (settings_schema)
SIZE_KEYS = keys(SIZE)

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"m": Decimal("0.001"), "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9,
            "T": 10**12, "P": 10**15, "E": 10**18}


def parse_quantity(value) -> Decimal:
    """A Kubernetes quantity ("500m", "4Gi", "10G", 2, "1.5") as a Decimal.

    Raises ValueError with the offending value in the message.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, (int, float, Decimal)):
        return Decimal(str(value))
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not a quantity: {value!r}")
    text = value.strip()
    mult = 1
    for suffix, m in _BINARY.items():
        if text.endswith(suffix):
            text, mult = text[: -len(suffix)], m
            break
    else:
        if text[-1] in _DECIMAL:
            text, mult = text[:-1], _DECIMAL[text[-1]]
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a quantity: {value!r}") from None
    if not number.is_finite() or number < 0:
        raise ValueError(f"not a quantity: {value!r}")
    return number * mult


def parse_cpu(value) -> float:
    """CPU cores as a float ("500m" -> 0.5)."""
    return float(parse_quantity(value))


def parse_bytes(value) -> int:
    """Bytes as an int ("4Gi" -> 4294967296, "1G" -> 10**9)."""
    return int(parse_quantity(value))


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
    parts = [f"{_fmt_cpu(size['cpu_limit'])} CPU", f"{_fmt_mem(size['mem_limit'])} memory"]
    gpus = gpu_count(size)
    if gpus:
        parts.append(f"{gpus} GPU" + ("s" if gpus > 1 else ""))
    return ", ".join(parts)


def resources_text(cpu_guarantee, cpu_limit, mem_guarantee, mem_limit, gpus=0) -> str:
    """CPU and memory as guarantee → limit, and GPUs: 'CPU 0.5 → 2, memory 1Gi → 4Gi, 1 GPU'.
    The one way the form and the usage page show resources (numbers or quantities)."""
    parts = [
        f"CPU {_fmt_cpu(cpu_guarantee or 0)} \u2192 {_fmt_cpu(cpu_limit or 0)}",
        f"memory {_fmt_mem(mem_guarantee or 0)} \u2192 {_fmt_mem(mem_limit or 0)}",
    ]
    gpus = int(gpus or 0)
    if gpus:
        parts.append(f"{gpus} GPU" + ("s" if gpus > 1 else ""))
    return ", ".join(parts)


def _fmt_cpu(value) -> str:
    cores = parse_cpu(value)
    return f"{cores:g}"


def _fmt_mem(value) -> str:
    if isinstance(value, str):
        return value
    n = int(value)
    if n == 0:
        return "0"
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        if n and n % _BINARY[suffix] == 0:
            return f"{n // _BINARY[suffix]}{suffix}"
    return str(n)


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
