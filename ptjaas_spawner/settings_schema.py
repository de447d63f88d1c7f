"""ptjaas's own settings, written once: the entries of the catalog, sizes and shared volumes,
and the culler's Helm values. Pure data (JSON Schema) plus small readers.

Everything that needs to know these keys derives them from here: the spawner's checks
(``configcheck``, run at first spawn and at hub start-up by fragment 99), the culler's policy
(``culler.policy``) and its Helm values reader (``culler.config.culler_from_values``, used by
fragment 50), ``ptjaas check-values``, and the configuration reference in the docs (the
``ptjaas-values`` directive renders these tables with their descriptions).

Each schema is a JSON Schema (draft 2020-12, checked by ``jsonschema`` in ``schemacheck``): an
``object`` with ``properties``; a property has a ``type``, a ``description`` for the docs, and
where it applies ``required``/``default``/``minimum``/``format`` and, for the culler's values,
the culler ``option`` it becomes (``None``: read by the fragment itself; absent: the key in snake
case). Three annotations of ours word the messages (``schemacheck``): an entry's ``noun`` ("a
size"), a property's ``problem`` (what its value must be: "must be a whole number of GPUs >= 0")
and ``needs`` (any problem with it is "<noun> needs <needs>", named on the entry). Formats
``cpu`` and ``bytes`` are Kubernetes quantities (``quantity.parse_cpu`` / ``parse_bytes``).
"""

import re

from .interfaces import COLLABORATION_SCHEMA, INTERFACE_SCHEMA, LAUNCHERS_SCHEMA

SECONDS = {"type": "number", "minimum": 0}
CATALOG_SECONDS = dict(SECONDS, problem="must be a number of seconds >= 0")

#: per-size and per-image culling keys (seconds); the culler reads them from the catalog
CULL_PROPERTIES = {
    "cull_idle_timeout": dict(CATALOG_SECONDS, description=(
        "Stop a server of this size/image after this many seconds without activity (instead of "
        "`cull.timeout`; when its size and its image both set one, the shorter applies; 0: never).")),
    "cull_max_age": dict(CATALOG_SECONDS, description=(
        "Stop a server of this size/image once it is this many seconds old, even if active.")),
    "kernel_idle_timeout": dict(CATALOG_SECONDS, description=(
        "Shut down kernels idle this many seconds inside a running server (the server stays).")),
}

#: the culling keys a size or an image may set
CULL_KEYS = tuple(CULL_PROPERTIES)

#: the two keys an entry shown in the form has
SHOWN = {
    "display_name": {"type": "string", "description": "Shown in the spawn form."},
    "description": {"type": "string", "description": "One line under the name in the form."},
}


def entry(title, noun, required, properties):
    """The schema of one entry of a ptjaas setting: an object with exactly these keys."""
    return {"type": "object", "title": title, "noun": noun, "additionalProperties": False,
            "required": required, "properties": properties}


GROUPS = {"type": "array", "items": {"type": "string"}, "problem": "must be a list of group names",
          "description": "Only members of these groups see and may use it (absent: everyone)."}

SIZE = entry(
    "a size (`hub.config.PtjaasSpawner.sizes.<key>`)", "a size",
    required=["cpu_guarantee", "cpu_limit", "mem_guarantee", "mem_limit"],
    properties={
        **SHOWN,
        "cpu_guarantee": {"type": ["number", "string"], "format": "cpu",
                          "description": "CPU request (cores or a quantity such as `500m`)."},
        "cpu_limit": {"type": ["number", "string"], "format": "cpu", "description": "CPU limit; at least `cpu_guarantee`."},
        "mem_guarantee": {"type": ["number", "string"], "format": "bytes",
                          "description": "Memory request (bytes or a quantity such as `4Gi`)."},
        "mem_limit": {"type": ["number", "string"], "format": "bytes",
                      "description": "Memory limit; at least `mem_guarantee`."},
        "gpu": {"type": "integer", "minimum": 0, "default": 0, "problem": "must be a whole number of GPUs >= 0",
                "description": "GPUs per server of this size."},
        "gpu_resource": {"type": "string", "default": "nvidia.com/gpu", "problem": "must be a resource name string",
                         "description": "The extended resource the GPUs are requested as."},
        "node_selector": {"type": "object", "additionalProperties": {"type": "string"},
                          "problem": "must be a dict of label -> string value",
                          "description": "Node labels a server of this size must run on."},
        "tolerations": {"type": "array", "items": {"type": "object"},
                        "problem": "must be a list of Kubernetes toleration dicts",
                        "description": "Kubernetes tolerations (e.g. for tainted GPU nodes)."},
        "groups": GROUPS,
        **CULL_PROPERTIES,
    },
)

