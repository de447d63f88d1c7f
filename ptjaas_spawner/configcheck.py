"""Validation of the admin's spawner config. Pure: raises ConfigError naming the setting.

Used by the ``@validate`` handlers of ``PtjaasSpawner`` and by the start-up check that makes
the hub refuse to start on a bad catalog.
"""

from . import settings_schema
from .catalog import IMAGE_KEYS, VERSION_KEYS
from .quantity import parse_bytes, parse_cpu
from .settings_schema import CULL_KEYS, SHARED_VOLUME, keys
from .sizes import SIZE_KEYS

PREFIX = "c.PtjaasSpawner"
SHARED_KEYS = keys(SHARED_VOLUME)
ACCESS_MODES = frozenset(settings_schema.ACCESS_MODES)


class ConfigError(ValueError):
    """An invalid admin setting; the message starts with the setting's name."""


def _where(trait, *keys):
    return f"{PREFIX}.{trait}" + "".join(f"[{k!r}]" for k in keys)


def _fail(where, msg):
    raise ConfigError(f"{where}: {msg}")


def _check_groups(where, value):
    if value is None:
        return
    if not isinstance(value, (list, tuple)) or not all(isinstance(g, str) for g in value):
        _fail(where + "['groups']", f"must be a list of group names, not {value!r}")


def _check_cull(where, entry):
    for key in CULL_KEYS:
        if key in entry and entry[key] is not None:
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                _fail(f"{where}[{key!r}]", f"must be a number of seconds >= 0, not {value!r}")


def _check_keys(where, entry, allowed, what):
    if not isinstance(entry, dict):
        _fail(where, f"must be a dict, not {type(entry).__name__}")
    unknown = sorted(set(entry) - allowed)
    if unknown:
        _fail(
            where,
            f"unknown key(s) {', '.join(map(repr, unknown))} in {what}; "
            f"allowed: {', '.join(sorted(allowed))}",
        )


def check_sizes(sizes) -> None:
    if not isinstance(sizes, dict):
        _fail(_where("sizes"), "must be a dict of size key -> size")
    for key, size in sizes.items():
        where = _where("sizes", key)
        _check_keys(where, size, SIZE_KEYS, "a size")
        for name, parse in (
            ("cpu_guarantee", parse_cpu),
            ("cpu_limit", parse_cpu),
            ("mem_guarantee", parse_bytes),
            ("mem_limit", parse_bytes),
        ):
            if size.get(name) in (None, ""):
                _fail(where, f"a size needs {name}")
            try:
                parse(size[name])
            except ValueError as e:
                _fail(f"{where}[{name!r}]", str(e))
        if parse_cpu(size["cpu_guarantee"]) > parse_cpu(size["cpu_limit"]):
            _fail(where, "cpu_guarantee is bigger than cpu_limit")
        if parse_bytes(size["mem_guarantee"]) > parse_bytes(size["mem_limit"]):
            _fail(where, "mem_guarantee is bigger than mem_limit")
        gpu = size.get("gpu", 0)
        if gpu is None:
            gpu = 0
        if isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 0:
            _fail(f"{where}['gpu']", f"must be a whole number of GPUs >= 0, not {gpu!r}")
        if gpu and "gpu_resource" in size and not size["gpu_resource"]:
            _fail(where, "a GPU size needs gpu_resource (e.g. 'nvidia.com/gpu')")
        if "gpu_resource" in size and size["gpu_resource"] and not isinstance(size["gpu_resource"], str):
            _fail(f"{where}['gpu_resource']", "must be a resource name string")
        ns = size.get("node_selector")
        if ns is not None and not (
            isinstance(ns, dict) and all(isinstance(v, str) for v in ns.values())
        ):
            _fail(f"{where}['node_selector']", "must be a dict of label -> string value")
        tol = size.get("tolerations")
        if tol is not None and not (isinstance(tol, list) and all(isinstance(t, dict) for t in tol)):
            _fail(f"{where}['tolerations']", "must be a list of Kubernetes toleration dicts")
        _check_groups(where, size.get("groups"))
        _check_cull(where, size)


