"""Validation of the admin's spawner config. Pure: raises ConfigError naming the setting.

Types, keys and quantities are ``settings_schema.SPAWNER``'s, checked by ``jsonschema``
(``schemacheck``); only the rules between fields are written here (guarantee <= limit, a GPU
size's resource, one default version, an image's sizes exist, no mount path used twice).
Used by the ``@validate`` handlers of ``PtjaasSpawner`` and by the start-up check that makes
the hub refuse to start on a bad catalog.
"""

import functools

from . import connections, schemacheck
from .errors import SettingError
from .quantity import parse_bytes, parse_cpu
from .remembered import Remembered, settings_key
from .settings_schema import SPAWNER

PREFIX = "c.PtjaasSpawner"


class ConfigError(SettingError):
    """An invalid spawner setting (``c.PtjaasSpawner.<name>``); the message starts with its name."""


def _where(trait, *keys):
    return f"{PREFIX}.{trait}" + "".join(f"[{k!r}]" for k in keys)


def _fail(where, msg):
    raise ConfigError(f"{where}: {msg}")


_PASSED = Remembered(64)  # settings that passed the schema


def _check_schema(**settings) -> None:
    """The settings against ``settings_schema.SPAWNER`` (types, keys, quantities); the first
    problem raised, naming the setting. Settings that passed once pass without a second
    validation: every spawner (one per user in a hub process) checks the same catalog."""
    key = settings_key(settings)
    if _PASSED.get(key):
        return
    found = schemacheck.problems(settings, SPAWNER)
    if found:
        path, message = found[0]
        _fail(_where(*path), message)
    _PASSED.add(key)


def _remembered(check):
    """``check`` run once per arguments that pass (``remembered.settings_key``): every
    new spawner (one per user in a hub process) checks the same catalog, and the rules between
    fields parse every size's quantities again (~0.5 ms per spawner under the profiler).
    A failing check is not remembered: it raises each time."""
    passed = Remembered(64)

    @functools.wraps(check)
    def remembered(*args, **kwargs) -> None:
        key = settings_key(args, kwargs)
        if passed.get(key):
            return
        check(*args, **kwargs)
        passed.add(key)

    return remembered


@_remembered
def check_sizes(sizes) -> None:
    _check_schema(sizes=sizes)
    for key, size in (sizes or {}).items():
        where = _where("sizes", key)
        if parse_cpu(size["cpu_guarantee"]) > parse_cpu(size["cpu_limit"]):
            _fail(where, "cpu_guarantee is bigger than cpu_limit")
        if parse_bytes(size["mem_guarantee"]) > parse_bytes(size["mem_limit"]):
            _fail(where, "mem_guarantee is bigger than mem_limit")
        if size.get("gpu") and "gpu_resource" in size and not size["gpu_resource"]:
            _fail(where, "a GPU size needs gpu_resource (e.g. 'nvidia.com/gpu')")


@_remembered
def check_images(images, sizes=None) -> None:
    _check_schema(images=images)
    for key, image in (images or {}).items():
        where = _where("images", key)
        defaults = [vkey for vkey, version in image["versions"].items() if version.get("default")]
        if len(defaults) > 1:
            _fail(where, f"two or more default versions: {', '.join(map(repr, defaults))}")
        restrict = image.get("sizes")
        if restrict is not None and sizes is not None:
            unknown = [s for s in restrict if s not in sizes]
            if unknown:
                _fail(
                    f"{where}['sizes']",
                    f"unknown size(s) {', '.join(map(repr, unknown))}; "
                    f"sizes are: {', '.join(map(repr, sizes))}",
                )


def check_home(size, size_by_group, access_modes, mount_path) -> None:
    _check_schema(home_volume_size=size, home_volume_size_by_group=size_by_group,
                  home_volume_access_modes=access_modes, home_mount_path=mount_path)


@_remembered
def check_shared_volumes(shared_volumes, home_mount_path=None) -> None:
    _check_schema(shared_volumes=shared_volumes)
    seen = set()
    for i, vol in enumerate(shared_volumes or ()):
        path = vol["mount_path"]
        if path in seen or path == home_mount_path:
            _fail(_where("shared_volumes", i), f"mount_path {path!r} is used twice")
        seen.add(path)


@_remembered
def check_all(images, sizes, home_volume_size="10Gi", home_volume_size_by_group=None,
              home_volume_access_modes=("ReadWriteOnce",), home_mount_path="/home/jovyan",
              shared_volumes=(), custom_images=None, data_connections=None) -> None:
    """Check the whole spawner config; raise ConfigError on the first problem."""
    check_sizes(sizes)
    check_images(images, sizes)
    check_home(home_volume_size, home_volume_size_by_group or {}, home_volume_access_modes, home_mount_path)
    check_shared_volumes(shared_volumes, home_mount_path)
    check_environments(custom_images, data_connections, sizes)


@_remembered
def check_environments(custom_images, data_connections, sizes=None) -> None:
    """Custom images and data connections: their schema, the sizes named, and what a connection gives."""
    _check_schema(custom_images=custom_images or None, data_connections=data_connections or None)
    unknown = [s for s in (custom_images or {}).get("sizes") or () if sizes is not None and s not in sizes]
    if unknown:
        _fail(_where("custom_images", "sizes"), f"unknown size(s) {', '.join(map(repr, unknown))}")
    for where, problem in connections.check(data_connections):
        _fail(f"{PREFIX}.{where}", problem)
