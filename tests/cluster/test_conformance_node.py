"""Node agent conformance: pods run as local processes on their own 127.x.y.z address and follow
a real kubelet's status, env, volumes, restarts, logs and graceful deletion."""

import ipaddress
import json
import time
from pathlib import Path

import pytest
from kubernetes_asyncio import client as ak8s

from tests.cluster.k8s_conformance import (HTTP_SERVER, POD_NAME_ENV, SLEEP_FOREVER, condition, http_get,
                             pid_alive, py_pod, wait_for)

pytestmark = pytest.mark.timeout(120)

PRINT_ENV = "import json, os, sys\nprint(json.dumps({k: os.environ.get(k) for k in sys.argv[1:]}))"


def web_pod(name, **kw):
    return py_pod(name, HTTP_SERVER, "0.0.0.0", "8888", ports=[8888], env=[POD_NAME_ENV], grace=1,
                  **kw)


def log_json(kube, ns, name):
    return json.loads(kube.log(ns, name).strip().splitlines()[-1])


def claim(kube, ns, name):
    kube.core.create_namespaced_persistent_volume_claim(ns, {"metadata": {"name": name}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    return {"name": "vol", "persistentVolumeClaim": {"claimName": name}}


def test_two_pods_listen_on_8888_each_on_its_own_ip(kube, ns):
    for name in ("web-a", "web-b"):
        kube.create_pod(ns, web_pod(name))
    pods = {name: kube.wait_ready(ns, name) for name in ("web-a", "web-b")}
    ips = {name: p.status.pod_ip for name, p in pods.items()}
    assert len(set(ips.values())) == 2, ips
    for name, pod in pods.items():
        ip = ipaddress.ip_address(pod.status.pod_ip)
        assert ip.is_loopback and ip != ipaddress.ip_address("127.0.0.1"), ip
        assert [x.ip for x in pod.status.pod_ips] == [pod.status.pod_ip]
        assert pod.status.phase == "Running" and pod.spec.node_name == "ptjaas-node-1"
        assert pod.status.start_time is not None and pod.status.host_ip
        cs = pod.status.container_statuses[0]
        assert cs.name == "main" and cs.ready is True and cs.started is True
        assert cs.state.running.started_at is not None and cs.restart_count == 0
        assert condition(pod, "ContainersReady") == "True"
        assert condition(pod, "PodScheduled") == "True"
        assert http_get(f"http://{pod.status.pod_ip}:8888/") == (200, name)
    events = sorted(kube.events(ns, "web-a"), key=lambda e: int(e.metadata.resource_version))
    reasons = [e.reason for e in events]
    assert "Scheduled" in reasons and "Started" in reasons
    assert reasons.index("Scheduled") < reasons.index("Started")


def test_ready_only_once_the_port_answers(kube, ns, tmp_path):
    go = tmp_path / "go"
    script = ("import os, sys, time\nopen(sys.argv[3], 'w').close()\n"
              "while not os.path.exists(sys.argv[4]): time.sleep(0.02)\n" + HTTP_SERVER)
    kube.create_pod(ns, py_pod("late", script, "0.0.0.0", "8888", str(tmp_path / "started"), str(go),
                               ports=[8888], env=[POD_NAME_ENV], grace=1, host_access=True))
    wait_for((tmp_path / "started").exists, timeout=20, message="container process started")
    pod = kube.wait_phase(ns, "late", "Running")  # the container runs, its port is still closed
    assert condition(pod, "Ready") != "True"
    assert pod.status.container_statuses[0].ready is False
    go.touch()
    pod = kube.wait_ready(ns, "late")
    assert http_get(f"http://{pod.status.pod_ip}:8888/") == (200, "late")


def test_env_value_from_and_address_rewrite(kube, ns):
    kube.core.create_namespaced_secret(ns, {"metadata": {"name": "creds"},
                                            "stringData": {"token": "s3cret"}})
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "settings"},
                                                "data": {"mode": "fast"}})
    env = [
        {"name": "PLAIN", "value": "hello"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "OPTIONAL", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "absent",
                                                            "optional": True}}},
        {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "MY_TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}},
        {"name": "BIND", "value": "0.0.0.0"},
    ]
    keys = [e["name"] for e in env]
    kube.create_pod(ns, py_pod("envy", PRINT_ENV, *keys, env=env, labels={"team": "blue"}))
    pod = kube.wait_phase(ns, "envy", "Succeeded")
    got = log_json(kube, ns, "envy")
    assert got == {"PLAIN": "hello", "TOKEN": "s3cret", "MODE": "fast", "OPTIONAL": None,
                   "MY_NAME": "envy", "MY_NS": ns, "MY_IP": pod.status.pod_ip,
                   "MY_NODE": "ptjaas-node-1", "MY_TEAM": "blue", "BIND": pod.status.pod_ip}