def check_images(images, sizes=None) -> None:
    if not isinstance(images, dict):
        _fail(_where("images"), "must be a dict of image key -> image")
    for key, image in images.items():
        where = _where("images", key)
        _check_keys(where, image, IMAGE_KEYS, "an image")
        versions = image.get("versions")
        if not versions or not isinstance(versions, dict):
            _fail(where, "an image needs at least one version in 'versions'")
        defaults = []
        for vkey, version in versions.items():
            vwhere = f"{where}['versions'][{vkey!r}]"
            _check_keys(vwhere, version, VERSION_KEYS, "a version")
            ref = version.get("image")
            if not ref or not isinstance(ref, str) or any(c.isspace() for c in ref):
                _fail(vwhere, "a version needs 'image' (a tag or digest reference)")
            if version.get("default"):
                defaults.append(vkey)
        if len(defaults) > 1:
            _fail(where, f"two or more default versions: {', '.join(map(repr, defaults))}")
        restrict = image.get("sizes")
        if restrict is not None:
            if not isinstance(restrict, (list, tuple)) or not restrict:
                _fail(f"{where}['sizes']", "must be a non-empty list of size keys")
            if sizes is not None:
                unknown = [s for s in restrict if s not in sizes]
                if unknown:
                    _fail(
                        f"{where}['sizes']",
                        f"unknown size(s) {', '.join(map(repr, unknown))}; "
                        f"sizes are: {', '.join(map(repr, sizes))}",
                    )
        _check_groups(where, image.get("groups"))
        _check_cull(where, image)


def check_home(size, size_by_group, access_modes, mount_path) -> None:
    try:
        parse_bytes(size)
    except ValueError as e:
        _fail(_where("home_volume_size"), str(e))
    if not isinstance(size_by_group, dict):
        _fail(_where("home_volume_size_by_group"), "must be a dict of group -> size")
    for group, gsize in size_by_group.items():
        try:
            parse_bytes(gsize)
        except ValueError as e:
            _fail(_where("home_volume_size_by_group", group), str(e))
    bad = [m for m in access_modes if m not in ACCESS_MODES]
    if not access_modes or bad:
        _fail(
            _where("home_volume_access_modes"),
            f"must be a non-empty list of {', '.join(sorted(ACCESS_MODES))}; got {list(access_modes)!r}",
        )
    if not str(mount_path).startswith("/"):
        _fail(_where("home_mount_path"), f"must be an absolute path, not {mount_path!r}")


def check_shared_volumes(shared_volumes, home_mount_path=None) -> None:
    if not isinstance(shared_volumes, (list, tuple)):
        _fail(_where("shared_volumes"), "must be a list of {claim, mount_path, groups?, read_only?}")
    seen = set()
    for i, vol in enumerate(shared_volumes):
        where = f"{PREFIX}.shared_volumes[{i}]"
        _check_keys(where, vol, SHARED_KEYS, "a shared volume")
        if not vol.get("claim") or not isinstance(vol["claim"], str):
            _fail(where, "a shared volume needs 'claim' (the name of an existing claim)")
        path = vol.get("mount_path")
        if not path or not isinstance(path, str) or not path.startswith("/"):
            _fail(where, "a shared volume needs an absolute 'mount_path'")
        if path in seen or path == home_mount_path:
            _fail(where, f"mount_path {path!r} is used twice")
        seen.add(path)
        _check_groups(where, vol.get("groups"))


def check_all(images, sizes, home_volume_size="10Gi", home_volume_size_by_group=None,
              home_volume_access_modes=("ReadWriteOnce",), home_mount_path="/home/jovyan",
              shared_volumes=()) -> None:
    """Check the whole spawner config; raise ConfigError on the first problem."""
    check_sizes(sizes)
    check_images(images, sizes)
    check_home(home_volume_size, home_volume_size_by_group or {}, home_volume_access_modes, home_mount_path)
    check_shared_volumes(shared_volumes, home_mount_path)
