"""A pod's spec made into local processes' terms (see podruntime.py): its volumes as directories
of this machine (claims' volumes, secrets and configmaps written out, emptyDirs), each owned by the
pod's user; and for each container the argv, env, working directory and what the isolation layer
needs (identity, mounts at their mountPath, private directories, namespaces), with paths rewritten
where there are no mount namespaces."""

import base64
import os
import re
import sys

from .containers import image_default_command, resolve_env, _expand, _which
from .isolation import identity, private_dirs
from .resources import BY_PLURAL
from .snapshotdata import lock_read_only, unlock

T = BY_PLURAL
DEFAULT_HOME = "/home/jovyan"


class PodLaunch:
    """One pod's volumes and container launch specs on this node (``network``: the pod's
    ``PodNetwork`` once it has one)."""

    def __init__(self, kubelet, namespace, pod_dir):
        self.kubelet = kubelet
        self.namespace = namespace
        self.dir = pod_dir
        self.network = None

    async def prepare_volumes(self, pod):
        """{volume name: its directory on this machine}, each made ready for the pod's user."""
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
            elif volume.get("secret") or volume.get("configMap") or volume.get("projected"):
                path = os.path.join(volumes_dir, name)
                os.makedirs(path, exist_ok=True)
                if volume.get("projected"):
                    for i, source in enumerate(volume["projected"].get("sources") or []):
                        if source.get("serviceAccountToken"):
                            _write(path, source["serviceAccountToken"]["path"],
                                   lookup.objects[("token", f"{name}/{i}")].encode())
                        elif source.get("secret") or source.get("configMap"):
                            self._write_keys(path, source, lookup)
                        # (downwardAPI and clusterTrustBundle sources: not written here)
                else:
                    self._write_keys(path, volume, lookup)
                self.kubelet.isolation.own_volume(path, pod)
            else:   # emptyDir and anything else: a fresh directory for this pod
                path = os.path.join(volumes_dir, name)
                os.makedirs(path, exist_ok=True)
                self.kubelet.isolation.own_volume(path, pod)
            mounts[name] = path
        return mounts

    def _write_keys(self, path, volume, lookup):
        """A secret or configMap volume's keys as files (``volume``: the volume, or a projected
        volume's source, whose secret is named ``name`` rather than ``secretName``)."""
        if volume.get("secret"):
            ref = volume["secret"]
            obj = lookup.get(T["secrets"], self.namespace, ref.get("secretName") or ref.get("name")) or {}
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
            _write(path, target, value)

    def process_spec(self, pod, container, ip, mounts, gpus, lookup):
        """(argv, env, cwd, launch): what starts the container's process; ``launch`` is the rest of
        ``NodeIsolation.command``'s arguments (identity, mounts, hostPID, private dirs, hostIPC,
        the pod's network namespace)."""
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
                                                   bool(spec.get("hostIPC")), self.network and self.network.path)


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


def _write(directory, relative, data: bytes):
    full = os.path.join(directory, relative)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as f:
        f.write(data)
