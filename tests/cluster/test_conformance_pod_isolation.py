"""Pods kept apart as a container runtime keeps them, probed as a hostile user would: two pods of
the same uid (every notebook runs as jovyan, 1000) in two namespaces; one leaves 0600 files in
/tmp, /dev/shm and /run, the other cannot see them; the machine's files are read-only but for a
pod's volumes; a root pod with ``capabilities.drop: [ALL]`` has no capability left. And Pod
Security Admission, with the real server's messages: a namespace labelled ``baseline`` refuses
hostPath, privileged and host-namespace pods, one labelled ``restricted`` root pods, and both
admit a pod made as ptjaas makes them. The node agent is ours on both backends."""

import json
import os

import pytest

from ptjaas_sandbox.cluster.podexec import namespaces_work
from tests.cluster.k8s_conformance import HTTP_SERVER, POD_NAME_ENV, SLEEP_FOREVER, assert_status, http_get, py_pod
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(90)

needs_namespaces = pytest.mark.skipif(
    os.geteuid() != 0 or not namespaces_work(),
    reason="pods are isolated only where the node agent is root and may create mount namespaces")

LEAVE_FILES = ("import json, os, sys, tempfile, time\npaths = []\n"
               "for d in ('/tmp', '/dev/shm', '/run'):\n"
               "    fd, p = tempfile.mkstemp(prefix='secret-', dir=d)\n"
               "    os.write(fd, b'mine'); os.close(fd); paths.append(p)\n"
               "print(json.dumps(paths), flush=True)\n" + SLEEP_FOREVER)

LOOK = ("import json, os, sys\nwanted = json.loads(sys.argv[1])\n"
        "seen = [n for d in ('/tmp', '/dev/shm', '/run') for n in os.listdir(d) if n.startswith('secret-')]\n"
        "read = {}\nfor p in wanted:\n"
        "    try:\n        read[p] = open(p).read()\n    except OSError as e:\n        read[p] = type(e).__name__\n"
        "wrote = {}\nfor d in sys.argv[2:]:\n"
        "    try:\n        open(os.path.join(d, 'hostile'), 'w').close(); wrote[d] = 'ok'\n"
        "    except OSError as e:\n        wrote[d] = e.strerror\n"
        "print(json.dumps({'seen': seen, 'read': read, 'wrote': wrote}))")

CAPS = "print(open('/proc/self/status').read().split('CapEff:')[1].split()[0])"


def last_json(kube, ns, name):
    return json.loads(kube.log(ns, name).strip().splitlines()[-1])


@needs_namespaces
def test_a_pod_cannot_see_another_pods_private_files_and_the_machine_is_read_only(kube):
    alice, bob = kube.namespace("alice"), kube.namespace("bob")
    kube.create_pod(alice, py_pod("leaver", LEAVE_FILES, grace=0))
    kube.wait_phase(alice, "leaver", "Running")
    paths = wait_for(lambda: kube.log(alice, "leaver").strip() and json.loads(kube.log(alice, "leaver")),
                     timeout=20, message="alice's pod left its files")
    assert len(paths) == 3
    scratch = [{"name": "scratch", "emptyDir": {}}, {"name": "inner", "emptyDir": {}}]
    pod = py_pod("looker", LOOK, json.dumps(paths), "/etc", "/usr", os.getcwd(), "/home/jovyan",
                 "/home/jovyan/inner", "/tmp", volumes=scratch, mounts=[{"name": "scratch", "mountPath": "/home/jovyan"},
                                          {"name": "inner", "mountPath": "/home/jovyan/inner"}])
    kube.create_pod(bob, pod)
    kube.wait_phase(bob, "looker", "Succeeded")
    found = last_json(kube, bob, "looker")
    assert found["seen"] == [] and found["read"] == {p: "FileNotFoundError" for p in paths}, found
    assert found["wrote"] == {"/etc": "Read-only file system", "/usr": "Read-only file system",
                              os.getcwd(): "Read-only file system", "/home/jovyan": "ok", "/home/jovyan/inner": "ok",
                              "/tmp": "ok"}, found
    assert not os.path.exists(os.path.join(os.getcwd(), "hostile"))
    assert not os.path.exists("/home/jovyan/inner")   # a mount inside a volume is made in that volume


