"""Start one container process as its pod asks: ``python -m ptjaas_sandbox.cluster.podexec SPEC``.

Run by the node agent when it is root. ``SPEC`` is JSON: ``argv``, ``cwd``, ``uid``, ``gid``,
``groups``, ``no_new_privs``, ``capabilities`` (the capability numbers the command may keep; null:
all, a privileged container) and, when ``namespaces`` is true, ``mounts`` (``[source, mountPath,
read_only]``) and ``private_dirs`` (``[path, size in bytes or null]``). With namespaces, the process
gets a private mount namespace as a container runtime gives: the machine's filesystem read-only,
a fresh tmpfs of its own on each private directory (/tmp, /var/tmp, /dev/shm, /run), each volume
bind-mounted at its real mountPath; a private PID namespace with its own /proc (a pod cannot see,
signal or read through /proc the processes of other pods, even those with the same uid) and a
private IPC namespace (System V shared memory and message queues). Then it drops to the pod's
uid/gid/groups, keeps only the capabilities it may, and runs the command. With ``netns`` (a path
to the pod's network namespace, see ``podnetwork``) it joins that namespace first. Exit status: the command's
(128 + signal number when killed by a signal), as a container runtime reports it.
"""

import ctypes
import json
import os
import signal
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442   # the same on every architecture
AT_FDCWD, OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC, MOVE_MOUNT_F_EMPTY_PATH = -100, 1, 0o2000000, 4
AT_RECURSIVE, MOUNT_ATTR_RDONLY = 0x8000, 0x1
PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 47, 4
CAPABILITY_VERSION_3 = 0x20080522
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def unshare(flags):
    _check(_libc.unshare(flags), "unshare")


def mount(source, target, fstype, flags, data=None):
    enc = (lambda v: v.encode() if isinstance(v, str) else v)
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {source} on {target}")


def namespaces_work():
    """Whether this process may create mount and PID namespaces (root with CAP_SYS_ADMIN)."""
    pid = os.fork()
    if pid == 0:
        try:
            unshare(CLONE_NEWNS | CLONE_NEWPID)
            mount(None, "/", None, MS_REC | MS_PRIVATE)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


_child = None
_pending = []   # signals that came while there was no child yet, for the command once it exists


def _survive_signals():
    """The node agent signals the whole process group; we outlive it and let the command decide."""
    for sig in FORWARDED:
        signal.signal(sig, _forward)


def _fork():
    """fork(), with no signal lost: one that comes before the command exists is sent again to the
    whole process group once the child is there, so the command gets every stop asked for while
    its container was being set up, exactly once."""
    global _child
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    pid = os.fork()
    again = list(_pending) if pid else []   # the child's copy: the parent sends them again
    _pending.clear()
    if not pid:
        return 0   # signals stay blocked until the child is ready for them
    _child = pid
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    for sig in again:
        try:
            os.killpg(0, sig)
        except OSError:
            pass
    return pid


def _wait_and_exit(child):
    """Wait for ``child`` and exit with its status, reaping any orphans meanwhile (we may be
    PID 1 of the namespace)."""
    global _child
    _child = child
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(1)
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)


def _forward(signum, frame):
    if not _child:   # no command yet to take it (a group signal reaches the command itself)
        _pending.append(signum)
        return
    try:
        if os.getpgid(_child) != os.getpgrp():   # it left our process group: tell it ourselves
            os.kill(_child, signum)
    except OSError:
        pass


def _searchable(path, uid, gids):
    st = os.stat(path)
    if st.st_uid == uid:
        return bool(st.st_mode & 0o100)
    if st.st_gid in gids:
        return bool(st.st_mode & 0o010)
    return bool(st.st_mode & 0o001)


def _blocker(path, uid, gids):
    """The first directory on the way to ``path`` that the pod's user cannot pass, if any."""
    here = "/"
    for part in [p for p in path.split("/") if p]:
        if not _searchable(here, uid, gids):
            return here
        here = os.path.join(here, part)
    return None if _searchable(here, uid, gids) else os.path.dirname(here) or "/"


