"""Start one container process as its pod asks: ``python -m ptjaas_sandbox.cluster.podexec SPEC``.

Run by the node agent when it is root. ``SPEC`` is JSON: ``argv``, ``cwd``, ``uid``, ``gid``,
``groups``, ``no_new_privs`` and, when ``namespaces`` is true, ``mounts`` (``[source, mountPath,
read_only]``). With namespaces, the process gets a private mount namespace in which each volume is
bind-mounted at its real mountPath, and a private PID namespace with its own /proc (a pod cannot
see, signal or read through /proc the processes of other pods, even those with the same uid).
Then it drops to the pod's uid/gid/groups and runs the command. Exit status: the command's
(128 + signal number when killed by a signal), as a container runtime reports it.
"""

import ctypes
import json
import os
import signal
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
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


def _expose_runtime(dirs, uid, gids):
    """Make the Python installation the commands run with (the pod's "image") readable at its own
    path, where it sits under a directory closed to the pod's user (e.g. pyenv under /root): that
    directory is covered with an empty tmpfs and only the runtime is bind-mounted into it, read-only."""
    blocked = []
    for path in dirs:
        blocker = _blocker(path, uid, gids)
        if blocker and blocker != "/":
            blocked.append((path, blocker, os.open(path, os.O_PATH)))
    covered = set()
    for path, blocker, fd in blocked:
        if blocker not in covered:
            mount("tmpfs", blocker, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
            covered.add(blocker)
    for path, blocker, fd in blocked:
        os.makedirs(path, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)
        os.close(fd)


def _mount_volumes(mounts):
    for source, target, read_only in mounts:
        if os.path.isdir(source):
            os.makedirs(target, exist_ok=True)
        elif not os.path.exists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "a").close()
        mount(source, target, None, MS_BIND | MS_REC)
        if read_only:
            mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)


def _become(spec):
    os.setgroups(spec["groups"])
    os.setresgid(spec["gid"], spec["gid"], spec["gid"])
    os.setresuid(spec["uid"], spec["uid"], spec["uid"])
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
    pid_namespace = spec.get("namespaces") and spec.get("pid_namespace", True)
    if spec.get("namespaces"):
        if pid_namespace:
            _survive_signals()
        unshare(CLONE_NEWNS | (CLONE_NEWPID if pid_namespace else 0))
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        if pid_namespace:
            init = _fork()            # the first child is PID 1 of the new PID namespace
            if init:
                _wait_and_exit(init)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        _mount_volumes(spec["mounts"])
        _expose_runtime(spec.get("runtime") or [], spec["uid"], {spec["gid"], *spec["groups"]})
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