VERSION = entry(
    "a version (`hub.config.PtjaasSpawner.images.<key>.versions.<version>`)", "a version",
    required=["image"],
    properties={
        "image": {"type": "string", "pattern": r"^\S+$", "needs": "'image' (a tag or digest reference)",
                  "description": "The image reference: a tag or a digest."},
        "label": {"type": "string", "description": "Shown in the version menu."},
        "notes": {"type": "string", "description": "Release notes shown with the version."},
        "default": {"type": "boolean", "description": "The version preselected (at most one per image)."},
        "deprecated": {"type": "string", "description": "A message shown to whoever picks this version."},
        "interface": INTERFACE_SCHEMA,
        "launchers": LAUNCHERS_SCHEMA,
        "collaboration": COLLABORATION_SCHEMA,
    },
)

IMAGE = entry(
    "an image (`hub.config.PtjaasSpawner.images.<key>`)", "an image",
    required=["versions"],
    properties={
        **SHOWN,
        "versions": {"type": "object", "minProperties": 1, "additionalProperties": VERSION,
                     "needs": "at least one version in 'versions'", "description": "Version key -> version."},
        "sizes": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                  "problem": "must be a non-empty list of size keys",
                  "description": "Only these sizes may run it (a CUDA image: the GPU sizes)."},
        "groups": GROUPS,
        "interface": INTERFACE_SCHEMA,
        "launchers": LAUNCHERS_SCHEMA,
        "collaboration": COLLABORATION_SCHEMA,
        **CULL_PROPERTIES,
    },
)

SHARED_VOLUME = entry(
    "a shared volume (`hub.config.PtjaasSpawner.shared_volumes[i]`)", "a shared volume",
    required=["claim", "mount_path"],
    properties={
        "claim": {"type": "string", "minLength": 1, "needs": "'claim' (the name of an existing claim)",
                  "description": "An existing PersistentVolumeClaim in the users' namespace."},
        "mount_path": {"type": "string", "pattern": "^/", "needs": "an absolute 'mount_path'",
                       "description": "Absolute path it is mounted at."},
        "groups": GROUPS,
        "read_only": {"type": "boolean", "description": "Mount it read-only."},
    },
)

ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")