def test_volume_is_shared_by_later_pods_at_its_mount_path(kube, ns):
    vol = claim(kube, ns, "home")
    mounts = [{"name": "vol", "mountPath": "/home/jovyan"}]
    writer = ("import os, sys\nopen('notes.txt', 'w').write('kept ' + os.environ['WHERE'])\n"
              "open(sys.argv[1], 'w').write('absolute')\nprint(os.getcwd() == os.environ['WHERE'])")
    kube.create_pod(ns, py_pod("writer", writer, "/home/jovyan/abs.txt", volumes=[vol],
                               mounts=mounts, working_dir="/home/jovyan/work",
                               env=[{"name": "WHERE", "value": "/home/jovyan/work"}]))
    kube.wait_phase(ns, "writer", "Succeeded")
    assert kube.log(ns, "writer").strip() == "True"  # workingDir and env point at the same dir
    reader = ("import json, sys\n"
              "print(json.dumps([open(p).read() for p in sys.argv[1:]]))")
    kube.create_pod(ns, py_pod("reader", reader, "/home/jovyan/work/notes.txt",
                               "/home/jovyan/abs.txt", volumes=[vol], mounts=mounts))
    kube.wait_phase(ns, "reader", "Succeeded")
    written = log_json(kube, ns, "reader")
    assert written[1] == "absolute"
    if kube.cluster.kubelet.isolation.rewrite_paths:   # no mount namespace here: paths were rewritten
        assert written[0].startswith("kept ") and written[0] != "kept /home/jovyan/work"
    else:   # mounted at its real mountPath in the pod's own mount namespace
        assert written[0] == "kept /home/jovyan/work"
    # the claim's data lives under the cluster's state dir
    found = list(Path(kube.cluster.state_dir).rglob("abs.txt"))
    assert len(found) == 1 and found[0].read_text() == "absolute"


def test_exit_codes_succeeded_and_failed(kube, ns):
    kube.create_pod(ns, py_pod("ok", "print('done')"))
    kube.create_pod(ns, py_pod("bad", "import sys\nprint('oops', file=sys.stderr)\nsys.exit(3)"))
    ok = kube.wait_phase(ns, "ok", "Succeeded")
    bad = kube.wait_phase(ns, "bad", "Failed")
    t_ok = ok.status.container_statuses[0].state.terminated
    t_bad = bad.status.container_statuses[0].state.terminated
    assert (t_ok.exit_code, t_ok.reason) == (0, "Completed")
    assert (t_bad.exit_code, t_bad.reason) == (3, "Error")
    assert t_bad.finished_at is not None
    assert kube.log(ns, "ok") == "done\n"
    assert "oops" in kube.log(ns, "bad")
    assert condition(bad, "Ready") == "False"


def test_restart_policies(kube, ns, tmp_path):
    flaky = ("import os, sys\np = sys.argv[1]\nn = int(open(p).read()) if os.path.exists(p) else 0\n"
             "open(p, 'w').write(str(n + 1))\nsys.exit(0 if n >= 1 else 1)")
    kube.create_pod(ns, py_pod("flaky", flaky, str(tmp_path / "count"), restart="OnFailure", host_access=True))
    kube.create_pod(ns, py_pod("never", "import sys; sys.exit(1)", restart="Never"))
    kube.create_pod(ns, py_pod("always", "print('run')", restart="Always", grace=1))
    pod = kube.wait_phase(ns, "flaky", "Succeeded", timeout=60)
    assert pod.status.container_statuses[0].restart_count == 1
    assert (tmp_path / "count").read_text() == "2"
    never = kube.wait_phase(ns, "never", "Failed")
    assert never.status.container_statuses[0].restart_count == 0
    always = kube.wait_pod(ns, "always",
                           lambda p: p.status.container_statuses
                           and p.status.container_statuses[0].restart_count >= 1,
                           timeout=60, message="restartPolicy Always restarts a finished container")
    assert always.status.phase == "Running"


