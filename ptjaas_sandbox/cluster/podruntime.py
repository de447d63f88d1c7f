"""One pod's containers on the node, as local processes (see kubelet.py): start, restart per the
restartPolicy, readiness probes, status reports through the node agent's API client, termination.
Its volumes and each container's process spec: ``podlaunch.py``; its network namespace:
``podnetwork.py``; the status fields as a kubelet writes them: ``podstatus.py``."""

import asyncio
import logging
import os
import shutil
import signal

from . import imagepull
from .containers import ContainerError, image_id
from ptjaas_spawner.kube import ApiException
from .store import now_iso
from .objcopy import clone
from .processes import start_process
from .podlaunch import PodLaunch
from .podnetwork import PodNetwork, declared_ports, host_services, isolated
from .podstatus import restart_count, set_condition, waiting_status, was_running

log = logging.getLogger("ptjaas.cluster")


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
        self.network = None       # the pod's network namespace (podnetwork.py), where the node makes them
        self.launch = PodLaunch(kubelet, self.namespace, self.dir)   # spec -> volumes and processes (podlaunch.py)

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
            self.status = clone(pod.get("status") or {})
        before = clone(self.status)
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
                await self.kubelet.client.patch(self.path + "/status", {"status": clone(self.status)})
                delay = 0.1
            except (ApiException, OSError) as e:
                if getattr(e, "status", None) == 404 or self.kubelet.client.closing:
                    return
                log.warning("status of pod %s/%s not reported: %s", self.namespace, self.name, e)
                self._dirty = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)

    def reconcile(self, pod):
        """Report the status again where the API's copy of the pod differs from it in phase or in a
        condition this node reports (the node lifecycle controller marks the pods of a node it
        lost touch with NotReady), as a kubelet's status manager does."""
        if self.status is None or self._dirty or self.shutdown or (self._flusher and not self._flusher.done()):
            return
        theirs = pod.get("status") or {}
        conditions = {c.get("type"): c.get("status") for c in theirs.get("conditions") or []}
        if theirs.get("phase") != self.status.get("phase") or any(
                conditions.get(c["type"]) != c.get("status") for c in self.status.get("conditions") or []):
            self._dirty = True
            self._flusher = asyncio.ensure_future(self._flush())

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
            if self.kubelet.isolation.network and isolated(pod) and self.network is None:
                self.network = self.launch.network = await PodNetwork(self.name, ip, declared_ports(pod),
                                                                      host_services(pod)).open()
                if self.terminating or self.shutdown:   # stopped while its namespace was being made
                    return self._close_network()
            gpus = await self.kubelet.allocate_gpus(pod)
            mounts = await self.launch.prepare_volumes(pod)
            host_ip = "127.0.0.1"

            def started(status):
                status.update({"phase": "Pending", "hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "podIP": ip,
                               "podIPs": [{"ip": ip}], "startTime": status.get("startTime") or now_iso()})
                set_condition(status, "Initialized", "False" if pod["spec"].get("initContainers") else "True")
                set_condition(status, "Ready", "False", "ContainersNotReady")
                set_condition(status, "ContainersReady", "False", "ContainersNotReady")
                status["containerStatuses"] = [waiting_status(c, "ContainerCreating", status) for c in pod["spec"]["containers"]]
            self._update_status(started)
            for c in pod["spec"].get("initContainers") or []:
                code = await self._run_to_completion(pod, c, ip, mounts, gpus)
                if code != 0:
                    return self._finish_failed_init(c, code)
            self._update_status(lambda s: set_condition(s, "Initialized", "True"))
            await asyncio.gather(*(self._supervise(pod, c, ip, mounts, gpus) for c in pod["spec"]["containers"]))
            if not self.terminating:
                self._set_terminal_phase()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s/%s failed in the node agent", self.namespace, self.name)

    async def _pull(self, container, restarts, init):
        """Until the image can be "pulled", its waiting states and events (``imagepull``); True
        if the pod was deleted meanwhile."""
        def waiting(reason, message):
            self._set_container(container, {"waiting": {"reason": reason, "message": message}},
                                ready=False, restarts=restarts, init=init)
        return await imagepull.pull(self.kubelet.images, container["image"], self._event, waiting,
                                    self._killed_within)

    async def _killed_within(self, seconds):
        try:
            await asyncio.wait_for(self.kill_event.wait(), timeout=seconds)
            return True
        except asyncio.TimeoutError:
            return False

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
            set_condition(status, "Ready", "False", "PodCompleted")
            set_condition(status, "ContainersReady", "False", "PodCompleted")
        self._update_status(terminal)

    async def _supervise(self, pod, container, ip, mounts, gpus):
        """Run one container, restarting it per the pod's restartPolicy."""
        policy = pod["spec"].get("restartPolicy", "Always")
        restarts = restart_count(pod, container["name"])
        if pod.get("status", {}).get("startTime") and was_running(pod, container["name"]):
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
                argv, env, cwd, launch = self.launch.process_spec(pod, container, ip, mounts, gpus, lookup)
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
        if await self._pull(container, restarts, init):
            return 1   # the pod was deleted while its image could not be pulled
        self._event("Normal", "Pulled", f'Container image "{container["image"]}" already present on machine')
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        current = os.path.join(self.dir, "logs", f"{name}.log")
        if os.path.exists(current):   # a new instance of the container: the last one's log is "previous"
            os.replace(current, os.path.join(self.dir, "logs", f"{name}.previous.log"))
        logfile = open(current, "ab")
        try:
            argv, cwd = self.kubelet.isolation.command(argv, cwd, *launch)
            # as root podexec sets the parent-death signal itself: no preexec_fn, so Python vforks
            preexec = None if self.kubelet.isolation.root else _die_with_parent
            proc = await start_process(argv, env=env, cwd=cwd, stdout=logfile, preexec_fn=preexec)
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
            results = [await (self.network.port_open(port) if self.network else _port_open(ip, port)) for port in ports]
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
                set_condition(status, "ContainersReady", "True" if all_ready else "False", None if all_ready else "ContainersNotReady")
                set_condition(status, "Ready", "True" if all_ready else "False", None if all_ready else "ContainersNotReady")
        self._update_status(mutate)

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
        self._close_network()
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
        self._close_network()

    def _close_network(self):
        if self.network is not None:
            self.network.close()
            self.network = self.launch.network = None


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
    """Pods die with the node agent's process if it goes away without a clean stop."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except Exception:
        pass