#: the spawner's catalog settings (``c.PtjaasSpawner.<name>``), checked together at start-up
#: (``configcheck``); the cross-field rules (guarantee <= limit, one default version, ...) are
#: ``configcheck``'s
#: data connections (``connections``): a Secret named, never read by the hub
CONNECTION_NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"   # a connection key and a Secret's name (DNS-1123 label)
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
SECRET_KEY = r"^[-._a-zA-Z0-9]{1,253}$"
IDENTITY_TOKEN = {
    "type": "object", "additionalProperties": False, "required": ["audience"],
    "title": "a workload identity token (`data_connections.<key>.identity_token`)",
    "properties": {
        "audience": {"type": "string", "minLength": 1, "maxLength": 200,
                     "description": "The token's audience: who accepts it (`sts.amazonaws.com`, a store's URL)."},
        "expiration_seconds": {"type": "integer", "minimum": 600, "maximum": 86400,
                               "description": "Its lifetime; the kubelet renews it before it ends (default 3600)."},
        "mount_path": {"type": "string", "pattern": "^/[A-Za-z0-9._/-]{1,200}$",
                       "description": "Directory of the `token` file (default `/var/run/secrets/ptjaas/<key>`)."},
        "path_env": {"type": "string", "pattern": ENV_NAME,
                     "description": "An environment variable holding the token file's path "
                                    "(`AWS_WEB_IDENTITY_TOKEN_FILE`, ...)."},
    },
}
CONNECTION = {
    "type": "object", "additionalProperties": False,
    "title": "a data connection (`hub.config.PtjaasSpawner.data_connections.<key>`)",
    "properties": {
        "display_name": {"type": "string", "maxLength": 100, "description": "Shown in the spawn form."},
        "description": {"type": "string", "maxLength": 300, "description": "One line under the name in the form."},
        "groups": {"type": "array", "items": {"type": "string"},
                   "description": "Only members of these groups may use it (absent: everyone)."},
        "secret": {"type": "string", "pattern": CONNECTION_NAME, "description": "The Secret, in the server's namespace."},
        "identity_token": IDENTITY_TOKEN,
        "env_from": {"type": "boolean", "description": "Every key of the Secret as an environment variable."},
        "env": {"type": "object", "additionalProperties": {"type": "string", "pattern": SECRET_KEY},
                "propertyNames": {"pattern": ENV_NAME},
                "description": "Environment variable -> key of the Secret."},
        "files_at": {"type": "string", "pattern": "^/[A-Za-z0-9._/-]{1,200}$",
                     "description": "The Secret's keys as read-only files in this directory."},
    },
}
CONNECTIONS = {"type": "object", "propertyNames": {"pattern": CONNECTION_NAME}, "additionalProperties": CONNECTION}

#: images of a user's own (``customimages``)
CUSTOM_IMAGES = {
    "type": "object", "additionalProperties": False, "required": ["allowed"],
    "title": "custom images (`hub.config.PtjaasSpawner.custom_images`)",
    "properties": {
        "groups": {"type": "array", "items": {"type": "string"},
                   "description": "Members of these groups may run an image of their own ([]: everyone; absent: nobody)."},
        "allowed": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1, "maxLength": 300},
                    "description": "Glob patterns of the image references allowed (`registry.example.com/team/*`)."},
        "sizes": {"type": "array", "items": {"type": "string"},
                  "description": "Only these sizes may run a custom image (absent: the user's sizes)."},
        "pull_secret": {"type": "string", "description": "An image pull Secret in the server's namespace."},
        "resolve_digest": {"type": "boolean", "description": (
            "Ask the image's registry for the tag's digest at each start and run that digest "
            "(registrydigest.py); an unreachable registry: the tag runs, the audit says why.")},
        "registry_timeout": {"type": "number", "minimum": 0.5, "maximum": 30,
                             "description": "Seconds the start waits for the registry's answer (default 5)."},
        "plain_http_registries": {"type": "array", "items": {"type": "string", "maxLength": 260},
                                  "description": "Registries (`host:port`) asked over http, not https."},
    },
}

SPAWNER = {
    "type": "object",
    "title": "the spawner's catalog (`hub.config.PtjaasSpawner`)",
    "properties": {
        "sizes": {"type": "object", "additionalProperties": SIZE, "problem": "must be a dict of size key -> size"},
        "images": {"type": "object", "additionalProperties": IMAGE, "problem": "must be a dict of image key -> image"},
        "home_volume_size": {"format": "bytes"},
        "home_volume_size_by_group": {"type": "object", "additionalProperties": {"format": "bytes"},
                                      "problem": "must be a dict of group -> size"},
        "home_volume_access_modes": {"type": "array", "minItems": 1, "items": {"enum": list(ACCESS_MODES)},
                                     "problem": f"must be a non-empty list of {', '.join(sorted(ACCESS_MODES))}"},
        "home_mount_path": {"type": "string", "pattern": "^/", "problem": "must be an absolute path"},
        "shared_volumes": {"type": "array", "items": SHARED_VOLUME,
                           "problem": "must be a list of {claim, mount_path, groups?, read_only?}"},
        "custom_images": CUSTOM_IMAGES,
        "data_connections": CONNECTIONS,
    },
}

