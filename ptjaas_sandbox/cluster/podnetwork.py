"""A network namespace per pod, where the node agent may make one (root with CAP_SYS_ADMIN).

Each pod's containers share one network namespace of their own (as a pod sandbox's on a real
node): a loopback interface and nothing else, so a pod sees only its own sockets in
``/proc/net/tcp`` and cannot reach another pod, nor anything else on this machine. The node agent
joins it to the machine's network with forwarders, as z2jh's NetworkPolicies intend:

- in: on the pod's address (``status.podIP``, 127.100.x.y) in this machine's namespace, one
  listener per port the pod declares (``containerPort``, probe ports), each connection carried into
  the pod's namespace to the same address and port (where the server listens). The hub and the
  proxy reach a pod exactly as before; another pod, in its own namespace, cannot reach it at all.
- out: for each loopback URL in its containers' env (``JUPYTERHUB_API_URL``: the hub's API; never
  another pod's address), a listener at that address and port inside the pod's namespace, each
  connection carried out to the same address here. Nothing else leaves the pod (no internet).

Which pods: those z2jh's singleuser NetworkPolicy selects (``component: singleuser-server``, every
server KubeSpawner makes), not on ``hostNetwork`` (``isolated``). Other pods (the migration's copy
pods, a team's pipeline steps) share this machine's network, as pods that no NetworkPolicy selects
reach each other on a real cluster.

The namespace is held by one file descriptor of the node agent and by the pod's processes: it
goes away with them, also when the node agent dies without cleaning up (its containers die with
it), so nothing is left behind on this machine. Sockets are made in the namespace by switching one
thread into it for the ``socket()`` call only (a socket stays in the namespace it was made in).
"""

import asyncio
import contextlib
import ctypes
import fcntl
import ipaddress
import logging
import os
import re
import socket
import struct
import threading

log = logging.getLogger("ptjaas.cluster")

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
POD_RANGE = ipaddress.ip_network("127.100.0.0/16")   # the node agent's pod addresses (kubelet.allocate_ip)
LOOPBACK_URL = re.compile(r"\b(?:https?|wss?|tcp)://(localhost|127(?:\.\d{1,3}){3})(?::(\d{1,5}))?(?=[/?#\s]|$)")
DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
CHUNK = 256 * 1024

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _in_new_thread(work, done=None):
    """Run ``work()`` in a thread of its own, which ends after it (a thread that entered another
    network namespace is never reused). Returns its result or raises its exception; with ``done``
    (a callable), returns at once and calls ``done(result, error)`` from that thread."""
    result = {}

    def run():
        try:
            result["value"] = work()
        except BaseException as e:   # handed to the caller
            result["error"] = e
        if done is not None:
            done(result.get("value"), result.get("error"))
    thread = threading.Thread(target=run, name="ptjaas-netns", daemon=True)
    thread.start()
    if done is not None:
        return None
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