def test_delete_sends_sigterm_waits_grace_then_sigkill(kube, ns, tmp_path):
    marker = tmp_path / "marker"
    script = (
        "import os, signal, sys, time\nm = sys.argv[1]\n"
        "def term(sig, frame):\n    open(m, 'a').write('TERM %f\\n' % time.time())\n"
        "signal.signal(signal.SIGTERM, term)\nopen(m, 'a').write('START %d\\n' % os.getpid())\n"
        "while True:\n    open(m + '.beat', 'a').write('%f\\n' % time.time())\n    time.sleep(0.02)\n")
    kube.create_pod(ns, py_pod("stubborn", script, str(marker), grace=30, host_access=True))
    kube.wait_phase(ns, "stubborn", "Running")
    wait_for(lambda: marker.exists() and "START" in marker.read_text(), timeout=20,
             message="pod process started")
    pid = int(marker.read_text().split()[1])
    kube.core.delete_namespaced_pod("stubborn", ns, grace_period_seconds=2)
    pod = kube.core.read_namespaced_pod("stubborn", ns)  # still there while it shuts down
    assert pod.metadata.deletion_timestamp is not None
    assert pod.metadata.deletion_grace_period_seconds == 2
    kube.wait_gone(kube.core.read_namespaced_pod, "stubborn", ns, timeout=20)
    assert not pid_alive(pid)
    lines = marker.read_text().split("\n")
    terms = [float(line.split()[1]) for line in lines if line.startswith("TERM")]
    assert len(terms) == 1, lines  # one SIGTERM, then SIGKILL (the process ignored SIGTERM)
    beats = (tmp_path / "marker.beat").read_text().split("\n")[:-1]  # complete lines only
    last_beat = float(beats[-1])
    assert last_beat - terms[0] >= 1.2  # it was left running for (most of) the 2 s grace period
    ev = kube.wait_event(ns, "stubborn", "Killing")
    assert ev.message == "Stopping container main"


def test_delete_of_a_cooperative_pod_does_not_wait_the_whole_grace(kube, ns):
    kube.create_pod(ns, py_pod("polite", SLEEP_FOREVER, grace=60))
    pod = kube.wait_phase(ns, "polite", "Running")
    started = time.monotonic()
    kube.core.delete_namespaced_pod("polite", ns)
    kube.wait_gone(kube.core.read_namespaced_pod, "polite", ns, timeout=20)
    assert time.monotonic() - started < 30  # removed once its process exited, not after 60 s
    assert pod.metadata.uid not in [p.metadata.uid for p in kube.core.list_namespaced_pod(ns).items]


async def test_logs_and_status_through_async_client(akube, kube, ns):
    core = ak8s.CoreV1Api(akube)
    await core.create_namespaced_pod(ns, py_pod(
        "talk", "import time\nfor i in range(3): print('line', i, flush=True)\n"
        "while True: time.sleep(1)", grace=1))
    kube.wait_phase(ns, "talk", "Running")
    wait_for(lambda: "line 2" in kube.log(ns, "talk"), timeout=20, message="log lines")
    text = await core.read_namespaced_pod_log("talk", ns, container="main")
    assert text.splitlines() == ["line 0", "line 1", "line 2"]
    tail = await core.read_namespaced_pod_log("talk", ns, tail_lines=1)
    assert tail.splitlines() == ["line 2"]
    pod = await core.read_namespaced_pod_status("talk", ns)
    assert pod.status.phase == "Running"


