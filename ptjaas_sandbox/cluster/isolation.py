"""Who a container process runs as, and what it can see: the node agent's securityContext.

When the node agent runs as root, each container runs with its ``runAsUser``/``runAsGroup``
(container level over pod level), ``fsGroup`` and ``supplementalGroups`` as extra groups; a pod
that sets no user runs as the images' user (jovyan, 1000:100), never as root unless it asks for
``runAsUser: 0``. Volume directories are owned by the pod's user and group (``fsGroup`` when set)
and closed to everyone else. Where the machine allows it (root with CAP_SYS_ADMIN) each container
gets private mount and PID namespaces: volumes are bind-mounted at their real mountPath
(``podexec``), so nothing is rewritten and other pods' files and processes are out of sight.

When not root, containers run as this user with mountPaths rewritten to local directories, as
before; that is said once in the log.
"""

import json
import logging
import os
import sys
from dataclasses import dataclass

from . import podexec
from .containers import ContainerError

log = logging.getLogger("ptjaas.cluster")

# the user of Jupyter Docker Stacks images (jovyan, group users): what an image without USER runs as here
DEFAULT_UID = 1000
DEFAULT_GID = 100


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: tuple
    no_new_privs: bool


def identity(pod, container):
    """The uid, gid and extra groups a container runs as (pure). Raises ContainerError where the
    pod's own rules forbid it (runAsNonRoot with uid 0), as the kubelet does."""
    pod_sc = pod["spec"].get("securityContext") or {}
    sc = container.get("securityContext") or {}

    def pick(key):
        value = sc.get(key)
        return pod_sc.get(key) if value is None else value

    uid = pick("runAsUser")
    gid = pick("runAsGroup")
    uid = DEFAULT_UID if uid is None else int(uid)
    gid = (DEFAULT_GID if uid == DEFAULT_UID else uid) if gid is None else int(gid)
    if pick("runAsNonRoot") and uid == 0:
        raise ContainerError(f"container's runAsUser breaks non-root policy (pod: \"{pod['metadata']['name']}"
                             f"_{pod['metadata']['namespace']}({pod['metadata']['uid']})\", container: {container['name']})")
    groups = []
    for g in ([pod_sc.get("fsGroup")] if pod_sc.get("fsGroup") is not None else []) + list(pod_sc.get("supplementalGroups") or []):
        if int(g) not in groups and int(g) != gid:
            groups.append(int(g))
    return Identity(uid, gid, tuple(groups), sc.get("allowPrivilegeEscalation") is False)


def volume_owner(pod):
    """(uid, gid) owning the pod's writable volumes: its user, and fsGroup when set."""
    pod_sc = pod["spec"].get("securityContext") or {}
    uid = pod_sc.get("runAsUser")
    uid = DEFAULT_UID if uid is None else int(uid)
    gid = pod_sc.get("fsGroup", pod_sc.get("runAsGroup"))
    gid = (DEFAULT_GID if uid == DEFAULT_UID else uid) if gid is None else int(gid)
    return uid, gid, pod_sc.get("fsGroup") is not None


class NodeIsolation:
    """What this node can enforce, decided once at start."""

    def __init__(self, force=None):
        self.root = os.geteuid() == 0
        if force is not None:
            self.namespaces = self.root and force
        else:
            self.namespaces = self.root and podexec.namespaces_work()
        if not self.root:
            log.warning("the node agent is not root: pods run as %s (uid %d), whatever their securityContext "
                        "says, and can read each other's volumes", _user_name(), os.geteuid())
        elif not self.namespaces:
            log.warning("no mount namespaces for pods (switched off, or no CAP_SYS_ADMIN here): pods run as their "
                        "securityContext user, with mountPaths rewritten to local paths and volumes reachable "
                        "through the state directory by other pods of the same uid")

    @property
    def rewrite_paths(self):
        return not self.namespaces

    def own_volume(self, path, pod, who=None):
        """Give a writable volume to the pod's user (and fsGroup): 0700/2770, nobody else.
        With ``who`` (an Identity): a directory of one container's own, to that container's user."""
        if not self.root:
            return
        uid, gid, fs_group = (who.uid, who.gid, False) if who is not None else volume_owner(pod)
        st = os.stat(path)
        if (st.st_uid, st.st_gid) != (uid, gid):   # fsGroupChangePolicy OnRootMismatch, as kubelets do
            for base, dirs, files in os.walk(path):
                for name in dirs + files:
                    os.lchown(os.path.join(base, name), uid, gid)
            os.chown(path, uid, gid)
        os.chmod(path, 0o2770 if fs_group else 0o700)

    def traversable(self, *dirs):
        """Without namespaces, the pods' users must reach their volumes through these directories."""
        if self.root and not self.namespaces:
            for d in dirs:
                os.chmod(d, 0o711)
            blocker = podexec._blocker(os.path.realpath(dirs[0]), DEFAULT_UID, {DEFAULT_GID})
            if blocker:
                log.warning("pods cannot reach their volumes: %s is closed to their users; put the cluster's "
                            "state directory where other users may pass through", blocker)

    def command(self, argv, cwd, identity, mounts, host_pid=False):
        """The argv (and cwd) that starts a container: through ``podexec`` when root, else as is.
        ``mounts`` is [(local source, mountPath, read_only)], used with namespaces only;
        ``host_pid`` (the pod's ``hostPID``) keeps the machine's PID namespace."""
        if not self.root:
            return argv, cwd
        if not os.path.isfile(argv[0]):
            raise FileNotFoundError(2, "no such file or directory", argv[0])
        if not self.namespaces:   # no namespace to show it in: the pod's user must reach the runtime itself
            gids = {identity.gid, *identity.groups}
            for runtime in sorted({os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}):
                blocker = podexec._blocker(runtime, identity.uid, gids)
                if blocker:
                    raise PermissionError(13, f"permission denied: uid {identity.uid} cannot reach the Python "
                                              f"environment {runtime} ({blocker} is closed to it)", argv[0])
        spec = {"argv": argv, "cwd": cwd, "uid": identity.uid, "gid": identity.gid, "groups": list(identity.groups),
                "no_new_privs": identity.no_new_privs, "namespaces": self.namespaces,
                "pid_namespace": not host_pid,
                "mounts": [list(m) for m in mounts] if self.namespaces else [],
                "runtime": sorted({os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}),
                "parent": os.getpid()}
        # -S: podexec needs the standard library only (no site: ~10 ms less per container)
        return [sys.executable, "-I", "-S", podexec.__file__, json.dumps(spec)], "/"


def _user_name():
    try:
        import pwd
        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return "this user"