# connect to another pod's server, list the sockets this pod sees, name its network namespace
REACH = ("import json, os, socket, sys\n"
         "try:\n    socket.create_connection((sys.argv[1], 8888), timeout=5).close(); reached = 'connected'\n"
         "except OSError as e:\n    reached = type(e).__name__\n"
         "local = sorted({socket.inet_ntoa(bytes.fromhex(l.split()[1].split(':')[0])[::-1])\n"
         "                for l in open('/proc/net/tcp').read().splitlines()[1:]})\n"
         "print(json.dumps({'reached': reached, 'local': local, 'netns': os.stat('/proc/self/ns/net').st_ino}))\n")


def _holders(inode):
    """Processes of this machine in, or holding open, the network namespace ``inode``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            links = [os.readlink(f"/proc/{pid}/ns/net")] + [os.readlink(f"/proc/{pid}/fd/{fd}")
                                                           for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if f"net:[{inode}]" in links:
            found.append(pid)
    return found


def test_each_pod_has_a_network_of_its_own_that_goes_with_it(kube, ns):
    """This machine (the hub, the proxy) reaches a pod's server on its address; another pod cannot
    connect to it and sees only its own sockets; once the pods are deleted nothing holds their
    network namespaces any more."""
    if not kube.cluster.kubelet.isolation.network:
        pytest.skip("no network namespaces here (not root, or refused): pods share this machine's network")
    def server_pod(pod):  # what z2jh's singleuser NetworkPolicy selects, as KubeSpawner labels its pods
        pod["metadata"].setdefault("labels", {})["component"] = "singleuser-server"
        return pod

    kube.create_pod(ns, server_pod(py_pod("server", HTTP_SERVER, "0.0.0.0", "8888", ports=[8888], env=[POD_NAME_ENV],
                                          grace=0)))
    ip = kube.wait_ready(ns, "server").status.pod_ip
    assert http_get(f"http://{ip}:8888/") == (200, "server")
    kube.create_pod(ns, server_pod(py_pod("prober", REACH, ip, grace=0)))
    kube.wait_phase(ns, "prober", "Succeeded")
    seen = last_json(kube, ns, "prober")
    assert seen["reached"] == "ConnectionRefusedError" and ip not in seen["local"], seen
    assert seen["netns"] != os.stat("/proc/self/ns/net").st_ino
    # a pod no NetworkPolicy selects (the migration's copy pods) shares the node's network, as on a
    # real cluster where pods reach each other unless a policy says otherwise
    kube.create_pod(ns, py_pod("helper", REACH, ip, grace=0))
    kube.wait_phase(ns, "helper", "Succeeded")
    assert last_json(kube, ns, "helper")["netns"] == os.stat("/proc/self/ns/net").st_ino
    for name in ("server", "prober", "helper"):
        kube.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
        kube.wait_gone(kube.core.read_namespaced_pod, name, ns)
    wait_for(lambda: not _holders(seen["netns"]), timeout=10, message="the pod's network namespace released")
    with pytest.raises(OSError):
        http_get(f"http://{ip}:8888/", timeout=2)


@needs_namespaces
def test_a_root_pod_keeps_only_the_capabilities_it_may(kube, ns):
    dropped = py_pod("dropped", CAPS)
    dropped["spec"]["securityContext"] = {"runAsUser": 0}
    dropped["spec"]["containers"][0]["securityContext"] = {"capabilities": {"drop": ["ALL"]}}
    plain = py_pod("plain-root", CAPS)
    plain["spec"]["securityContext"] = {"runAsUser": 0}
    for pod in (dropped, plain):
        kube.create_pod(ns, pod)
    kube.wait_phase(ns, "dropped", "Succeeded")
    kube.wait_phase(ns, "plain-root", "Succeeded")
    assert kube.log(ns, "dropped").strip() == "0000000000000000"
    assert kube.log(ns, "plain-root").strip() == "00000000a80425fb"   # a container runtime's default set


# --- Pod Security Admission -----------------------------------------------------------------

def labelled(kube, level):
    ns = kube.namespace(level[:4])
    kube.core.patch_namespace(ns, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": level}}})
    return ns


def refusal(kube, ns, pod):
    body = assert_status(kube.error(kube.create_pod, ns, pod), 403, "Forbidden")
    assert kube.core.list_namespaced_pod(ns).items == []
    return body["message"]


def test_baseline_refuses_host_path_privileged_and_host_namespaces_with_the_real_message(kube):
    ns = labelled(kube, "baseline")
    host = py_pod("host", "print(1)", volumes=[{"name": "root", "hostPath": {"path": "/"}}],
                  mounts=[{"name": "root", "mountPath": "/host"}])
    assert refusal(kube, ns, host) == ('pods "host" is forbidden: violates PodSecurity "baseline:latest": '
                                      'hostPath volumes (volume "root")')
    wide = py_pod("wide", "print(1)")
    wide["spec"].update(hostNetwork=True, hostPID=True)
    wide["spec"]["containers"][0]["securityContext"] = {"capabilities": {"add": ["SYS_ADMIN", "NET_ADMIN"]}}
    wide["spec"]["containers"][0]["ports"] = [{"containerPort": 8080, "hostPort": 8080}]
    assert refusal(kube, ns, wide) == (
        'pods "wide" is forbidden: violates PodSecurity "baseline:latest": non-default capabilities '
        '(container "main" must not include "NET_ADMIN", "SYS_ADMIN" in securityContext.capabilities.add), '
        'host namespaces (hostNetwork=true, hostPID=true), hostPort (container "main" uses hostPort 8080)')
    root = py_pod("root", "print(1)")   # root itself is allowed at baseline
    root["spec"]["securityContext"] = {"runAsUser": 0}
    kube.create_pod(ns, root)


def test_baseline_refuses_a_privileged_pod(kube, backend):
    if backend == "real":
        pytest.skip("the real control plane runs with --allow-privileged=false: validation refuses it first (422)")
    ns = labelled(kube, "baseline")
    pod = py_pod("priv", "print(1)")
    pod["spec"]["initContainers"] = [dict(pod["spec"]["containers"][0], name="setup")]
    for c in pod["spec"]["initContainers"] + pod["spec"]["containers"]:
        c["securityContext"] = {"privileged": True}
    assert refusal(kube, ns, pod) == ('pods "priv" is forbidden: violates PodSecurity "baseline:latest": privileged '
                                      '(containers "setup", "main" must not set securityContext.privileged=true)')


def test_restricted_refuses_a_root_pod_and_admits_one_made_as_ptjaas_makes_them(kube):
    ns = labelled(kube, "restricted")
    root = py_pod("root", "print(1)")
    root["spec"]["securityContext"] = {"runAsUser": 0}
    assert refusal(kube, ns, root) == (
        'pods "root" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false '
        '(container "main" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities '
        '(container "main" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or '
        'container "main" must set securityContext.runAsNonRoot=true), runAsUser=0 (pod must not set runAsUser=0), '
        'seccompProfile (pod or container "main" must set securityContext.seccompProfile.type to "RuntimeDefault" '
        'or "Localhost")')
    hosts = py_pod("hosts", "print(1)", volumes=[{"name": n, "hostPath": {"path": "/"}} for n in ("a", "b")])
    hosts["spec"]["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    hosts["spec"]["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": False,
                                                         "capabilities": {"drop": ["ALL"]}}
    assert refusal(kube, ns, hosts) == ('pods "hosts" is forbidden: violates PodSecurity "restricted:latest": '
                                       'restricted volume types (volumes "a", "b" use restricted volume type "hostPath")')
    mixed = py_pod("mixed", "print(1)", volumes=[{"name": "n", "nfs": {"server": "nfs.example", "path": "/"}},
                                               {"name": "h", "hostPath": {"path": "/"}}])
    mixed["spec"]["securityContext"] = {"runAsNonRoot": False, "seccompProfile": {"type": "Unconfined"}}
    mixed["spec"]["initContainers"] = [dict(mixed["spec"]["containers"][0], name="setup", securityContext={
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": False, "runAsUser": 0})]
    mixed["spec"]["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": False, "capabilities": {
        "drop": ["ALL"], "add": ["NET_BIND_SERVICE", "CHOWN"]}}
    mixed["spec"]["containers"][0]["ports"] = [{"containerPort": 90, "hostPort": 90}, {"containerPort": 8080, "hostPort": 8080}]
    assert refusal(kube, ns, mixed) == (
        'pods "mixed" is forbidden: violates PodSecurity "restricted:latest": hostPort (container "main" uses '
        'hostPorts 8080, 90), unrestricted capabilities (container "main" must not '
        'include "CHOWN" in securityContext.capabilities.add), restricted volume types (volumes "n", "h" use '
        'restricted volume types "hostPath", "nfs"), runAsNonRoot != true (pod and container "setup" must not set '
        'securityContext.runAsNonRoot=false), runAsUser=0 (container "setup" must not set runAsUser=0), '
        'seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")')
    hardened = py_pod("hardened", "print(1)")   # ptjaas_spawner's pod defaults
    hardened["spec"]["securityContext"] = {"runAsUser": 1000, "runAsNonRoot": True,
                                           "seccompProfile": {"type": "RuntimeDefault"}}
    hardened["spec"]["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": False,
                                                            "capabilities": {"drop": ["ALL"]}}
    kube.create_pod(ns, hardened)
    kube.wait_phase(ns, "hardened", "Succeeded")


def test_a_bad_pod_security_label_is_refused_and_warn_only_warns(kube):
    bad = kube.raw("POST", "/api/v1/namespaces", json={"metadata": {"name": "psa-bad", "labels": {
        "pod-security.kubernetes.io/enforce": "strict", "pod-security.kubernetes.io/warn-version": "v9"}}})
    assert bad.status_code == 422, bad.text
    assert bad.json()["message"] == (
        'Namespace "psa-bad" is invalid: [metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: '
        '"strict": must be one of privileged, baseline, restricted, metadata.labels[pod-security.kubernetes.io/'
        'warn-version]: Invalid value: "v9": must be "latest" or "v1.x"]')
    ns = kube.namespace("warn")
    kube.core.patch_namespace(ns, {"metadata": {"labels": {"pod-security.kubernetes.io/warn": "baseline"}}})
    made = kube.raw("POST", f"/api/v1/namespaces/{ns}/pods",
                    json=py_pod("h", "print(1)", volumes=[{"name": "h", "hostPath": {"path": "/tmp"}}]))
    assert made.status_code == 201
    assert made.headers["Warning"] == ('299 - "would violate PodSecurity \\"baseline:latest\\": '
                                       'hostPath volumes (volume \\"h\\")"')


# --- whose volume ---------------------------------------------------------------------------

def home_claim(kube, ns, name, **spec):
    kube.core.create_namespaced_persistent_volume_claim(ns, {"metadata": {"name": name}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, **spec}})
    return {"name": "home", "persistentVolumeClaim": {"claimName": name}}


def run_as(kube, ns, name, uid, volume, script="open('/home/jovyan/f', 'w').write('x')"):
    pod = py_pod(name, script, volumes=[volume], mounts=[{"name": "home", "mountPath": "/home/jovyan"}])
    pod["spec"]["securityContext"] = {"runAsUser": uid}
    kube.create_pod(ns, pod)
    return kube.wait_pod(ns, name, lambda p: p.status.phase in ("Succeeded", "Failed"), message="finished")


@needs_namespaces
def test_a_claim_stays_with_its_first_user_and_a_host_path_volume_is_never_given_away(kube, ns, tmp_path):
    vol = home_claim(kube, ns, "first")
    assert run_as(kube, ns, "owner", 1000, vol).status.phase == "Succeeded"
    path = kube.core.read_persistent_volume(
        kube.core.read_namespaced_persistent_volume_claim("first", ns).spec.volume_name).spec.host_path.path
    assert run_as(kube, ns, "taker", 2000, vol).status.phase == "Failed"   # another uid: not given to it
    assert os.stat(path).st_uid == 1000 and os.stat(os.path.join(path, "f")).st_uid == 1000
    host = tmp_path / "admins"          # a PersistentVolume an admin made on a directory of this machine
    host.mkdir()
    pv = f"admins-{ns}"
    static = home_claim(kube, ns, "static", volumeName=pv, storageClassName="")
    uid = kube.core.read_namespaced_persistent_volume_claim("static", ns).metadata.uid
    kube.core.create_persistent_volume({"metadata": {"name": pv}, "spec": {
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
        "hostPath": {"path": str(host)}, "persistentVolumeReclaimPolicy": "Retain",
        "claimRef": {"namespace": ns, "name": "static", "uid": uid}}})
    try:
        run_as(kube, ns, "static-user", 1000, static, script="print(1)")
        assert os.stat(host).st_uid == 0
    finally:
        kube.core.delete_persistent_volume(pv)