def _expose_runtime(dirs, uid, gids, private=()):
    """Make the Python installation the commands run with (the pod's "image") readable at its own
    path, where it sits under a directory closed to the pod's user (e.g. pyenv under /root): that
    directory is covered with an empty tmpfs and only the runtime is bind-mounted into it, read-only.
    ``dirs``: [(path, O_PATH fd)]; one under a private directory (a virtualenv in /tmp) is bound
    into that directory's fresh tmpfs."""
    blocked = []
    for path, fd in dirs:
        blocker = "/" if _under(path, private) else _blocker(path, uid, gids)
        if (blocker and blocker != "/") or _under(path, private):
            blocked.append((path, blocker, fd))
        else:
            os.close(fd)
    covered = {"/"}
    for path, blocker, fd in blocked:
        if blocker not in covered:
            mount("tmpfs", blocker, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
            covered.add(blocker)
    for path, blocker, fd in blocked:
        os.makedirs(path, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)
        os.close(fd)


def _under(path, dirs):
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


def _make_target(source_is_dir, target):
    if source_is_dir:
        os.makedirs(target, exist_ok=True)
    elif not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()


def _open_sources(mounts, private):
    """Each volume's source held open (it may sit under a directory a private tmpfs is about to
    cover, e.g. a state directory in /tmp), and its mount target made on the machine's filesystem
    while that is still writable (a target under a private directory or another volume is made
    there later)."""
    opened = []
    for source, target, read_only in mounts:
        is_dir = os.path.isdir(source)
        # one inside another volume (~/snapshots/x in the home) is made in that volume, once it is there
        inside = [t for _, t, _ in mounts if t != target and _under(target, [t])]
        if not _under(os.path.realpath(target), private) and not inside:   # /var/run/x is /run/x
            _make_target(is_dir, target)
        opened.append((_clone_tree(source), is_dir, target, read_only))
    return opened


def _clone_tree(source):
    """A detached copy of the mounts at ``source`` as they are now (open_tree, Linux 5.2+): the
    private directories mounted next cannot end up inside it, nor the read-only root on it.
    (False, an O_PATH descriptor) on an older kernel."""
    fd = _libc.syscall(SYS_OPEN_TREE, ctypes.c_int(AT_FDCWD), source.encode(),
                       ctypes.c_uint(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE))
    if fd >= 0:
        return True, fd
    if ctypes.get_errno() != 38:
        _check(-1, f"open_tree {source}")
    return False, os.open(source, os.O_PATH)


def _mount_attr(path, read_only, recursive):
    """Make the mount at ``path`` read-only or writable (with ``recursive``: every mount under it
    too), leaving its other flags alone. False where the kernel (before 5.12) cannot."""
    fd = os.open(path, (os.O_PATH | os.O_DIRECTORY) if os.path.isdir(path) else os.O_PATH)
    attr = ctypes.create_string_buffer(32)        # struct mount_attr {u64 set, clr, propagation, userns_fd}
    ctypes.memmove(ctypes.byref(attr, 0 if read_only else 8), MOUNT_ATTR_RDONLY.to_bytes(8, "little"), 8)
    flags = (AT_RECURSIVE if recursive else 0) | 0x1000   # AT_EMPTY_PATH
    result = _libc.syscall(SYS_MOUNT_SETATTR, fd, b"", ctypes.c_uint(flags), attr, ctypes.c_size_t(32))
    errno = ctypes.get_errno()
    os.close(fd)
    if result != 0 and errno != 38:               # ENOSYS: an older kernel
        raise OSError(errno, f"mount_setattr {path}: {os.strerror(errno)}")
    return result == 0


def _read_only_root():
    """Every mount of this namespace read-only, as a container's image is."""
    if _mount_attr("/", True, recursive=True):
        return
    flags = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
    with open("/proc/self/mountinfo") as f:   # an older kernel: one mount at a time
        for line in f:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")
            kept = sum(flags.get(o, 0) for o in fields[5].split(","))
            try:
                mount(None, point, None, MS_BIND | MS_REMOUNT | MS_RDONLY | kept)
            except OSError:
                pass   # a mount hidden under another one


def _private_dirs(dirs):
    """A fresh tmpfs of this container's own on each directory there is (sticky, world-writable)."""
    for path, size in dirs:
        if os.path.isdir(path) and not os.path.islink(path):
            options = "mode=1777" + (f",size={int(size)}" if size else "")
            mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, options)


