"""Who a container process runs as, and what it can see: the node agent's securityContext.

When the node agent runs as root, each container runs with its ``runAsUser``/``runAsGroup``
(container level over pod level), ``fsGroup`` and ``supplementalGroups`` as extra groups; a pod
that sets no user runs as the images' user (jovyan, 1000:100), never as root unless it asks for
``runAsUser: 0``. Volume directories are owned by the pod's user and group (``fsGroup`` when set)
and closed to everyone else. Where the machine allows it (root with CAP_SYS_ADMIN) each container
gets private mount and PID namespaces: volumes are bind-mounted at their real mountPath
(``podexec``), so nothing is rewritten and other pods' files and processes are out of sight.

With namespaces a container sees what a container runtime shows it: the machine's filesystem
read-only but for its volumes, a private tmpfs on /tmp, /var/tmp, /dev/shm and /run (``private_dirs``),
private PID and IPC namespaces; and it keeps the capabilities a runtime gives (containerd's
default set, ``securityContext.capabilities`` add/drop applied, all when ``privileged``), which
matters for a container running as root: ``drop: [ALL]`` leaves it none. Each pod also has a
network namespace of its own (``podnetwork``), reached by the hub and proxy through the node agent.

When not root, or without mount namespaces, containers share this machine's /tmp, /dev/shm and
filesystem and network with each other: the node agent says once, in plain words, that pods are
not isolated.
"""

import json
import logging
import os
import sys
from dataclasses import dataclass

from . import podexec, podnetwork
from .containers import ContainerError
from ptjaas_spawner.quantity import QuantityError, parse_quantity

log = logging.getLogger("ptjaas.cluster")

# the user of Jupyter Docker Stacks images (jovyan, group users): what an image without USER runs as here
DEFAULT_UID = 1000
DEFAULT_GID = 100


# containerd's (and CRI-O's) default capabilities for a container (numbers from linux/capability.h)
CAPABILITY_NUMBERS = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6,
    "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9, "NET_BIND_SERVICE": 10, "NET_BROADCAST": 11,
    "NET_ADMIN": 12, "NET_RAW": 13, "IPC_LOCK": 14, "IPC_OWNER": 15, "SYS_MODULE": 16, "SYS_RAWIO": 17,
    "SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_PACCT": 20, "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23,
    "SYS_RESOURCE": 24, "SYS_TIME": 25, "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28, "AUDIT_WRITE": 29,
    "AUDIT_CONTROL": 30, "SETFCAP": 31, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35,
    "BLOCK_SUSPEND": 36, "AUDIT_READ": 37, "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40}
DEFAULT_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
                        "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE")
# what a container runtime gives each container of its own; /dev/shm at its default size
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run")
DEFAULT_SHM_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: tuple
    no_new_privs: bool
    capabilities: tuple = None   # capability numbers it keeps; None: all (privileged)


def capabilities(container):
    """The capability numbers a container keeps (pure): the runtime's default set with its
    ``securityContext.capabilities`` dropped and added; None (all) when ``privileged``."""
    sc = container.get("securityContext") or {}
    if sc.get("privileged"):
        return None
    caps = sc.get("capabilities") or {}

    def names(key):
        return {str(n).upper().removeprefix("CAP_") for n in caps.get(key) or []}
    dropped, added = names("drop"), names("add")
    kept = set() if "ALL" in dropped else set(DEFAULT_CAPABILITIES) - dropped
    kept |= set(CAPABILITY_NUMBERS) if "ALL" in added else added
    return tuple(sorted(CAPABILITY_NUMBERS[n] for n in kept if n in CAPABILITY_NUMBERS))


