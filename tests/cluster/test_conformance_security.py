"""Pods run as their securityContext when the node agent is root: runAsUser/runAsGroup, fsGroup
and supplementalGroups, an unprivileged default, volumes owned by the pod's user and nobody
else, and (where mount namespaces are possible) volumes at their real mountPath, other pods'
processes and the cluster's state out of reach. The node agent is ours on both backends, so all
this holds on the real control plane too."""

import json
import os
import stat

import pytest

from tests.cluster.k8s_conformance import SLEEP_FOREVER, py_pod

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(os.geteuid() != 0, reason="pods run as their securityContext only when the node agent is root")]

WHO = ("import json, os\n"
       "print(json.dumps({'uid': os.getuid(), 'euid': os.geteuid(), 'gid': os.getgid(),"
       " 'groups': sorted(os.getgroups()), 'cwd': os.getcwd(), 'home': os.environ.get('HOME')}))")


def log_json(kube, ns, name):
    return json.loads(kube.log(ns, name).strip().splitlines()[-1])


def claim(kube, ns, name):
    kube.core.create_namespaced_persistent_volume_claim(ns, {"metadata": {"name": name}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    return {"name": "home", "persistentVolumeClaim": {"claimName": name}}


def run(kube, ns, name, script, *args, security=None, container_security=None, **kw):
    pod = py_pod(name, script, *args, **kw)
    if security is not None:
        pod["spec"]["securityContext"] = security
    if container_security is not None:
        pod["spec"]["containers"][0]["securityContext"] = container_security
    kube.create_pod(ns, pod)
    return kube.wait_phase(ns, name, "Succeeded")


def test_pod_runs_as_its_run_as_user_and_groups(kube, ns):
    run(kube, ns, "u1000", WHO, security={"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2000,
                                          "supplementalGroups": [3000]})
    who = log_json(kube, ns, "u1000")
    assert (who["uid"], who["euid"], who["gid"]) == (1000, 1000, 1000)
    assert set(who["groups"]) >= {2000, 3000} and 0 not in who["groups"]


def test_container_security_context_wins_over_the_pod_level(kube, ns):
    run(kube, ns, "u4242", WHO, security={"runAsUser": 1000}, container_security={"runAsUser": 4242, "runAsGroup": 4243})
    who = log_json(kube, ns, "u4242")
    assert (who["uid"], who["gid"]) == (4242, 4243)


def test_pod_without_run_as_user_is_not_root(kube, ns):
    run(kube, ns, "plain", WHO)
    who = log_json(kube, ns, "plain")
    assert (who["uid"], who["gid"]) == (1000, 100)   # the images' user, jovyan:users


def test_root_only_when_asked_for(kube, ns):
    run(kube, ns, "root", WHO, security={"runAsUser": 0})
    assert log_json(kube, ns, "root")["uid"] == 0


def test_run_as_non_root_with_uid_0_is_refused_like_a_kubelet(kube, ns):
    pod = py_pod("refused", WHO)
    pod["spec"]["securityContext"] = {"runAsUser": 0, "runAsNonRoot": True}
    kube.create_pod(ns, pod)
    got = kube.wait_pod(ns, "refused", lambda p: p.status.container_statuses and
                        p.status.container_statuses[0].state.waiting and
                        p.status.container_statuses[0].state.waiting.reason == "CreateContainerConfigError",
                        message="CreateContainerConfigError")
    assert "runAsNonRoot" in got.status.container_statuses[0].state.waiting.message or \
        "non-root" in got.status.container_statuses[0].state.waiting.message
    assert kube.wait_event(ns, "refused", "Failed").type == "Warning"


def test_volume_belongs_to_the_pod_user_and_fs_group_only(kube, ns):
    vol = claim(kube, ns, "owned")
    run(kube, ns, "writer", "open('/home/jovyan/mine.txt', 'w').write('x')", volumes=[vol],
        mounts=[{"name": "home", "mountPath": "/home/jovyan"}], security={"runAsUser": 1000, "fsGroup": 100})
    pvc = kube.core.read_namespaced_persistent_volume_claim("owned", ns)
    pv = kube.core.read_persistent_volume(pvc.spec.volume_name)
    st = os.stat(pv.spec.host_path.path)
    assert (st.st_uid, st.st_gid) == (1000, 100)
    assert stat.S_IMODE(st.st_mode) & 0o007 == 0   # nothing for others
    mine = os.stat(os.path.join(pv.spec.host_path.path, "mine.txt"))
    assert mine.st_uid == 1000


def test_another_user_cannot_read_a_volume_it_does_not_mount(kube, ns):
    vol = claim(kube, ns, "private")
    run(kube, ns, "owner", "open('/home/jovyan/secret.txt', 'w').write('s3cret')", volumes=[vol],
        mounts=[{"name": "home", "mountPath": "/home/jovyan"}], security={"runAsUser": 1000, "fsGroup": 100})
    pvc = kube.core.read_namespaced_persistent_volume_claim("private", ns)
    path = os.path.join(kube.core.read_persistent_volume(pvc.spec.volume_name).spec.host_path.path, "secret.txt")
    probe = ("import json, sys\nout = {}\nfor p in sys.argv[1:]:\n"
             "    try:\n        open(p).read(); out[p] = 'read'\n"
             "    except OSError as e:\n        out[p] = type(e).__name__\nprint(json.dumps(out))")
    state = kube.cluster.state_dir
    targets = [path, os.path.join(state, "objects.json"), kube.cluster.kubeconfig_path]
    for uid in (1000, 2000):   # the same uid as the owner, and another one
        run(kube, ns, f"snoop-{uid}", probe, *targets, security={"runAsUser": uid})
        assert set(log_json(kube, ns, f"snoop-{uid}").values()) <= {"PermissionError", "FileNotFoundError"}, uid


def test_pods_see_only_their_own_processes(kube, ns):
    if kube.cluster.kubelet.isolation.rewrite_paths:
        pytest.skip("no mount/PID namespaces on this machine")
    kube.create_pod(ns, py_pod("neighbour", SLEEP_FOREVER, grace=1))
    kube.wait_phase(ns, "neighbour", "Running")
    run(kube, ns, "looker", "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))")
    assert max(json.loads(kube.log(ns, "looker").strip())) < 10   # its own namespace's pids only


def test_volume_is_at_its_mount_path_and_home_is_the_working_dir(kube, ns):
    if kube.cluster.kubelet.isolation.rewrite_paths:
        pytest.skip("no mount namespaces on this machine: mountPaths are rewritten")
    vol = claim(kube, ns, "home")
    run(kube, ns, "lab", WHO, volumes=[vol], mounts=[{"name": "home", "mountPath": "/home/jovyan"}],
        env=[{"name": "HOME", "value": "/home/jovyan"}])
    who = log_json(kube, ns, "lab")
    assert who["cwd"] == who["home"] == "/home/jovyan"


def test_without_mount_namespaces_pods_still_run_as_their_user_or_fail_clearly(caplog):
    """A root node agent that may not create namespaces (e.g. a container without CAP_SYS_ADMIN)
    rewrites paths; the pod's user must then reach this machine's Python environment itself. The
    log says once, in plain words, that pods are not isolated."""
    import sys

    from ptjaas_sandbox.cluster import EmbeddedCluster
    from ptjaas_sandbox.cluster.podexec import _blocker
    from tests.cluster.k8s_conformance import Kube

    import shutil
    import tempfile
    base = tempfile.mkdtemp(prefix="ptjaas-nons-")
    os.chmod(base, 0o755)   # pods reach their rewritten paths through the state dir's parents
    cluster = EmbeddedCluster(state_dir=os.path.join(base, "k8s"), mount_namespaces=False)
    cluster.start_in_thread()
    kube = Kube(cluster)
    try:
        assert cluster.kubelet.isolation.rewrite_paths
        said = [r.getMessage() for r in caplog.records if "pods are not isolated" in r.getMessage()]
        assert len(said) == 1 and "share this machine's /tmp, /dev/shm, files and network" in said[0], said
        ns = kube.namespace()
        blocked = any(_blocker(os.path.realpath(p), 1000, {100}) for p in (sys.prefix, sys.base_prefix))
        kube.create_pod(ns, py_pod("plain", WHO))
        if blocked:   # e.g. pyenv under /root: a clear start error, never a silent fallback to root
            pod = kube.wait_pod(ns, "plain", lambda p: p.status.container_statuses and
                                p.status.container_statuses[0].state.terminated, message="start error")
            terminated = pod.status.container_statuses[0].state.terminated
            assert terminated.reason == "StartError" and "uid 1000 cannot reach the Python environment" in terminated.message
        else:
            kube.wait_phase(ns, "plain", "Succeeded")
            assert log_json(kube, ns, "plain")["uid"] == 1000
    finally:
        kube.close()
        cluster.stop_thread()
        shutil.rmtree(base, ignore_errors=True)


def test_secret_volume_is_read_only_at_its_mount_path(kube, ns):
    if kube.cluster.kubelet.isolation.rewrite_paths:
        pytest.skip("no mount namespaces on this machine: mountPaths are rewritten")
    kube.core.create_namespaced_secret(ns, {"metadata": {"name": "creds"}, "stringData": {"token": "t0k"}})
    script = ("import json\nout = {'read': open('/var/run/secrets/ptjaas/token').read()}\n"
              "try:\n    open('/var/run/secrets/ptjaas/new', 'w')\n    out['write'] = 'ok'\n"
              "except OSError as e:\n    out['write'] = e.errno\nprint(json.dumps(out))")
    run(kube, ns, "reader", script, volumes=[{"name": "creds", "secret": {"secretName": "creds"}}],
        mounts=[{"name": "creds", "mountPath": "/var/run/secrets/ptjaas"}])
    import errno
    assert log_json(kube, ns, "reader") == {"read": "t0k", "write": errno.EROFS}
