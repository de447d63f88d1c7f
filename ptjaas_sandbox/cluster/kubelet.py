"""The node agent: runs each scheduled pod's containers as local processes (podruntime.py), a plain
API client of the API server (embedded or real) like a kubelet.

Each pod gets its own loopback address (127.100.x.y), reported as ``status.podIP``; ``0.0.0.0`` in
env and args is rewritten to it, so many pods can listen on port 8888 at once. Containers run as
their securityContext, in private mount, PID and IPC namespaces where the machine allows it (the
machine's files read-only, a private /tmp, /var/tmp, /dev/shm and /run), with their volumes at their
real mountPath (isolation.py), and each pod in a network namespace of its own, reached on its
address through the node agent's forwarders (podnetwork.py); otherwise paths under a mountPath are
rewritten to local directories in env, args and workingDir, and pods share this machine's network.
Images are not pulled: they are taken to be Jupyter Docker Stacks-like (HOME and working
directory ``/home/jovyan``), and commands run with this machine's Python environment on PATH.
"""

import asyncio
import logging
import os
import socket
import time

from . import admission, errors
from .images import ImageRegistry
from .isolation import NodeIsolation
from ptjaas_spawner.kube import ApiException
from .kubeclient import EventSink, inform, stop_tasks
from .nodeserver import serve_logs, stop_logs
from .podruntime import PodRuntime
from ptjaas_spawner.quantity import parse_quantity
from .resources import BY_PLURAL
from .store import now_iso, now_micro
from .objcopy import clone

log = logging.getLogger("ptjaas.cluster")
T = BY_PLURAL
GPU_RESOURCE_SUFFIX = "/gpu"
LEASE_SECONDS = 40          # the node's Lease duration, as a kubelet's
RENEW_EVERY = 10            # lease renewal and node status check (a kubelet's nodeStatusUpdateFrequency)
STATUS_REPORT_EVERY = 300   # an unchanged node status is reported this often (nodeStatusReportFrequency)


