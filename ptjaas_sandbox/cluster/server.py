"""``EmbeddedCluster``: the API server, controllers and node agent on one event loop."""

import asyncio
import base64
import ssl
import json
import logging
import os
import platform
import secrets
import socket
import tempfile
import threading
import uuid
from dataclasses import dataclass, field

import yaml
from tornado.httpserver import HTTPServer

from . import pki
from .api import make_app
from .controls import Faults
from .auth import private_dir, write_private
from .controllers import Controllers
from .volumebinding import DEFAULT_CLASS_ANNOTATION
from .eventrecorder import EventRecorder
from ptjaas_spawner.kube import Kube
from .kubeclient import SYSTEM_AGENT
from .kubelet import Kubelet
from .provisioner import PROVISIONER, Provisioner
from .snapshotter import Snapshotter
from .registry import Registry
from .resources import BY_PLURAL
from .store import EVENT_TTL, Store

log = logging.getLogger("ptjaas.cluster")
T = BY_PLURAL


def _node_id(name, dashed=False):
    value = uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.nodes.ptjaas")
    return str(value) if dashed else value.hex


@dataclass
class NodeSpec:
    """A virtual node: what the scheduler may place on it."""
    name: str = "ptjaas-node-1"
    cpu: str = "16"
    memory: str = "64Gi"
    gpus: int = 4
    gpu_resource: str = "nvidia.com/gpu"
    pods: int = 250
    labels: dict = field(default_factory=dict)
    taints: list = field(default_factory=list)

    def manifest(self):
        capacity = {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods), "ephemeral-storage": "100Gi"}
        if self.gpus:
            capacity[self.gpu_resource] = str(self.gpus)
        labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "node.kubernetes.io/instance-type": "ptjaas-embedded"}
        labels.update(self.labels)
        return {"metadata": {"name": self.name, "labels": labels},
                "spec": {"taints": list(self.taints)} if self.taints else {},
                "status": {"capacity": capacity, "allocatable": dict(capacity),
                           "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                           "message": "kubelet is posting ready status"}],
                           "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                         {"type": "Hostname", "address": self.name}],
                           "nodeInfo": {"kubeletVersion": "v1.31.0+ptjaas", "operatingSystem": "linux",
                                        "architecture": "amd64", "containerRuntimeVersion": "ptjaas://local-process",
                                        # required by the clients' NodeSystemInfo model
                                        "kubeProxyVersion": "v1.31.0+ptjaas", "kernelVersion": platform.release(),
                                        "osImage": "ptjaas embedded node", "machineID": _node_id(self.name),
                                        "systemUUID": _node_id(self.name, dashed=True),
                                        "bootID": _node_id(self.name + "-boot", dashed=True)}}}