def _mount_volumes(opened):
    for (tree, fd), is_dir, target, read_only in opened:
        _make_target(is_dir, target)
        if tree:
            _check(_libc.syscall(SYS_MOVE_MOUNT, ctypes.c_int(fd), b"", ctypes.c_int(AT_FDCWD), target.encode(),
                                 ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)), f"move_mount {target}")
            if read_only:
                _mount_attr(target, True, recursive=True)
        else:
            mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
            mount(None, target, None, MS_BIND | MS_REMOUNT | (MS_RDONLY if read_only else 0))
        os.close(fd)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _limit_capabilities(keep):
    """Drop every capability not in ``keep`` from the bounding set (while still root: what an
    execve by uid 0 may get back), and from the ambient set."""
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        if cap not in keep:
            _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"prctl(CAPBSET_DROP {cap})")
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)


def _set_capabilities(keep):
    """This process's effective and permitted sets cut to ``keep``, nothing inheritable."""
    mask = sum(1 << cap for cap in keep)
    data = (_CapData * 2)(_CapData(mask & 0xFFFFFFFF, mask & 0xFFFFFFFF, 0), _CapData(mask >> 32, mask >> 32, 0))
    _check(_libc.capset(ctypes.byref(_CapHeader(CAPABILITY_VERSION_3, 0)), data), "capset")


def _become(spec):
    keep = spec.get("capabilities")
    if keep is not None:
        _limit_capabilities(set(keep))
    os.setgroups(spec["groups"])
    os.setresgid(spec["gid"], spec["gid"], spec["gid"])
    os.setresuid(spec["uid"], spec["uid"], spec["uid"])   # any other uid: no capability left at all
    if keep is not None and spec["uid"] == 0:
        _set_capabilities(set(keep))
    if spec.get("no_new_privs"):
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)   # cleared by the uid change: set again


def main(argv=None):
    spec = json.loads((argv or sys.argv)[1])
    # dies with the node agent's thread (set here, not by the node agent: a preexec_fn makes
    # Python fork the whole node agent process instead of vfork, ~30 ms per container)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if spec.get("parent") and os.getppid() != spec["parent"]:
        os._exit(137)  # the node agent went away before the line above
    if spec.get("netns"):   # the pod's network namespace (podnetwork.py), shared by its containers
        netns = os.open(spec["netns"], os.O_RDONLY)
        _check(_libc.setns(netns, CLONE_NEWNET), "setns into the pod's network")
        os.close(netns)
    pid_namespace = spec.get("namespaces") and spec.get("pid_namespace", True)
    if spec.get("namespaces"):
        if pid_namespace:
            _survive_signals()
        unshare(CLONE_NEWNS | (CLONE_NEWPID if pid_namespace else 0) | (CLONE_NEWIPC if spec.get("ipc_namespace") else 0))
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        private = [path for path, _ in spec.get("private_dirs") or []]
        opened = _open_sources(spec["mounts"], private)
        runtime = [(path, os.open(path, os.O_PATH)) for path in spec.get("runtime") or []]
        if spec.get("read_only_root"):
            _read_only_root()
        if pid_namespace:
            init = _fork()            # the first child is PID 1 of the new PID namespace
            if init:
                _wait_and_exit(init)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        _private_dirs(spec.get("private_dirs") or [])
        _mount_volumes(opened)
        _expose_runtime(runtime, spec["uid"], {spec["gid"], *spec["groups"]}, private)
    _become(spec)
    os.chdir(spec["cwd"])
    if pid_namespace:
        command = _fork()
        if command:
            _wait_and_exit(command)
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)   # a stop already asked for ends it here
    try:
        os.execve(spec["argv"][0], spec["argv"], os.environ)
    except OSError as e:
        # as a container runtime reports a command it cannot start
        print(f'exec: "{spec["argv"][0]}": {e.strerror}', file=sys.stderr, flush=True)
        os._exit(127 if e.errno == 2 else 126)


if __name__ == "__main__":
    main()
