"""One pod's containers on the node, as local processes (see kubelet.py): start, restart per the
restartPolicy, readiness probes, status reports through the node agent's API client, termination."""

import asyncio
import base64
import logging
import os
import re
import shutil
import signal
import sys

from .containers import ContainerError, image_default_command, image_id, resolve_env, _expand, _which
from .isolation import identity, private_dirs
from ptjaas_spawner.kube import ApiException
from .resources import BY_PLURAL
from .snapshotdata import lock_read_only, unlock
from .store import now_iso
from .objcopy import clone
from .processes import start_process

log = logging.getLogger("ptjaas.cluster")
T = BY_PLURAL
DEFAULT_HOME = "/home/jovyan"


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
                argv, env, cwd, launch = self._process_spec(pod, container, ip, mounts, gpus, lookup)
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
                locked = volume["persistentVolumeClaim"].get("readOnly") and claim["spec"].get("accessModes") == ["ReadOnlyMany"]
                if locked:
                    unlock(path)   # locked again below, after the pod's user is given the volume
                self.kubelet.isolation.own_claim(path, pod, self.kubelet.volumes_dir)
                if locked:
                    lock_read_only(path)   # a volume only ever mounted read-only: nothing in a pod can write it
            elif volume.get("hostPath"):
                path = volume["hostPath"]["path"]
            elif volume.get("secret") or volume.get("configMap"):
                path = os.path.join(volumes_dir, name)
                os.makedirs(path, exist_ok=True)
                self._write_keys(path, volume, lookup)
                self.kubelet.isolation.own_volume(path, pod)
            else:   # emptyDir and anything else: a fresh directory for this pod
                path = os.path.join(volumes_dir, name)
                os.makedirs(path, exist_ok=True)
                self.kubelet.isolation.own_volume(path, pod)
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
        who = identity(pod, container)
        table = []
        read_only = {}
        always_read_only = {v["name"] for v in pod["spec"].get("volumes") or []   # as a kubelet mounts them
                            if any(k in v for k in ("secret", "configMap", "projected", "downwardAPI"))}
        for m in container.get("volumeMounts") or []:
            local = mounts[m["name"]]
            if m.get("subPath"):
                local = os.path.join(local, m["subPath"])
                if not os.path.exists(local):
                    os.makedirs(local, exist_ok=True)
                    self.kubelet.isolation.own_volume(local, pod)
            table.append((m["mountPath"].rstrip("/") or "/", local))
            read_only[table[-1][0]] = bool(m.get("readOnly")) or m["name"] in always_read_only
        table.sort(key=lambda pair: -len(pair[0]))
        rootfs = os.path.join(self.dir, "rootfs")
        rewriting = self.kubelet.isolation.rewrite_paths
        if rewriting:   # no mount namespace: a nested mount is reached through a symlink
            link_nested_mounts(table)
        extra_mounts = []

        def rewrite(text):
            text = text.replace("0.0.0.0", ip)
            for mount_path, local in table if rewriting else ():
                text = re.sub(r"(?<![\w.-])" + re.escape(mount_path) + r"(?=/|$|[^\w.-])", lambda _m: local, text)
            return text

        def local_path(path):
            """Where ``path`` of the container is on this machine (created, the pod's user's);
            the path the process sees: that one, or ``path`` itself in a mount namespace."""
            path = path.rstrip("/") or "/"
            for mount_path, local in table:
                if path == mount_path or path.startswith(mount_path + "/"):
                    full = local + path[len(mount_path):]
                    break
            else:
                full = os.path.join(rootfs, path.lstrip("/"))
                if not any(path == m or path.startswith(m + "/") for _, m, _ in extra_mounts):
                    extra_mounts.append((full, path, False))   # the image's own directory: the pod's alone
            if not os.path.isdir(full):
                os.makedirs(full, exist_ok=True)
                self.kubelet.isolation.own_volume(full, pod, who if full.startswith(rootfs + "/") else None)
            return full if rewriting else path

        env = resolve_env(lookup, pod, container, ip)
        env_map = dict(env)
        home = local_path(env_map.get("HOME", DEFAULT_HOME))
        cwd = local_path(container.get("workingDir") or DEFAULT_HOME)
        bin_dir = os.path.dirname(sys.executable)
        final = {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOSTNAME": pod["metadata"]["name"]}
        for key, value in env:
            final[key] = rewrite(_expand(value, env_map))
        final["HOME"] = home
        final["PTJAAS_POD_IP"] = ip
        if os.geteuid() == 0 and who.uid == 0:
            # A container that runs as root (it asked for runAsUser: 0): Jupyter servers must be
            # told root is fine.
            node_config = os.path.join(self.kubelet.state_dir, "node-jupyter-config")
            if not os.path.exists(os.path.join(node_config, "jupyter_server_config.json")):
                os.makedirs(node_config, exist_ok=True)
                with open(os.path.join(node_config, "jupyter_server_config.json"), "w") as f:
                    f.write('{"ServerApp": {"allow_root": true}}\n')
            final["JUPYTER_CONFIG_PATH"] = ":".join(p for p in (final.get("JUPYTER_CONFIG_PATH"), node_config) if p)
            extra_mounts.append((node_config, node_config, True))   # seen even where a private /tmp covers it
        if gpus:
            final["CUDA_VISIBLE_DEVICES"] = final["NVIDIA_VISIBLE_DEVICES"] = ",".join(str(d) for d in gpus)
        argv = [rewrite(_expand(a, env_map)) for a in (container.get("command") or []) + (container.get("args") or [])]
        argv = image_default_command(argv, final)
        resolved = _which(argv[0], final["PATH"])
        if resolved is None:
            resolved = argv[0]
        volumes = [(local, mount_path, read_only[mount_path]) for mount_path, local in table] + extra_mounts
        volumes.sort(key=lambda m: len(m[1]))   # parents before what is mounted inside them
        spec = pod["spec"]
        return [resolved] + argv[1:], final, cwd, (who, volumes, bool(spec.get("hostPID")), private_dirs(container),
                                                   bool(spec.get("hostIPC")))

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


def link_nested_mounts(table):
    """A mount inside another (``~/snapshots/x`` inside the home): the path in the outer
    volume's directory is a symlink to the inner volume's, so the pod's processes find it."""
    for mount_path, local in table:
        for outer_path, outer_local in table:
            if outer_path != mount_path and mount_path.startswith(outer_path.rstrip("/") + "/"):
                link = os.path.join(outer_local, mount_path[len(outer_path.rstrip("/")) + 1:])
                os.makedirs(os.path.dirname(link), exist_ok=True)
                if os.path.islink(link):
                    os.unlink(link)
                if not os.path.exists(link):
                    os.symlink(local, link)
                break


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
    """Pods die with the node agent's process if it goes away without a clean stop."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except Exception:
        pass