DEFAULT_STORAGE_CLASSES = [
    {"metadata": {"name": "standard", "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
     "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
     "allowVolumeExpansion": True},
]


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EmbeddedCluster:
    """A Kubernetes API server plus one node agent, in-process.

    ``state_dir`` holds volumes, pod logs and (when ``persist`` is true) the objects, so a
    cluster started again on the same directory finds everything as it was, restarting the
    pods that were running. ``nodes`` and ``storage_classes`` seed a new cluster. Events are
    removed ``event_ttl`` seconds after their last write (kube-apiserver's ``--event-ttl``, 1 h).
    ``bind_delay``: seconds the volume provisioner takes to make a new claim's volume (0: at
    once; a real CSI driver takes a few). ``mount_namespaces`` / ``network_namespaces``: False runs
    pods without them (None: where the machine allows, see isolation.py and podnetwork.py).
    ``images``: glob patterns of the images the node can pull (``images.py``); None: every image.
    """

    def __init__(self, state_dir=None, port=0, host="127.0.0.1", nodes=None, storage_classes=None,
                 namespaces=("default", "kube-system", "kube-public"), persist=True, mount_namespaces=None,
                 event_ttl=EVENT_TTL, bind_delay=0.0, network_namespaces=None, images=None):
        self.state_dir = os.path.abspath(state_dir or tempfile.mkdtemp(prefix="ptjaas-cluster-"))
        private_dir(self.state_dir)   # objects, tokens, volumes and logs: the cluster owner's alone
        self.volumes_dir = os.path.join(self.state_dir, "volumes")
        self.pods_dir = os.path.join(self.state_dir, "pods")
        self.snapshots_dir = os.path.join(self.state_dir, "snapshots")
        for d in (self.volumes_dir, self.pods_dir, self.snapshots_dir):
            os.makedirs(d, exist_ok=True)
        self.state_file = os.path.join(self.state_dir, "objects.json")
        self.host = host
        self.port = port or free_port(host)
        self.persist = persist
        self.bind_delay = float(bind_delay or 0)
        self.mount_namespaces = mount_namespaces   # None: use them where the machine allows (root, CAP_SYS_ADMIN)
        self.token = None
        self._ca_pem = None
        self.loop = None
        self.faults = Faults()
        self.open_watches = set()
        self.store = Store(event_ttl=event_ttl)
        self.registry = Registry(self.store)
        self.events = EventRecorder(self.store)
        self.controllers = Controllers(self)
        # a client of this server, from start(); containers as their securityContext (isolation.py)
        self.kubelet = Kubelet(None, self.state_dir, mount_namespaces=mount_namespaces, volumes_dir=self.volumes_dir,
                              network_namespaces=network_namespaces, images=images)
        self.scheduler = self.controllers.scheduler
        self._seed = (nodes if nodes is not None else [NodeSpec()],
                      storage_classes if storage_classes is not None else DEFAULT_STORAGE_CLASSES, namespaces)
        self._thread = None
        self._stopped = None
        self._server = None

    @property
    def url(self):
        return f"https://{self.host}:{self.port}"

    @property
    def ca_file(self):
        """The cluster CA's certificate (to verify the API server's TLS), e.g. ``requests``' ``verify=``."""
        return os.path.join(self.state_dir, pki.DIRECTORY, "ca.crt")

    def ca_pem(self):
        """The cluster CA's certificate (PEM text): what signs the API server's certificate."""
        if self._ca_pem is None:
            self._ca_pem = pki.ensure(self.state_dir, self.host)[0]
        return self._ca_pem.decode() if isinstance(self._ca_pem, bytes) else self._ca_pem

    @property
    def kubeconfig_path(self):
        return os.path.join(self.state_dir, "kubeconfig")

    # --- start / stop ----------------------------------------------------------------------
    async def start(self):
        self.loop = asyncio.get_running_loop()
        extra = {}
        fresh = not os.path.exists(self.state_file)
        if not fresh:
            extra = self.store.load(self.state_file)
            for node in self.store.list(T["nodes"]):   # state written by older versions: fill in nodeInfo
                info = node.setdefault("status", {}).setdefault("nodeInfo", {})
                for key, value in NodeSpec(name=node["metadata"]["name"]).manifest()["status"]["nodeInfo"].items():
                    info.setdefault(key, value)
            self.kubelet.import_state(extra.get("kubelet") or {})
        self.token = extra.get("token") or secrets.token_urlsafe(32)
        self.store.listeners += [self.controllers.on_event]
        if fresh:
            nodes, classes, namespaces = self._seed
            for ns in namespaces:
                self.registry.create(T["namespaces"], "", {"metadata": {"name": ns}})
            for node in nodes:
                self.add_node(node)
            for cls in classes:
                self.registry.create(T["storageclasses"], "", cls)
        self._ca_pem, cert_file, key_file = pki.ensure(self.state_dir, self.host)
        self._ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl_context.load_cert_chain(cert_file, key_file)
        self._listen()
        self.write_kubeconfig(self.kubeconfig_path)
        self._saver = asyncio.ensure_future(self._save_loop())
        self.controllers.kick()
        self.kubelet.client = Kube.for_server(self.url, ca_file=self.ca_file, token=self.token, user_agent=SYSTEM_AGENT)
        self.provisioner = Provisioner(self.kubelet.client, self.volumes_dir, snapshots_dir=self.snapshots_dir,
                                       bind_delay=self.bind_delay)
        self.snapshotter = Snapshotter(self.kubelet.client, self.snapshots_dir)
        await self.kubelet.start()
        await self.provisioner.start()
        await self.snapshotter.start()
        log.info("embedded Kubernetes API at %s (state in %s)", self.url, self.state_dir)
        return self

    def _listen(self):
        self._server = HTTPServer(make_app(self), idle_connection_timeout=3600, ssl_options=self._ssl_context)
        self._server.listen(self.port, self.host)

    async def api_down(self):
        """The API server goes away, as in a control-plane outage: its port stops answering
        (connections refused) and every open connection, watches included, is cut. The node
        agent and its pods run on, as a kubelet's do, and retry until ``api_up``."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.stop()
        for handler in list(self.open_watches):
            try:
                handler.request.connection.stream.close()
            except Exception:
                pass
        await server.close_all_connections()

    async def api_up(self):
        """The API server answers again on the same port, with every object kept."""
        if self._server is None:
            self._listen()

    def add_node(self, node):
        node = node if isinstance(node, dict) else node.manifest()
        obj = self.registry.create(T["nodes"], "", node)
        self.controllers.kick()
        return obj

    async def _save_loop(self):
        while True:
            await asyncio.sleep(0.25)
            try:
                self.store.expire_events()
                if self.store.dirty and self.persist:   # what changed goes to the journal (journal.py)
                    self.store.save(self.state_file, self._extra_state())
            except Exception:   # a full disk must not stop the API server; the next turn tries again
                log.exception("could not save the cluster state")

    def _extra_state(self):
        return {"token": self.token, "kubelet": self.kubelet.export_state()}

    def save(self):
        """Write the whole state now (a snapshot; the journal starts again)."""
        self.store.dump(self.state_file, self._extra_state())

    async def stop(self):
        self.kubelet.client.closing = True
        if self._server is not None:
            self._server.stop()
        for handler in list(self.open_watches):
            try:
                handler.request.connection.stream.close()
            except Exception:
                pass
        await asyncio.gather(self.provisioner.stop(), self.snapshotter.stop(), self.kubelet.shutdown())
        await self.kubelet.client.close()
        self._saver.cancel()
        if self.persist:
            self.save()
        if self.store.journal is not None:
            self.store.journal.close()
        if self._server is not None:
            await self._server.close_all_connections()

    async def serve_forever(self):
        await self.start()
        self._stopped = asyncio.Event()
        try:
            await self._stopped.wait()
        finally:
            await self.stop()

    # --- a background thread (tests, the demo) -------------------------------------------
    def start_in_thread(self, timeout=30):
        ready = threading.Event()
        failure = []

        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._stopped = asyncio.Event()

            async def main():
                try:
                    await self.start()
                except BaseException as e:   # report start-up failures to the caller
                    failure.append(e)
                    ready.set()
                    return
                ready.set()
                await self._stopped.wait()
                await self.stop()

            loop.run_until_complete(main())
            loop.close()

        self._thread = threading.Thread(target=run, name="ptjaas-cluster", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("the embedded cluster did not start in time")
        if failure:
            raise failure[0]
        return self

    def stop_thread(self, timeout=30):
        if self._thread is None:
            return
        self.loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout)
        self._thread = None

    def call(self, fn, *args, **kwargs):
        """Run ``fn`` on the cluster's loop (thread-safe) and return its result."""
        if self._thread is None or threading.current_thread() is self._thread:
            return fn(*args, **kwargs)

        async def wrapper():
            return fn(*args, **kwargs)
        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(30)

    # --- test controls ---------------------------------------------------------------------
    def stop_api(self):
        """``api_down`` from another thread (tests: an API server outage, pods running on)."""
        asyncio.run_coroutine_threadsafe(self.api_down(), self.loop).result(30)

    def start_api(self):
        asyncio.run_coroutine_threadsafe(self.api_up(), self.loop).result(30)

    def remove_pod(self, namespace, name):
        """Remove a pod from the store at once, as a force delete does, whether or not the API
        server answers (tests: a pod deleted during an outage)."""
        return self.call(self.registry.delete, T["pods"], namespace, name, {"gracePeriodSeconds": 0})

    def inject_fault(self, verb=None, resource=None, name=None, namespace=None, status=None, latency=0,
                     times=None, cut_watch=False, message=None):
        def add():
            rule = self.faults.add(verb=verb, resource=resource, namespace=namespace, name=name, status=status,
                                   latency=latency, times=times, cut_watch=cut_watch, message=message)
            if cut_watch:
                self.cut_watches(rule)
            return rule
        return self.call(add)

    def clear_faults(self):
        return self.call(self.faults.clear)

    def cut_watches(self, rule):
        for handler in list(self.open_watches):
            rtype, namespace, name, _ = handler.route
            if rule["resource"] in (None, rtype.plural) and rule["namespace"] in (None, namespace):
                handler.cut_watch = True
                try:
                    handler.request.connection.stream.close()
                except Exception:
                    pass

    def compact(self):
        return self.call(self.store.compact)

    def request_stats(self):
        return self.call(lambda: dict(self.stats))

    def reset_request_stats(self):
        def reset():
            self.stats.clear()
            self.stats["total"] = 0
        return self.call(reset)

    # --- kubeconfig ------------------------------------------------------------------------
    def kubeconfig(self, namespace="default"):
        return {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "ptjaas-embedded", "cluster": {
                "server": self.url, "certificate-authority-data": base64.b64encode(self.ca_pem().encode()).decode()}}],
            "users": [{"name": "ptjaas-admin", "user": {"token": self.token}}],
            "contexts": [{"name": "ptjaas-embedded", "context": {"cluster": "ptjaas-embedded", "user": "ptjaas-admin",
                                                                 "namespace": namespace}}],
            "current-context": "ptjaas-embedded",
        }

    def write_kubeconfig(self, path, namespace="default"):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write_private(path, yaml.safe_dump(self.kubeconfig(namespace)))
        return path


def load_node_specs(text):
    """Nodes from JSON (``[{"name": ..., "cpu": ..., "gpus": ...}]``), for the command line."""
    return [NodeSpec(**spec) for spec in json.loads(text)]