#: ptjaas's culler values: `custom.ptjaas.culler.<key>` -> culler option
CULLER = {
    "type": "object",
    "title": "the culler (`custom.ptjaas.culler`)",
    "additionalProperties": False,
    "properties": {
        "enabled": {"type": "boolean", "default": False, "option": None,
                    "description": "Run ptjaas's culler as a hub-managed service (keep `cull.enabled: false`)."},
        "beforeCullHooks": {"type": "array", "items": {"type": "string"}, "description": "Run before a server is stopped: `snapshot`, `usage` or `module:function`."},
        "afterCullHooks": {"type": "array", "items": {"type": "string"}, "description": "Run after the hub confirmed the stop (same forms)."},
        "hookTimeout": dict(SECONDS, description="Seconds a hook may take (then abandoned, logged)."),
        "hubGoneTimeout": dict(SECONDS, description=(
            "The culler exits once the hub API has not answered this long (default 60; 0 = never).")),
        "usageFile": {"type": "string", "description": "JSON-lines file the `usage` hook appends one record per cull to."},
        "snapshotClass": {"type": "string", "description": "VolumeSnapshotClass of the `snapshot` hook (default: the cluster's)."},
        "snapshotKeep": {"type": "integer", "minimum": 1, "description": "Snapshots kept per home claim by the `snapshot` hook."},
        "snapshotNamespace": {"type": "string", "option": "namespace",
                              "description": "Namespace of the home claims (default: the spawner's)."},
        "prometheusUrl": {"type": "string", "description": (
            "Prometheus scraping NVIDIA's DCGM exporter: GPU servers whose GPUs stayed under "
            "`gpuIdleThreshold` for their size's idle timeout are culled as idle ('' = off).")},
        "gpuIdleQuery": {"type": "string", "description": (
            "PromQL template of one pod's highest GPU utilisation over `$timeout` seconds ($pod required).")},
        "gpuIdleThreshold": {"type": "number", "exclusiveMinimum": 0, "maximum": 100, "description": (
            "GPU utilisation (percent) under which a GPU server counts as idle (default 5).")},
        "prometheusTimeout": dict(SECONDS, description="Seconds a Prometheus query may take (default 10)."),
    },
}

#: z2jh's own `cull.<key>` values, which ptjaas's culler reads with their z2jh meaning
Z2JH_CULL = {
    "type": "object",
    "title": "z2jh's culler values (`cull`), read by ptjaas's culler",
    "properties": {
        "enabled": {"type": "boolean", "option": None,
                    "description": "z2jh's own culler: must stay `false` when ptjaas's runs."},
        "timeout": dict(SECONDS, description="Idle timeout for sizes/images that set none."),
        "every": dict(SECONDS, option="cull_every", description="Seconds between passes (default: half the shortest timeout)."),
        "concurrency": {"type": "integer", "minimum": 0, "description": "Hub API requests in flight at once."},
        "maxAge": dict(SECONDS, description="Maximum server age for sizes/images that set none (0: none)."),
        "users": {"type": "boolean", "option": "cull_users", "description": "Also delete inactive users (their homes stay)."},
        "adminUsers": {"type": "boolean", "option": "cull_admin_users", "description": "With `users`: admins too."},
        "removeNamedServers": {"type": "boolean", "description": "Remove culled named servers instead of only stopping them."},
    },
}

#: the values ptjaas reads, by values path (documented in the config reference)
VALUES = {
    "hub.config.PtjaasSpawner.sizes.<key>": SIZE,
    "hub.config.PtjaasSpawner.images.<key>": IMAGE,
    "hub.config.PtjaasSpawner.images.<key>.versions.<version>": VERSION,
    "hub.config.PtjaasSpawner.shared_volumes[i]": SHARED_VOLUME,
    "custom.ptjaas.culler": CULLER,
    "cull": Z2JH_CULL,
}


def keys(schema):
    """The keys an entry of ``schema`` may have."""
    return frozenset(schema["properties"])


def options(schema):
    """``{values key: culler option}`` for the keys that become a culler option: the key in
    snake case (``maxAge``: ``max_age``) unless its ``option`` says otherwise (``None``: none)."""
    found = {k: p.get("option", re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower()) for k, p in schema["properties"].items()}
    return {k: option for k, option in found.items() if option}