def test_missing_secret_holds_the_container_until_it_exists(kube, ns):
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "token"}}}]
    kube.create_pod(ns, py_pod("waits-for-secret", PRINT_ENV, "TOKEN", env=env))
    pod = kube.wait_pod(ns, "waits-for-secret",
                        lambda p: p.status.container_statuses
                        and p.status.container_statuses[0].state.waiting is not None
                        and p.status.container_statuses[0].state.waiting.reason
                        == "CreateContainerConfigError",
                        message="CreateContainerConfigError")
    assert pod.status.phase == "Pending"
    assert 'secret "later" not found' in pod.status.container_statuses[0].state.waiting.message
    e = kube.error(kube.log, ns, "waits-for-secret")  # as kubectl logs shows it
    assert e.status == 400
    assert json.loads(e.body)["message"] == (
        'container "main" in pod "waits-for-secret" is waiting to start: CreateContainerConfigError')
    kube.core.create_namespaced_secret(ns, {"metadata": {"name": "later"},
                                            "stringData": {"token": "now"}})
    kube.wait_phase(ns, "waits-for-secret", "Succeeded", timeout=30)
    assert log_json(kube, ns, "waits-for-secret") == {"TOKEN": "now"}


def test_command_that_cannot_start_fails_the_pod(kube, ns):
    pod = py_pod("cannot-run", "pass")
    pod["spec"]["containers"][0]["command"] = ["no-such-command-ptjaas"]
    kube.create_pod(ns, pod)
    failed = kube.wait_phase(ns, "cannot-run", "Failed")
    term = failed.status.container_statuses[0].state.terminated
    assert term.exit_code != 0 and term.reason


def test_log_of_unscheduled_and_missing_pods(kube, ns):
    kube.create_pod(ns, py_pod("unscheduled", "pass", node_selector={"no-such": "node"}))
    # no node assigned: nothing to ask for logs, the API server answers 204 No Content
    answer = kube.raw("GET", f"/api/v1/namespaces/{ns}/pods/unscheduled/log")
    assert (answer.status_code, answer.content) == (204, b"")
    assert kube.error(kube.log, ns, "no-such-pod").status == 404


def test_pod_lifecycle_as_seen_by_a_watch(kube, ns):
    from kubernetes import watch

    rv0 = kube.core.list_namespaced_pod(ns).metadata.resource_version
    kube.create_pod(ns, web_pod("watched"))
    kube.wait_ready(ns, "watched")
    kube.core.delete_namespaced_pod("watched", ns)
    kube.wait_gone(kube.core.read_namespaced_pod, "watched", ns)
    seen = []
    w = watch.Watch()
    for ev in w.stream(kube.core.list_namespaced_pod, ns, resource_version=rv0, timeout_seconds=5,
                       _request_timeout=30):
        pod = ev["object"]
        seen.append((ev["type"], pod.status.phase if pod.status else None,
                     condition(pod, "Ready"), pod.metadata.deletion_timestamp is not None))
        if ev["type"] == "DELETED":
            w.stop()
    assert seen[0][:2] == ("ADDED", "Pending") and seen[-1][0] == "DELETED"
    phases = [p for _, p, _, _ in seen]
    assert phases.index("Running") > 0 and "Pending" not in phases[phases.index("Running"):]
    ready_at = [i for i, s in enumerate(seen) if s[2] == "True"]
    terminating_at = [i for i, s in enumerate(seen) if s[3]]
    assert ready_at and terminating_at and ready_at[0] < terminating_at[0]


def test_home_sub_path_and_config_volumes(kube, ns):
    vol = claim(kube, ns, "shared")
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "cfg"},
                                                "data": {"settings.json": '{"theme": "dark"}'}})
    kube.core.create_namespaced_secret(ns, {"metadata": {"name": "sec"}, "stringData": {"token": "t0k"}})
    volumes = [vol, {"name": "cfg", "configMap": {"name": "cfg"}},
               {"name": "sec", "secret": {"secretName": "sec"}}]
    mounts = [{"name": "vol", "mountPath": "/home/jovyan", "subPath": "ann"},
              {"name": "cfg", "mountPath": "/etc/ptjaas"},
              {"name": "sec", "mountPath": "/var/run/secrets/ptjaas", "readOnly": True}]
    script = ("import json, os, sys\n"
              "open(os.path.expanduser('~/from-home.txt'), 'w').write('home')\n"
              "print(json.dumps([os.environ['HOME'] == os.getcwd(),\n"
              "                  open(sys.argv[1]).read(), open(sys.argv[2]).read()]))")
    kube.create_pod(ns, py_pod("user", script, "/etc/ptjaas/settings.json",
                               "/var/run/secrets/ptjaas/token", volumes=volumes, mounts=mounts))
    kube.wait_phase(ns, "user", "Succeeded")
    # HOME and the working directory default to /home/jovyan, i.e. the claim's "ann" directory
    assert log_json(kube, ns, "user") == [True, '{"theme": "dark"}', "t0k"]
    kube.create_pod(ns, py_pod("admin", "import sys; print(open(sys.argv[1]).read())",
                               "/data/ann/from-home.txt", volumes=[vol],
                               mounts=[{"name": "vol", "mountPath": "/data"}]))
    kube.wait_phase(ns, "admin", "Succeeded")
    assert kube.log(ns, "admin").strip() == "home"