def private_dirs(container):
    """[(path, tmpfs size in bytes or None)] (pure): each a tmpfs of the container's own. A tmpfs
    is memory, so one is no larger than the container's memory limit where it has one (its
    ``ephemeral-storage`` limit where that is smaller); /dev/shm is 64 MiB, as a runtime gives."""
    limits = (container.get("resources") or {}).get("limits") or {}
    sizes = []
    for key in ("memory", "ephemeral-storage"):
        try:
            sizes.append(int(parse_quantity(limits[key])))
        except (KeyError, QuantityError, ValueError):
            pass
    cap = min(sizes) if sizes else None
    return [(path, min(DEFAULT_SHM_BYTES, cap or DEFAULT_SHM_BYTES) if path == "/dev/shm" else cap)
            for path in PRIVATE_DIRS]


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
    return Identity(uid, gid, tuple(groups), sc.get("allowPrivilegeEscalation") is False, capabilities(container))


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

    def __init__(self, force=None, network=None):
        self.root = os.geteuid() == 0
        if force is not None:
            self.namespaces = self.root and force
        else:
            self.namespaces = self.root and podexec.namespaces_work()
        # a network namespace per pod (podnetwork.py): with the other namespaces only
        self.network = self.namespaces and (podnetwork.network_namespaces_work() if network is None else network)
        if not self.root:
            log.warning("pods are not isolated from each other: the node agent is not root, so pods run as %s "
                        "(uid %d) whatever their securityContext says, share this machine's /tmp, /dev/shm, "
                        "files and network (each can connect to the others' ports and sees every connection "
                        "of this machine), and can read each other's volumes", _user_name(), os.geteuid())
        elif not self.namespaces:
            log.warning("pods are not isolated from each other: no mount namespaces here (switched off, or no "
                        "CAP_SYS_ADMIN), so pods share this machine's /tmp, /dev/shm, files and network, with "
                        "mountPaths rewritten to local paths and volumes reachable by other pods of the same uid")
        elif not self.network:
            log.warning("pods share this machine's network: no network namespaces here (switched off, or "
                        "refused), so a pod can connect to the others' ports and sees every connection of this "
                        "machine in /proc/net/tcp")

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

    def own_claim(self, path, pod, volumes_dir):
        """A claim's volume goes to the pod's user only where it is one the provisioner made (under
        ``volumes_dir``: never a hostPath PersistentVolume an admin pointed elsewhere, as a kubelet
        never changes a hostPath's owner) and it is new (root's) or already that user's: the first
        pod to use a claim owns it; a pod of another uid mounts it as it is, closed to it."""
        if not self.root:
            return
        real, base = os.path.realpath(path), os.path.realpath(volumes_dir)
        if not real.startswith(base + os.sep):
            return
        uid = volume_owner(pod)[0]
        if os.stat(real).st_uid in (0, uid):
            self.own_volume(real, pod)
        else:
            log.info("volume %s stays with uid %d: pod %s/%s runs as uid %d", real, os.stat(real).st_uid,
                     pod["metadata"].get("namespace"), pod["metadata"].get("name"), uid)

    def traversable(self, *dirs):
        """Without namespaces, the pods' users must reach their volumes through these directories."""
        if self.root and not self.namespaces:
            for d in dirs:
                os.chmod(d, 0o711)
            blocker = podexec._blocker(os.path.realpath(dirs[0]), DEFAULT_UID, {DEFAULT_GID})
            if blocker:
                log.warning("pods cannot reach their volumes: %s is closed to their users; put the cluster's "
                            "state directory where other users may pass through", blocker)

    @property
    def isolated(self):
        """Whether pods are kept apart as by a container runtime (own /tmp, read-only root...)."""
        return self.namespaces

    def command(self, argv, cwd, identity, mounts, host_pid=False, private=(), host_ipc=False, netns=None):
        """The argv (and cwd) that starts a container: through ``podexec`` when root, else as is.
        ``mounts`` is [(local source, mountPath, read_only)], ``private`` [(path, size)] (see
        ``private_dirs``), both used with namespaces only; ``host_pid``/``host_ipc`` (the pod's
        ``hostPID``/``hostIPC``) keep the machine's PID/IPC namespace; ``netns``: the path of the
        pod's network namespace to join (``podnetwork``), None for the machine's."""
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
                "capabilities": None if identity.capabilities is None else list(identity.capabilities),
                "pid_namespace": not host_pid, "ipc_namespace": not host_ipc, "read_only_root": True,
                "private_dirs": [list(d) for d in private] if self.namespaces else [],
                "mounts": [list(m) for m in mounts] if self.namespaces else [],
                "runtime": sorted({os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}),
                "netns": netns if self.namespaces else None, "parent": os.getpid()}
        # -S: podexec needs the standard library only (no site: ~10 ms less per container)
        return [sys.executable, "-I", "-S", podexec.__file__, json.dumps(spec)], "/"


def _user_name():
    try:
        import pwd
        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return "this user"