async def _new_namespace_off_loop(inside):
    """``_new_namespace`` in a thread of its own, the event loop free meanwhile."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def done(value, error):
        def settle():
            if future.cancelled():   # nobody wants it any more: let the namespace go
                if value is not None:
                    os.close(value[0])
                    for s in value[1]:
                        s.close()
            elif error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)
        loop.call_soon_threadsafe(settle)
    _in_new_thread(lambda: _new_namespace(inside), done)
    return await future


def _new_namespace(inside):
    """In the calling thread: a new network namespace with its loopback up; returns (an fd that
    holds it, [listening sockets bound to each (host, port) of ``inside`` there])."""
    _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sh", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sh", b"lo", 0)))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))
    fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    listeners = []
    try:
        for host, port in inside:
            listeners.append(_listener(host, port))
    except BaseException:
        os.close(fd)
        for s in listeners:
            s.close()
        raise
    return fd, listeners


def _listener(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(128)
    s.setblocking(False)
    return s


SERVER_LABELS = {"component": "singleuser-server"}   # z2jh's singleuser NetworkPolicy's podSelector (part)


def isolated(pod) -> bool:
    """Does this pod get a network of its own (see the module's docstring)?"""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in SERVER_LABELS.items()) and not (pod.get("spec") or {}).get("hostNetwork")


def network_namespaces_work():
    """Whether this process may make network namespaces (root with CAP_SYS_ADMIN, not refused)."""
    try:
        fd, _ = _in_new_thread(lambda: _new_namespace(()))
    except OSError:
        return False
    os.close(fd)
    return True


def declared_ports(pod):
    """The TCP ports a pod's containers declare or are probed on (pure)."""
    ports = set()
    for c in (pod["spec"].get("initContainers") or []) + pod["spec"]["containers"]:
        for p in c.get("ports") or []:
            if (p.get("protocol") or "TCP") == "TCP" and isinstance(p.get("containerPort"), int):
                ports.add(p["containerPort"])
        for key in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = c.get(key) or {}
            port = (probe.get("httpGet") or probe.get("tcpSocket") or {}).get("port")
            if isinstance(port, int):
                ports.add(port)
    return sorted(ports)


def host_services(pod):
    """[(address, port)] this machine's loopback services a pod's env names by URL (pure): the
    hub's API for a notebook server. Never an address of the pods' range."""
    found = set()
    for c in (pod["spec"].get("initContainers") or []) + pod["spec"]["containers"]:
        for item in c.get("env") or []:
            for m in LOOPBACK_URL.finditer(str(item.get("value") or "")):
                host = "127.0.0.1" if m.group(1) == "localhost" else m.group(1)
                scheme = m.group(0).split(":", 1)[0]
                port = int(m.group(2)) if m.group(2) else DEFAULT_PORTS.get(scheme)
                try:
                    address = ipaddress.ip_address(host)
                except ValueError:
                    continue
                if port and 0 < port < 65536 and address not in POD_RANGE:
                    found.add((host, port))
    return sorted(found)


class PodNetwork:
    """One pod's network namespace and the forwarders in and out of it. ``await open()``, then
    ``path`` is what a container process joins (``setns``); ``close()`` when the pod is gone."""

    def __init__(self, name, ip, ports, services):
        self.name, self.ip, self.ports, self.services = name, ip, list(ports), list(services)
        self.fd = None
        self.path = None
        self._servers = []
        self._streams = set()

    async def open(self):
        self.fd, inside = await _new_namespace_off_loop(self.services)
        self.path = f"/proc/{os.getpid()}/fd/{self.fd}"
        try:
            for (host, port), sock in zip(self.services, inside):
                self._servers.append(await asyncio.start_server(
                    lambda r, w, h=host, p=port: self._carry(r, w, lambda: _connect_here(h, p)), sock=sock))
            for port in self.ports:
                self._servers.append(await asyncio.start_server(
                    lambda r, w, p=port: self._carry(r, w, lambda: self.connect(p)), host=self.ip, port=port))
        except BaseException:
            self.close()
            raise
        return self

    def socket(self, family=socket.AF_INET):
        """A socket made in the pod's namespace (this thread switches in for the call only)."""
        here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_libc.setns(self.fd, CLONE_NEWNET), "setns into the pod's network")
            try:
                return socket.socket(family, socket.SOCK_STREAM)
            finally:
                _check(_libc.setns(here, CLONE_NEWNET), "setns back to the node's network")
        finally:
            os.close(here)

    async def connect(self, port, timeout=None):
        """(reader, writer) of a connection to the pod's address and ``port`` in its namespace."""
        sock = self.socket()
        sock.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (self.ip, port)), timeout)
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    async def port_open(self, port):
        try:
            _, writer = await self.connect(port, timeout=0.5)
        except (OSError, asyncio.TimeoutError):
            return False
        writer.close()
        return True

    async def _carry(self, reader, writer, connect):
        """One connection through a forwarder: both ways until each side has finished; a refused
        connection on the far side resets this one, as a closed port would."""
        self._streams.add(writer)
        far_writer = None
        try:
            try:
                far_reader, far_writer = await connect()
            except OSError:
                with contextlib.suppress(OSError):
                    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                               struct.pack("ii", 1, 0))
                return
            self._streams.add(far_writer)
            await asyncio.gather(_pipe(reader, far_writer), _pipe(far_reader, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (writer, far_writer):
                if w is not None:
                    self._streams.discard(w)
                    w.close()

    def close(self):
        """Stop the forwarders and let the namespace go (it ends with the pod's last process)."""
        for server in self._servers:
            server.close()
        self._servers = []
        for writer in list(self._streams):
            writer.close()
        self._streams.clear()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


async def _connect_here(host, port):
    return await asyncio.open_connection(host, port)


async def _pipe(reader, writer):
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()