def test_env_from_config_map_and_secret(kube, ns):
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "cm"}, "data": {"A": "1", "B": "2"}})
    kube.core.create_namespaced_secret(ns, {"metadata": {"name": "s"}, "stringData": {"C": "3"}})
    pod = py_pod("envfrom", PRINT_ENV, "A", "B", "C", "P_C", env=[{"name": "B", "value": "override"}])
    pod["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": "cm"}},
                                               {"secretRef": {"name": "s"}, "prefix": "P_"}]
    kube.create_pod(ns, pod)
    kube.wait_phase(ns, "envfrom", "Succeeded")
    assert log_json(kube, ns, "envfrom") == {"A": "1", "B": "override", "C": None, "P_C": "3"}


def test_zero_grace_delete_removes_at_once_and_kills(kube, ns, tmp_path):
    pidfile = tmp_path / "pid"
    script = ("import os, sys, time\nopen(sys.argv[1], 'w').write(str(os.getpid()))\n"
              "while True: time.sleep(1)")
    kube.create_pod(ns, py_pod("forced", script, str(pidfile), grace=30, host_access=True))
    wait_for(lambda: pidfile.exists() and pidfile.read_text(), timeout=20, message="pid written")
    pid = int(pidfile.read_text())
    kube.core.delete_namespaced_pod("forced", ns, body={"gracePeriodSeconds": 0})
    assert kube.error(kube.core.read_namespaced_pod, "forced", ns).status == 404
    wait_for(lambda: not pid_alive(pid), timeout=10, message="force-deleted pod's process killed")


def test_delete_options_in_the_body_are_honoured(kube, ns):
    kube.create_pod(ns, py_pod("bodied", SLEEP_FOREVER, grace=30))
    kube.wait_phase(ns, "bodied", "Running")
    out = kube.core.delete_namespaced_pod("bodied", ns, body={"gracePeriodSeconds": 5})
    assert out.metadata.deletion_grace_period_seconds == 5
    kube.wait_gone(kube.core.read_namespaced_pod, "bodied", ns, timeout=20)


def test_previous_and_followed_logs_of_a_restarted_container(kube, ns):
    """kubectl logs --previous / -f: the node agent's logs, served the same way on both backends
    (the real API server asks the node's /containerLogs)."""
    script = ("import os, sys, time\nmarker = sys.argv[1]\n"
              "if os.path.exists(marker):\n    print('second run', flush=True)\n    time.sleep(3600)\n"
              "open(marker, 'w').close()\nprint('first run', flush=True)\nsys.exit(1)")
    kube.create_pod(ns, py_pod("twice", script, "/data/ran", restart="Always", grace=1,
                               volumes=[{"name": "data", "emptyDir": {}}],
                               mounts=[{"name": "data", "mountPath": "/data"}]))
    kube.wait_pod(ns, "twice", lambda p: p.status.container_statuses and
                  p.status.container_statuses[0].restart_count == 1 and
                  p.status.container_statuses[0].state.running, timeout=60, message="restarted once")
    wait_for(lambda: "second run" in kube.log(ns, "twice"), timeout=20, message="second run's log")
    assert kube.log(ns, "twice") == "second run\n"
    assert kube.core.read_namespaced_pod_log("twice", ns, previous=True) == "first run\n"
    stream = kube.core.read_namespaced_pod_log("twice", ns, follow=True, _preload_content=False,
                                               _request_timeout=20)
    try:
        assert stream.readline() == b"second run\n"
    finally:
        stream.close()
