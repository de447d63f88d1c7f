"""The node agent: runs each scheduled pod's containers as local processes.

Each pod gets its own loopback address (127.100.x.y), reported as ``status.podIP``; ``0.0.0.0`` in
env and args is rewritten to it, so many pods can listen on port 8888 at once. Volume mounts map
to local directories and paths under a mountPath are rewritten in env, args and workingDir.
Images are not pulled: they are taken to be Jupyter Docker Stacks-like (HOME and working
directory ``/home/jovyan``), and commands run with this machine's Python environment on PATH.
"""

import asyncio
import base64
import re
import socket
import copy
import logging
import os
import shutil
import signal
import sys

from . import admission, errors
from .kubeclient import ApiError, EventSink, stop_tasks
from .nodeserver import serve_logs
from .containers import ContainerError, image_default_command, image_id, resolve_env, _expand, _which
from .quantity import parse_quantity
from .resources import BY_PLURAL
from .store import now_iso, now_micro

log = logging.getLogger("ptjaas.cluster")
T = BY_PLURAL
DEFAULT_HOME = "/home/jovyan"
GPU_RESOURCE_SUFFIX = "/gpu"


class Kubelet:
    """A node agent, a plain API client: it watches the pods bound to its nodes, runs them, and
    reports their status and events over the API (embedded server or real kube-apiserver alike)."""

    def __init__(self, client, state_dir, nodes=(), log_endpoint=None):
        self.client = client
        self.state_dir = state_dir
        self.pods_dir = os.path.join(state_dir, "pods")
        self.node_specs = list(nodes)   # registered at start (the embedded cluster seeds its own)
        self.log_endpoint = log_endpoint   # (cert file, key file, port): serve /containerLogs over HTTPS
        self._log_server = None
        self.pods = {}            # uid -> PodRuntime
        self.cache = {}           # uid -> the pod as last seen on the watch
        self.ips = {}             # uid -> ip
        self.gpus = {}            # uid -> [device index]
        self._pending = False
        self._tasks = []
        self._heartbeat_task = None
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
        self._tasks = [asyncio.ensure_future(self.client.inform(
                           "/api/v1/pods", self.on_pod, params={"fieldSelector": "spec.nodeName!="},
                           on_sync=self.on_pods_listed))]
        return self

    async def register(self, spec):
        """Create the Node (as a kubelet registers itself) and report its status."""
        manifest = spec if isinstance(spec, dict) else spec.manifest()
        path = f"/api/v1/nodes/{manifest['metadata']['name']}"
        try:
            await self.client.create("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                                       "metadata": manifest["metadata"], "spec": manifest.get("spec") or {}})
        except ApiError as e:
            if e.code != 409:
                raise
        status = copy.deepcopy(manifest["status"])
        if self.log_endpoint:
            status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": self.log_endpoint[2]}}
        for c in status.get("conditions") or []:
            c.setdefault("lastHeartbeatTime", now_iso())
            c.setdefault("lastTransitionTime", now_iso())
        await self.client.patch(path + "/status", {"status": status})

    async def _heartbeat(self, every=10):
        """Renew each registered node's Lease (kube-node-lease), as a kubelet does, so that the
        node lifecycle controller keeps the node Ready (and untainted)."""
        while not self.client.closing:
            for spec in self.node_specs:
                name = spec["metadata"]["name"] if isinstance(spec, dict) else spec.name
                path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
                renew = {"spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now_micro()}}
                try:
                    await self.client.patch(path, renew)
                except ApiError as e:
                    if e.code == 404:
                        await self.client.create(path.rsplit("/", 1)[0], dict(renew, metadata={"name": name}))
                except Exception as e:
                    log.debug("lease of node %s not renewed: %s", name, e)
            try:
                await asyncio.sleep(every)
            except asyncio.CancelledError:
                return

    async def shutdown(self):
        self.client.closing = True
        if self._log_server is not None:
            self._log_server.stop()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        await stop_tasks(self._tasks)
        if self.events is not None:
            self.events.close()
        await asyncio.gather(*(rt.stop_for_shutdown() for rt in list(self.pods.values())), return_exceptions=True)

    # --- the pods watch --------------------------------------------------------------------
    def on_pods_listed(self, pods):
        self.cache = {p["metadata"]["uid"]: p for p in pods}
        self.kick()

    def on_pod(self, event_type, pod):
        uid = pod["metadata"]["uid"]
        if event_type == "DELETED":
            self.cache.pop(uid, None)
        else:
            self.cache[uid] = pod
        self.kick()

    def kick(self):
        if not self._pending and self.loop is not None:
            self._pending = True
            self.loop.call_soon(self.sync)

    def sync(self):
        self._pending = False
        for uid, pod in list(self.cache.items()):
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
        for uid in list(self.pods):
            if uid not in self.cache and not self.pods[uid].terminating:   # removed without a grace period
                self.pods[uid].terminate(0, remove=False)

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
        return Lookup({key: obj for key, obj in zip(names, found) if obj is not None})

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

    def read_log(self, pod, container=None, tail=None):
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
        path = os.path.join(self.pods_dir, pod["metadata"]["uid"], "logs", f"{name}.log")
        try:
            with open(path, errors="replace") as f:
                text = f.read()
        except FileNotFoundError:
            text = ""
        if tail is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(tail):]) if int(tail) > 0 else ""
        return text