class Kubelet:
    """A node agent, a plain API client: it watches the pods bound to its nodes, runs them, and
    reports their status and events over the API (embedded server or real kube-apiserver alike)."""

    def __init__(self, client, state_dir, nodes=(), log_endpoint=None, mount_namespaces=None, volumes_dir=None,
                 images=None, network_namespaces=None):
        self.client = client
        self.state_dir = state_dir
        self.pods_dir = os.path.join(state_dir, "pods")
        volumes_dir = self.volumes_dir = volumes_dir or os.path.join(state_dir, "volumes")   # the provisioner's volumes
        for d in (self.pods_dir, volumes_dir):
            os.makedirs(d, exist_ok=True)
        # who containers run as and what they see (isolation.py), their network (podnetwork.py);
        # mount_namespaces / network_namespaces None: where the machine allows
        self.isolation = NodeIsolation(mount_namespaces, network_namespaces)
        self.isolation.traversable(state_dir, self.pods_dir, volumes_dir)
        self.images = ImageRegistry(images)   # what can be pulled (images.py); None: every image
        self.node_specs = list(nodes)   # registered at start (the embedded cluster seeds its own)
        self.log_endpoint = log_endpoint   # (cert file, key file, port): serve /containerLogs over HTTPS
        self._log_server = None
        self.pods = {}            # uid -> PodRuntime
        self.cache = {}           # uid -> the pod as last seen on the watch
        self.ips = {}             # uid -> ip
        self.gpus = {}            # uid -> [device index]
        self._pending = False
        self.changed = set()      # uids seen changed on the watch since the last sync
        self._tasks = []
        self._heartbeat_task = None
        self._reported = {}       # node name -> when its status was last reported (monotonic)
        self._outage_since = None   # when the heartbeats started failing
        self.events = None
        self.loop = None

    # --- state persisted with the cluster -----------------------------------------------
    def export_state(self):
        return {"ips": self.ips, "gpus": self.gpus}

    def import_state(self, state):
        self.ips = dict(state.get("ips") or {})
        self.gpus = {k: list(v) for k, v in (state.get("gpus") or {}).items()}

    # --- start / stop ----------------------------------------------------------------------
    async def start(self):
        self.loop = asyncio.get_running_loop()
        self.events = EventSink(self.client, "kubelet")
        if self.log_endpoint:
            self._log_server = serve_logs(self, *self.log_endpoint)
        for spec in self.node_specs:
            await self.register(spec)
        self._heartbeat_task = asyncio.ensure_future(self._heartbeat()) if self.node_specs else None
        self._tasks = [asyncio.ensure_future(inform(self.client, 
                           "/api/v1/pods", self.on_pod, params={"fieldSelector": "spec.nodeName!="},
                           on_sync=self.on_pods_listed))]
        return self

    async def register(self, spec):
        """Create the Node (as a kubelet registers itself) and report its status."""
        manifest = _manifest(spec)
        node = None
        try:
            await self.client.create("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                                       "metadata": manifest["metadata"], "spec": manifest.get("spec") or {}})
        except ApiException as e:
            if e.status != 409:
                raise
            node = await self.client.get(f"/api/v1/nodes/{manifest['metadata']['name']}")   # registered before
        await self._report_status(manifest, node)

    async def _report_status(self, manifest, node):
        """Patch the node's status: its conditions as this agent sees them (Ready), heartbeat now,
        transition times kept where a condition did not change (``node`` is the Node as it is)."""
        status = clone(manifest["status"])
        if self.log_endpoint:
            status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": self.log_endpoint[2]}}
        current = {c.get("type"): c for c in ((node or {}).get("status") or {}).get("conditions") or []}
        now = now_iso()
        for c in status.get("conditions") or []:
            before = current.get(c["type"]) or {}
            c["lastHeartbeatTime"] = now
            c["lastTransitionTime"] = (before.get("lastTransitionTime") if before.get("status") == c["status"]
                                       else None) or now
        await self.client.patch(f"/api/v1/nodes/{manifest['metadata']['name']}/status", {"status": status})
        self._reported[manifest["metadata"]["name"]] = time.monotonic()

    async def _sync_node(self, spec):
        """What a kubelet does every ``nodeStatusUpdateFrequency``: renew the node's Lease
        (kube-node-lease), and report the node's status again when the API's copy differs from what
        this agent would report (the node lifecycle controller marked it Unknown while the API
        server or this agent was away), or every ``STATUS_REPORT_EVERY`` seconds; register the
        node again should it have been deleted."""
        manifest = _manifest(spec)
        name = manifest["metadata"]["name"]
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
        renew = {"spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now_micro()}}
        try:
            await self.client.patch(path, renew)
        except ApiException as e:
            if e.status != 404:
                raise
            await self.client.create(path.rsplit("/", 1)[0], dict(renew, metadata={"name": name}))
        node = await self.client.get(f"/api/v1/nodes/{name}")
        if node is None:
            log.warning("node %s is gone from the API: registering it again", name)
            await self.register(spec)
            return
        reported = {c.get("type"): c.get("status") for c in (node.get("status") or {}).get("conditions") or []}
        wanted = {c["type"]: c["status"] for c in manifest["status"].get("conditions") or []}
        stale = time.monotonic() - self._reported.get(name, 0) >= STATUS_REPORT_EVERY
        if stale or any(reported.get(t) != s for t, s in wanted.items()):
            if not stale:
                log.info("node %s: reporting its status again (the API had %s)", name, reported)
            await self._report_status(manifest, node)

    async def _heartbeat(self, every=RENEW_EVERY):
        """Keep each registered node Ready (and untainted) for the node lifecycle controller, through
        API server outages: on failure retry soon (0.2 s doubling up to 7 s, as a kubelet's lease
        controller does), else every ``every`` seconds."""
        failures = 0
        while not self.client.closing:
            failed = False
            for spec in self.node_specs:
                try:
                    await self._sync_node(spec)
                except asyncio.CancelledError:
                    return
                except Exception as e:
                    failed = True
                    if not self.client.closing:
                        log.debug("node %s not synced: %s", _manifest(spec)["metadata"]["name"], e)
            failures = failures + 1 if failed else 0
            if failures == 0 and self._outage_since is not None:
                log.info("node agent: API server reachable again after %.0f s", time.monotonic() - self._outage_since)
                self._outage_since = None
            elif failures and self._outage_since is None:
                self._outage_since = time.monotonic()
            try:
                await asyncio.sleep(min(0.2 * 2 ** failures, 7) if failures else every)
            except asyncio.CancelledError:
                return

    async def shutdown(self):
        self.client.closing = True
        if self._log_server is not None:
            stop_logs(self._log_server)
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        await stop_tasks(self._tasks)
        if self.events is not None:
            self.events.close()
        await asyncio.gather(*(rt.stop_for_shutdown() for rt in list(self.pods.values())), return_exceptions=True)

    # --- the pods watch --------------------------------------------------------------------
    def on_pods_listed(self, pods):
        self.changed |= set(self.cache) | set(self.pods)
        self.cache = {p["metadata"]["uid"]: p for p in pods}
        self.changed |= set(self.cache)
        self.kick()

    def on_pod(self, event_type, pod):
        uid = pod["metadata"]["uid"]
        if event_type == "DELETED":
            self.cache.pop(uid, None)
        else:
            self.cache[uid] = pod
        self.changed.add(uid)
        self.kick()

    def kick(self):
        if not self._pending and self.loop is not None:
            self._pending = True
            self.loop.call_soon(self.sync)

    def sync(self):
        """Act on the pods that changed since the last sync (not on every pod)."""
        self._pending = False
        changed, self.changed = self.changed, set()
        for uid in sorted(changed):
            pod = self.cache.get(uid)
            if pod is None:
                if uid in self.pods and not self.pods[uid].terminating:   # removed without a grace period
                    self.pods[uid].terminate(0, remove=False)
                continue
            runtime = self.pods.get(uid)
            if pod["metadata"].get("deletionTimestamp"):
                if runtime is None:
                    self._release(uid)
                    asyncio.ensure_future(self.finish_delete(pod))
                elif not runtime.terminating:
                    runtime.terminate(pod["metadata"].get("deletionGracePeriodSeconds", 30))
                elif runtime.grace > pod["metadata"].get("deletionGracePeriodSeconds", 30):
                    runtime.shorten(pod["metadata"]["deletionGracePeriodSeconds"])
                continue
            if runtime is None and not admission.pod_is_terminal(pod):
                runtime = PodRuntime(self, pod)
                self.pods[uid] = runtime
                runtime.start()
            elif runtime is not None and not runtime.terminating:
                runtime.reconcile(pod)

    async def finish_delete(self, pod):
        """Remove a pod whose containers are gone, as a kubelet does (grace 0, uid precondition)."""
        meta = pod["metadata"]
        try:
            await self.client.delete(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                                     {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                                      "preconditions": {"uid": meta["uid"]}})
        except Exception as e:
            log.warning("could not remove pod %s/%s: %s", meta["namespace"], meta["name"], e)

    def _release(self, uid):
        self.pods.pop(uid, None)
        self.gpus.pop(uid, None)
        self.ips.pop(uid, None)

    def record_event(self, pod, event_type, reason, message):
        self.events.record(dict(pod, kind="Pod", apiVersion="v1"), event_type, reason, message,
                           host=pod["spec"].get("nodeName"))

    # --- what a pod needs from the API ----------------------------------------------------------
    async def lookup(self, pod):
        """The secrets and configmaps the pod refers to, fetched now (a ``get(rtype, ns, name)`` view)."""
        wanted = set()
        spec = pod["spec"]
        for c in (spec.get("initContainers") or []) + spec["containers"]:
            for source in c.get("envFrom") or []:
                if source.get("secretRef"):
                    wanted.add(("secrets", source["secretRef"]["name"]))
                elif source.get("configMapRef"):
                    wanted.add(("configmaps", source["configMapRef"]["name"]))
            for item in c.get("env") or []:
                ref = item.get("valueFrom") or {}
                if ref.get("secretKeyRef"):
                    wanted.add(("secrets", ref["secretKeyRef"]["name"]))
                elif ref.get("configMapKeyRef"):
                    wanted.add(("configmaps", ref["configMapKeyRef"]["name"]))
        for volume in spec.get("volumes") or []:
            if volume.get("secret"):
                wanted.add(("secrets", volume["secret"]["secretName"]))
            elif volume.get("configMap"):
                wanted.add(("configmaps", volume["configMap"]["name"]))
            for source in (volume.get("projected") or {}).get("sources") or []:
                if source.get("secret"):
                    wanted.add(("secrets", source["secret"]["name"]))
                elif source.get("configMap"):
                    wanted.add(("configmaps", source["configMap"]["name"]))
        namespace = pod["metadata"]["namespace"]
        names = sorted(wanted)
        found = await asyncio.gather(*(self.client.get(f"/api/v1/namespaces/{namespace}/{kind}/{name}")
                                       for kind, name in names))
        objects = {key: obj for key, obj in zip(names, found) if obj is not None}
        for volume in spec.get("volumes") or []:   # service account tokens: a TokenRequest each, as a kubelet
            for i, source in enumerate((volume.get("projected") or {}).get("sources") or []):
                if source.get("serviceAccountToken"):
                    objects[("token", f"{volume['name']}/{i}")] = await self._request_token(
                        pod, source["serviceAccountToken"])
        return Lookup(objects)

    async def _request_token(self, pod, wanted):
        """A token of the pod's ServiceAccount for a projected volume, bound to the pod."""
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        spec = {"expirationSeconds": int(wanted.get("expirationSeconds") or 3600),
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}}
        if wanted.get("audience"):
            spec["audiences"] = [wanted["audience"]]
        answer = await self.client.create(
            f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
        return answer["status"]["token"]

    def allocate_ip(self, uid):
        if uid in self.ips:
            return self.ips[uid]
        used = set(self.ips.values()) | _listening_ips()  # other clusters on this machine too
        index = int.from_bytes(os.urandom(2), "big") % 10000 + 1  # spread concurrent clusters apart
        while True:
            ip = f"127.100.{index // 250}.{index % 250 + 1}"
            if ip not in used:
                self.ips[uid] = ip
                return ip
            index += 1

    async def allocate_gpus(self, pod):
        uid = pod["metadata"]["uid"]
        if uid in self.gpus:
            return self.gpus[uid]
        wanted = 0
        resource = None
        for c in pod["spec"]["containers"]:
            for name, value in ((c.get("resources") or {}).get("limits") or {}).items():
                if name.endswith(GPU_RESOURCE_SUFFIX):
                    wanted += int(parse_quantity(value))
                    resource = name
        if not wanted:
            return []
        node = await self.client.get(f"/api/v1/nodes/{pod['spec']['nodeName']}")
        total = int(parse_quantity((node or {}).get("status", {}).get("capacity", {}).get(resource, "0")))
        taken = {d for u, devices in self.gpus.items() if u in self.pods for d in devices}
        free = [d for d in range(total) if d not in taken]
        self.gpus[uid] = free[:wanted]
        return self.gpus[uid]

    def log_path(self, pod, container, previous=False):
        suffix = ".previous.log" if previous else ".log"
        return os.path.join(self.pods_dir, pod["metadata"]["uid"], "logs", container + suffix)

    def read_log(self, pod, container=None, tail=None, previous=False):
        containers = [c["name"] for c in pod["spec"]["containers"]]
        name = container or containers[0]
        if name not in containers + [c["name"] for c in pod["spec"].get("initContainers") or []]:
            raise errors.bad_request(f"container {name} is not valid for pod {pod['metadata']['name']}")
        if pod["spec"].get("nodeName"):   # as the kubelet answers for a container that has not started
            statuses = {cs["name"]: cs for cs in (pod.get("status") or {}).get("containerStatuses") or []}
            cs = statuses.get(name) or {}
            waiting = (cs.get("state") or {}).get("waiting") if cs else {"reason": "ContainerCreating"}
            if waiting is not None and not (cs.get("lastState") or {}).get("terminated"):
                raise errors.bad_request(f'container "{name}" in pod "{pod["metadata"]["name"]}" is waiting to start: '
                                         f'{waiting.get("reason") or "ContainerCreating"}')
        path = self.log_path(pod, name, previous)
        if previous and not os.path.exists(path):
            raise errors.bad_request(f'previous terminated container "{name}" in pod "{pod["metadata"]["name"]}" not found')
        try:
            with open(path, errors="replace") as f:
                text = f.read()
        except FileNotFoundError:
            text = ""
        if tail is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(tail):]) if int(tail) > 0 else ""
        return text


def _manifest(spec):
    return spec if isinstance(spec, dict) else spec.manifest()


class Lookup:
    """Objects fetched for one pod, read as the container helpers expect (``get(rtype, ns, name)``)."""

    def __init__(self, objects):
        self.objects = objects

    def get(self, rtype, namespace, name):
        return self.objects.get((rtype.plural, name))


_LISTENING = [0.0, set()]   # (when read, addresses): /proc/net/tcp costs ~30 ms on a busy machine


def _listening_ips(max_age=5.0):
    """Loopback addresses some process on this machine listens on (from /proc/net/tcp, read at
    most every ``max_age`` seconds), so that two embedded clusters running at once (parallel test
    runs) never hand out the same pod IP (each also starts at a random place in the range)."""
    if time.monotonic() - _LISTENING[0] < max_age:
        return _LISTENING[1]
    ips = set()
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if len(fields) > 3 and fields[3] == "0A":  # LISTEN
                    addr = fields[1].split(":")[0]
                    ips.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
    except (OSError, ValueError):
        pass
    _LISTENING[:] = [time.monotonic(), ips]
    return ips