class Lookup:
    """Objects fetched for one pod, read as the container helpers expect (``get(rtype, ns, name)``)."""

    def __init__(self, objects):
        self.objects = objects

    def get(self, rtype, namespace, name):
        return self.objects.get((rtype.plural, name))


class PodRuntime:
    """One pod's containers on this node."""

    def __init__(self, kubelet, pod):
        self.kubelet = kubelet
        self.uid = pod["metadata"]["uid"]
        self.namespace = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.dir = os.path.join(kubelet.pods_dir, self.uid)
        self.status = None        # what this node reports; sent by _flush, latest wins
        self._dirty = False
        self._flusher = None
        self.procs = {}
        self.task = None
        self.terminating = False
        self.grace = 30
        self.kill_event = asyncio.Event()
        self.shutdown = False

    def pod(self):
        return self.kubelet.cache.get(self.uid)

    @property
    def path(self):
        return f"/api/v1/namespaces/{self.namespace}/pods/{self.name}"

    def start(self):
        self.task = asyncio.ensure_future(self.run())

    # --- status helpers ----------------------------------------------------------------
    def _update_status(self, mutate):
        if self.shutdown:   # the node is going down: like a real kubelet, it reports nothing more
            return None
        pod = self.pod()
        if pod is None:
            return None
        if self.status is None:
            self.status = copy.deepcopy(pod.get("status") or {})
        before = copy.deepcopy(self.status)
        mutate(self.status)
        if self.status != before:
            self._dirty = True
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.ensure_future(self._flush())
        return pod

    async def _flush(self):
        """Send the latest status (a merge patch of the status subresource), until none is pending."""
        delay = 0.1
        while self._dirty and not self.shutdown:
            self._dirty = False
            try:
                await self.kubelet.client.patch(self.path + "/status", {"status": copy.deepcopy(self.status)})
                delay = 0.1
            except ApiError as e:
                if e.code == 404:
                    return
                log.warning("status of pod %s/%s not reported: %s", self.namespace, self.name, e)
                self._dirty = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)

    def _event(self, event_type, reason, message):
        pod = self.pod()
        if pod is not None:
            self.kubelet.record_event(pod, event_type, reason, message)

    # --- lifecycle ---------------------------------------------------------------------
    async def run(self):
        pod = self.pod()
        if pod is None:
            return
        try:
            ip = self.kubelet.allocate_ip(self.uid)
            gpus = await self.kubelet.allocate_gpus(pod)
            mounts = await self._prepare_volumes(pod)
            host_ip = "127.0.0.1"

            def started(status):
                status.update({"phase": "Pending", "hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "podIP": ip,
                               "podIPs": [{"ip": ip}], "startTime": status.get("startTime") or now_iso()})
                _condition(status, "Initialized", "False" if pod["spec"].get("initContainers") else "True")
                _condition(status, "Ready", "False", "ContainersNotReady")
                _condition(status, "ContainersReady", "False", "ContainersNotReady")
                status["containerStatuses"] = [_waiting(c, "ContainerCreating", status) for c in pod["spec"]["containers"]]
            self._update_status(started)
            for c in pod["spec"].get("initContainers") or []:
                code = await self._run_to_completion(pod, c, ip, mounts, gpus)
                if code != 0:
                    return self._finish_failed_init(c, code)
            self._update_status(lambda s: _condition(s, "Initialized", "True"))
            await asyncio.gather(*(self._supervise(pod, c, ip, mounts, gpus) for c in pod["spec"]["containers"]))
            if not self.terminating:
                self._set_terminal_phase()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s/%s failed in the node agent", self.namespace, self.name)

    def _finish_failed_init(self, container, code):
        def failed(status):
            status["phase"] = "Failed" if self.pod()["spec"].get("restartPolicy") == "Never" else "Pending"
            status["initContainerStatuses"] = [{"name": container["name"], "ready": False, "restartCount": 0,
                                                "image": container["image"], "imageID": image_id(container["image"]),
                                                "state": {"terminated": {"exitCode": code, "reason": "Error"}}}]
        self._update_status(failed)

    def _set_terminal_phase(self):
        def terminal(status):
            codes = [cs.get("state", {}).get("terminated", {}).get("exitCode") for cs in status.get("containerStatuses", [])]
            status["phase"] = "Succeeded" if all(code == 0 for code in codes) else "Failed"
            _condition(status, "Ready", "False", "PodCompleted")
            _condition(status, "ContainersReady", "False", "PodCompleted")
        self._update_status(terminal)

    async def _supervise(self, pod, container, ip, mounts, gpus):
        """Run one container, restarting it per the pod's restartPolicy."""
        policy = pod["spec"].get("restartPolicy", "Always")
        restarts = _restart_count(pod, container["name"])
        if pod.get("status", {}).get("startTime") and _was_running(pod, container["name"]):
            restarts += 1    # the node restarted under a running container: a real kubelet counts a restart
        backoff = 0.5
        while not self.terminating:
            code = await self._run_container(pod, container, ip, mounts, gpus, restarts)
            if self.terminating or self.shutdown:
                return
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                return
            restarts += 1
            self._set_container(container, {"waiting": {"reason": "CrashLoopBackOff",
                                                        "message": f"back-off restarting failed container {container['name']}"}},
                                ready=False, restarts=restarts, last=code)
            self._event("Warning", "BackOff", f"Back-off restarting failed container {container['name']} in pod {self.name}")
            try:
                await asyncio.wait_for(self.kill_event.wait(), timeout=backoff)
                return
            except asyncio.TimeoutError:
                backoff = min(backoff * 2, 10)

    async def _run_to_completion(self, pod, container, ip, mounts, gpus):
        return await self._run_container(pod, container, ip, mounts, gpus, 0, init=True)

    async def _run_container(self, pod, container, ip, mounts, gpus, restarts, init=False):
        name = container["name"]
        backoff, reported = 0.25, None
        while True:   # a missing secret/configmap holds the container; retried as a kubelet's pod worker does
            try:
                lookup = await self.kubelet.lookup(pod)
                argv, env, cwd = self._process_spec(pod, container, ip, mounts, gpus, lookup)
                break
            except ContainerError as e:
                if str(e) != reported:
                    reported = str(e)
                    self._event("Warning", "Failed", f"Error: {e}")
                    self._set_container(container, {"waiting": {"reason": "CreateContainerConfigError",
                                                                "message": str(e)}},
                                        ready=False, restarts=restarts, init=init)
                try:
                    await asyncio.wait_for(self.kill_event.wait(), timeout=backoff)
                    return 1
                except asyncio.TimeoutError:
                    backoff = min(backoff * 2, 5)
        self._event("Normal", "Pulled", f'Container image "{container["image"]}" already present on machine')
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        logfile = open(os.path.join(self.dir, "logs", f"{name}.log"), "ab")
        try:
            proc = await asyncio.create_subprocess_exec(*argv, env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
                                                        stdout=logfile, stderr=asyncio.subprocess.STDOUT,
                                                        start_new_session=True, preexec_fn=_die_with_parent)
        except OSError as e:
            logfile.close()
            message = (f'failed to create containerd task: failed to create shim task: OCI runtime create failed: '
                       f'exec: "{argv[0]}": {e.strerror}')
            self._event("Warning", "Failed", f"Error: {message}")
            self._set_container(container, {"terminated": {"exitCode": 128, "reason": "StartError", "message": message,
                                                           "finishedAt": now_iso()}}, ready=False, restarts=restarts, init=init)
            return 128
        logfile.close()
        self.procs[name] = proc
        self._event("Normal", "Created", f"Created container {name}")
        self._event("Normal", "Started", f"Started container {name}")
        started_at = now_iso()
        self._set_container(container, {"running": {"startedAt": started_at}}, ready=False, restarts=restarts, init=init)
        if not init:
            self._update_status(lambda s: s.update(phase="Running"))
            probe = asyncio.ensure_future(self._probe_ready(container, ip, proc, restarts, started_at))
        code = await proc.wait()
        if not init:
            probe.cancel()
        self.procs.pop(name, None)
        reason = "Completed" if code == 0 else ("Error" if code > 0 else "Error")
        exit_code = code if code >= 0 else 128 - code
        self._set_container(container, {"terminated": {"exitCode": exit_code, "reason": reason, "startedAt": started_at,
                                                       "finishedAt": now_iso(), "containerID": f"ptjaas://{proc.pid}"}},
                            ready=False, restarts=restarts, init=init)
        return exit_code

    async def _probe_ready(self, container, ip, proc, restarts, started_at):
        try:
            await self._probe(container, ip, proc, restarts, started_at)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("readiness probe of %s/%s failed", self.namespace, self.name)

    async def _probe(self, container, ip, proc, restarts, started_at):
        ports = [p["containerPort"] for p in container.get("ports") or []]
        probe = container.get("readinessProbe") or {}
        if probe.get("httpGet") or probe.get("tcpSocket"):
            port = (probe.get("httpGet") or probe.get("tcpSocket")).get("port")
            ports = [port] if isinstance(port, int) else [p["containerPort"] for p in container.get("ports") or [] if p.get("name") == port]
        delay = 0.02
        while ports and proc.returncode is None:
            results = [await _port_open(ip, port) for port in ports]
            if all(results):
                break
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        if proc.returncode is None:
            self._set_container(container, {"running": {"startedAt": started_at}}, ready=True, restarts=restarts)

    def _set_container(self, container, state, ready, restarts, last=None, init=False):
        key = "initContainerStatuses" if init else "containerStatuses"
        pod = self.pod()
        if pod is None:
            return

        def mutate(status):
            statuses = status.setdefault(key, [])
            entry = next((s for s in statuses if s["name"] == container["name"]), None)
            if entry is None:
                entry = {"name": container["name"]}
                statuses.append(entry)
            if last is not None:
                entry["lastState"] = {"terminated": {"exitCode": last, "reason": "Error" if last else "Completed"}}
            entry.update({"state": state, "ready": ready, "restartCount": restarts, "image": container["image"],
                          "imageID": image_id(container["image"]), "started": "running" in state,
                          "containerID": f"ptjaas://{self.uid}/{container['name']}"})
            if not init:
                all_ready = all(s.get("ready") for s in statuses) and len(statuses) == len(pod["spec"]["containers"])
                _condition(status, "ContainersReady", "True" if all_ready else "False", None if all_ready else "ContainersNotReady")
                _condition(status, "Ready", "True" if all_ready else "False", None if all_ready else "ContainersNotReady")
        self._update_status(mutate)

    # --- spec → local process -----------------------------------------------------------
    async def _prepare_volumes(self, pod):
        mounts = {}
        lookup = await self.kubelet.lookup(pod)
        volumes_dir = os.path.join(self.dir, "volumes")
        for volume in pod["spec"].get("volumes") or []:
            name = volume["name"]
            if volume.get("persistentVolumeClaim"):
                claim = await self.kubelet.client.get(
                    f"/api/v1/namespaces/{self.namespace}/persistentvolumeclaims/{volume['persistentVolumeClaim']['claimName']}")
                pv = claim and claim["spec"].get("volumeName") and \
                    await self.kubelet.client.get(f"/api/v1/persistentvolumes/{claim['spec']['volumeName']}")
                path = pv and (pv["spec"].get("hostPath") or {}).get("path")
                if not path:
                    raise RuntimeError(f"claim for volume {name} is not bound")
                os.makedirs(path, exist_ok=True)
            elif volume.get("hostPath"):
                path = volume["hostPath"]["path"]
            elif volume.get("secret") or volume.get("configMap"):
                path = os.path.join(volumes_dir, name)
                os.makedirs(path, exist_ok=True)
                self._write_keys(path, volume, lookup)
            else:   # emptyDir and anything else: a fresh directory for this pod
                path = os.path.join(volumes_dir, name)
                os.makedirs(path, exist_ok=True)
            mounts[name] = path
        return mounts

    def _write_keys(self, path, volume, lookup):
        if volume.get("secret"):
            obj = lookup.get(T["secrets"], self.namespace, volume["secret"]["secretName"]) or {}
            data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        else:
            obj = lookup.get(T["configmaps"], self.namespace, volume["configMap"]["name"]) or {}
            data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        items = (volume.get("secret") or volume.get("configMap")).get("items")
        for key, value in data.items():
            target = key
            if items:
                match = next((i for i in items if i["key"] == key), None)
                if match is None:
                    continue
                target = match.get("path", key)
            full = os.path.join(path, target)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(value)

    def _process_spec(self, pod, container, ip, mounts, gpus, lookup):
        table = []
        for m in container.get("volumeMounts") or []:
            local = mounts[m["name"]]
            if m.get("subPath"):
                local = os.path.join(local, m["subPath"])
                os.makedirs(local, exist_ok=True)
            table.append((m["mountPath"].rstrip("/") or "/", local))
        table.sort(key=lambda pair: -len(pair[0]))
        rootfs = os.path.join(self.dir, "rootfs")

        def rewrite(text):
            text = text.replace("0.0.0.0", ip)
            for mount_path, local in table:
                text = re.sub(r"(?<![\w.-])" + re.escape(mount_path) + r"(?=/|$|[^\w.-])", lambda _m: local, text)
            return text

        def local_path(path):
            for mount_path, local in table:
                if path == mount_path or path.startswith(mount_path + "/"):
                    return local + path[len(mount_path):]
            full = os.path.join(rootfs, path.lstrip("/"))
            os.makedirs(full, exist_ok=True)
            return full

        env = resolve_env(lookup, pod, container, ip)
        env_map = dict(env)
        home = local_path(env_map.get("HOME", DEFAULT_HOME))
        cwd = local_path(container.get("workingDir") or DEFAULT_HOME)
        os.makedirs(cwd, exist_ok=True)
        bin_dir = os.path.dirname(sys.executable)
        final = {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOSTNAME": pod["metadata"]["name"]}
        for key, value in env:
            final[key] = rewrite(_expand(value, env_map))
        final["HOME"] = home
        final["PTJAAS_POD_IP"] = ip
        if os.geteuid() == 0:
            # Containers run as this machine's user. A real pod runs as the image's user (jovyan);
            # where that user is root here, Jupyter servers must be told root is fine.
            node_config = os.path.join(self.kubelet.state_dir, "node-jupyter-config")
            if not os.path.exists(os.path.join(node_config, "jupyter_server_config.json")):
                os.makedirs(node_config, exist_ok=True)
                with open(os.path.join(node_config, "jupyter_server_config.json"), "w") as f:
                    f.write('{"ServerApp": {"allow_root": true}}\n')
            final["JUPYTER_CONFIG_PATH"] = ":".join(p for p in (final.get("JUPYTER_CONFIG_PATH"), node_config) if p)
        if gpus:
            final["CUDA_VISIBLE_DEVICES"] = final["NVIDIA_VISIBLE_DEVICES"] = ",".join(str(d) for d in gpus)
        argv = [rewrite(_expand(a, env_map)) for a in (container.get("command") or []) + (container.get("args") or [])]
        argv = image_default_command(argv, final)
        resolved = _which(argv[0], final["PATH"])
        if resolved is None:
            resolved = argv[0]
        return [resolved] + argv[1:], final, cwd

    # --- termination ---------------------------------------------------------------------
    def terminate(self, grace, remove=True):
        self.terminating = True
        self.grace = grace
        self.kill_event.set()
        asyncio.ensure_future(self._terminate(grace, remove))

    def shorten(self, grace):
        self.grace = grace
        self._shortened = True
        for proc in self.procs.values():
            if grace == 0:
                _signal(proc, signal.SIGKILL)

    async def _terminate(self, grace, remove):
        for name, proc in list(self.procs.items()):
            self._event("Normal", "Killing", f"Stopping container {name}")
            _signal(proc, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        deadline = asyncio.get_running_loop().time() + grace
        for proc in list(self.procs.values()):
            remaining = max(0.0, deadline - asyncio.get_running_loop().time())
            try:
                await asyncio.wait_for(proc.wait(), timeout=remaining if grace > 0 else 5)
            except asyncio.TimeoutError:
                _signal(proc, signal.SIGKILL)
                await proc.wait()
        if self.task is not None:
            self.task.cancel()
        if remove:
            await self.kubelet.finish_delete({"metadata": {"namespace": self.namespace, "name": self.name, "uid": self.uid}})
        self.kubelet._release(self.uid)
        shutil.rmtree(os.path.join(self.dir, "volumes"), ignore_errors=True)
        shutil.rmtree(os.path.join(self.dir, "rootfs"), ignore_errors=True)

    async def stop_for_shutdown(self):
        """The node goes down: stop the processes but keep the pod (it restarts with the node)."""
        self.shutdown = True
        self.kill_event.set()
        for proc in list(self.procs.values()):
            _signal(proc, signal.SIGTERM)
        for proc in list(self.procs.values()):
            try:
                await asyncio.wait_for(proc.wait(), timeout=5)
            except asyncio.TimeoutError:
                _signal(proc, signal.SIGKILL)
                await proc.wait()
        if self.task is not None:
            self.task.cancel()


def _condition(status, ctype, value, reason=None):
    conditions = status.setdefault("conditions", [])
    entry = next((c for c in conditions if c["type"] == ctype), None)
    if entry is None:
        entry = {"type": ctype}
        conditions.append(entry)
    if entry.get("status") != value:
        entry["lastTransitionTime"] = now_iso()
    entry.update({"status": value, "lastProbeTime": None})
    if reason:
        entry["reason"] = reason
    else:
        entry.pop("reason", None)


def _waiting(container, reason, status):
    return {"name": container["name"], "ready": False, "restartCount": 0, "image": container["image"],
            "imageID": "", "started": False, "state": {"waiting": {"reason": reason}}}


def _restart_count(pod, name):
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs["name"] == name:
            return cs.get("restartCount", 0)
    return 0


def _was_running(pod, name):
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs["name"] == name:
            return "running" in (cs.get("state") or {})
    return False


async def _port_open(ip, port):
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout=0.5)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


def _signal(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _die_with_parent():
    """Pods die with the cluster's thread if it goes away without a clean stop."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except Exception:
        pass


def _listening_ips():
    """Loopback addresses some process on this machine listens on (from /proc/net/tcp), so that
    two embedded clusters running at once (parallel test runs) never hand out the same pod IP."""
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
    return ips
