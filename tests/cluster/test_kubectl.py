"""kubectl conformance: the real kubectl 1.35 binary (node_modules/.bin, installed by ./dev) drives
the embedded cluster through its kubeconfig (HTTPS, bearer token) for what an admin does with a
JupyterHub cluster: apply (client- and server-side, strict validation), get with the real
server's columns (-o wide too), get all, describe, logs (-f, --previous), delete --wait, wait,
explain, label, annotate, patch (three types), and imperative create's protobuf answered 415."""

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.cluster.k8s_conformance import wait_for

ROOT = Path(__file__).resolve().parent.parent.parent
KUBECTL = shutil.which("kubectl", path=str(ROOT / "node_modules" / ".bin")) or shutil.which("kubectl")

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed (./dev setup installs it)")]


@pytest.fixture(scope="module")
def kubectl(module_cluster, tmp_path_factory):
    home = tmp_path_factory.mktemp("kubectl-home")   # its own discovery/OpenAPI cache

    def run(*args, stdin=None, check=True, timeout=60):
        env = dict(os.environ, KUBECONFIG=module_cluster.kubeconfig_path, HOME=str(home))
        proc = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True, env=env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc
    return run


@pytest.fixture
def kns(kubectl, kube):
    return kube.namespace("kc")


def manifest(text):
    return textwrap.dedent(text).lstrip()


CONFIGMAP = manifest("""
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: settings
    data:
      a: "1"
    """)

POD = manifest("""
    apiVersion: v1
    kind: Pod
    metadata:
      name: web
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: python:3.11
        command: [python, -u, -c, "import time\\nprint('hello from web')\\nwhile True: time.sleep(1)"]
    """)


def header(output):
    return output.splitlines()[0].split()


def test_version_talks_to_the_server_over_tls(kubectl, module_cluster):
    out = json.loads(kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"].startswith("v1.")
    assert module_cluster.url.startswith("https://")


def test_apply_client_side_then_again_is_unchanged(kubectl, kns):
    assert "configmap/settings created" in kubectl("apply", "-n", kns, "-f", "-", stdin=CONFIGMAP).stdout
    assert "configmap/settings unchanged" in kubectl("apply", "-n", kns, "-f", "-", stdin=CONFIGMAP).stdout
    changed = CONFIGMAP.replace('a: "1"', 'a: "2"')
    assert "configmap/settings configured" in kubectl("apply", "-n", kns, "-f", "-", stdin=changed).stdout
    got = json.loads(kubectl("get", "-n", kns, "configmap", "settings", "-o", "json").stdout)
    assert got["data"] == {"a": "2"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in got["metadata"]["annotations"]


def test_apply_server_side(kubectl, kns):
    out = kubectl("apply", "--server-side", "-n", kns, "-f", "-", stdin=CONFIGMAP).stdout
    assert "configmap/settings serverside-applied" in out
    more = CONFIGMAP.replace('a: "1"', 'a: "1"\n  b: "2"')
    kubectl("apply", "--server-side", "-n", kns, "-f", "-", stdin=more)
    got = json.loads(kubectl("get", "-n", kns, "cm", "settings", "-o", "json").stdout)
    assert got["data"] == {"a": "1", "b": "2"}


@pytest.mark.parametrize("server_side", [False, True])
def test_strict_validation_rejects_unknown_fields_and_creates_nothing(kubectl, kns, server_side):
    bad = CONFIGMAP.replace("\ndata:", "\nbogus: 1\ndata:")
    args = ["apply", "-n", kns, "--validate=strict", "-f", "-"] + (["--server-side"] if server_side else [])
    proc = kubectl(*args, stdin=bad, check=False)
    assert proc.returncode != 0
    if server_side:   # server-side apply types the object against the schema (the real server's 500)
        assert ".bogus: field not declared in schema" in proc.stderr, proc.stderr
    else:
        assert 'unknown field "bogus"' in proc.stderr and "strict decoding error" in proc.stderr, proc.stderr
    assert kubectl("get", "-n", kns, "cm", "settings", check=False).returncode != 0


def test_unknown_fields_in_a_patch_warn_and_are_dropped(kubectl, kns):
    kubectl("apply", "-n", kns, "-f", "-", stdin=CONFIGMAP)
    proc = kubectl("patch", "-n", kns, "cm", "settings", "--type=merge", "-p", '{"bogus": 1, "data": {"b": "2"}}')
    assert 'Warning: unknown field "bogus"' in proc.stderr   # kubectl patch asks for Warn
    got = json.loads(kubectl("get", "-n", kns, "cm", "settings", "-o", "json").stdout)
    assert "bogus" not in got and got["data"] == {"a": "1", "b": "2"}   # dropped, as the real server's decoder does


def test_get_pods_has_the_real_servers_columns_and_wide(kubectl, kns):
    kubectl("apply", "-n", kns, "-f", "-", stdin=POD)
    kubectl("wait", "-n", kns, "--for=condition=Ready", "pod/web", "--timeout=60s")
    out = kubectl("get", "-n", kns, "pods").stdout
    assert header(out) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert out.splitlines()[1].split()[:4] == ["web", "1/1", "Running", "0"]
    wide = kubectl("get", "-n", kns, "pods", "-o", "wide").stdout
    assert header(wide) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE",
                            "READINESS", "GATES"]
    row = wide.splitlines()[1].split()
    assert row[5].startswith("127.") and row[6] == "ptjaas-node-1"


def test_get_columns_of_the_other_kinds(kubectl, kns):
    kubectl("apply", "-n", kns, "-f", "-", stdin=manifest("""
        apiVersion: v1
        kind: PersistentVolumeClaim
        metadata: {name: home}
        spec:
          accessModes: [ReadWriteOnce]
          resources: {requests: {storage: 1Gi}}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: hub}
        spec:
          selector: {app: hub}
          ports: [{name: http, port: 8081, targetPort: 8081}]
        ---
        apiVersion: v1
        kind: ResourceQuota
        metadata: {name: compute}
        spec:
          hard: {requests.cpu: "4", limits.memory: 8Gi}
        """))
    wait_for(lambda: "Bound" in kubectl("get", "-n", kns, "pvc", "home").stdout, message="claim bound")
    expected = {
        "pvc": ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS", "MODES", "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "AGE"],
        "pv": ["NAME", "CAPACITY", "ACCESS", "MODES", "RECLAIM", "POLICY", "STATUS", "CLAIM", "STORAGECLASS",
               "VOLUMEATTRIBUTESCLASS", "REASON", "AGE"],
        "nodes": ["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        "services": ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"],
        "quota": ["NAME", "REQUEST", "LIMIT", "AGE"],
        "events": ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
    }
    for kind, columns in expected.items():
        assert header(kubectl("get", "-n", kns, kind).stdout) == columns, kind
    pvc = kubectl("get", "-n", kns, "pvc", "home").stdout.splitlines()[1].split()
    assert pvc[1] == "Bound" and pvc[3] == "1Gi" and pvc[4] == "RWO" and pvc[5] == "standard"
    assert kubectl("get", "-n", kns, "svc", "hub").stdout.splitlines()[1].split()[4] == "8081/TCP"
    wait_for(lambda: "limits.memory: 0/8Gi" in kubectl("get", "-n", kns, "quota", "compute").stdout,
             message="quota status in the LIMIT column")
    node_wide = header(kubectl("get", "nodes", "-o", "wide").stdout)
    assert node_wide[5:] == ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    assert header(kubectl("get", "-n", kns, "svc", "-o", "wide").stdout)[-1] == "SELECTOR"
    assert "ProvisioningSucceeded" in kubectl("get", "-n", kns, "events").stdout


def test_get_all_lists_pods_and_services(kubectl, kns):
    kubectl("apply", "-n", kns, "-f", "-", stdin=POD)
    kubectl("create", "-n", kns, "-f", "-", stdin=manifest("""
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        spec: {selector: {app: web}, ports: [{port: 80}]}
        """))
    out = kubectl("get", "all", "-n", kns).stdout
    assert "pod/web" in out and "service/web" in out


def test_describe_pod_shows_its_events(kubectl, kns):
    kubectl("apply", "-n", kns, "-f", "-", stdin=POD)
    kubectl("wait", "-n", kns, "--for=condition=Ready", "pod/web", "--timeout=60s")
    out = kubectl("describe", "-n", kns, "pod", "web").stdout
    assert "Name:" in out and "web" in out and "Node:" in out and "ptjaas-node-1" in out
    assert "Scheduled" in out and "Started" in out   # the Events table


def test_logs_follow_and_previous(kubectl, kns):
    crasher = POD.replace("name: web", "name: crasher").replace(
        "import time\\nprint('hello from web')\\nwhile True: time.sleep(1)",
        "import os\\nprint('run', os.getpid())\\nraise SystemExit(1)")
    kubectl("apply", "-n", kns, "-f", "-", stdin=crasher)
    kubectl("apply", "-n", kns, "-f", "-", stdin=POD)
    kubectl("wait", "-n", kns, "--for=condition=Ready", "pod/web", "--timeout=60s")
    assert kubectl("logs", "-n", kns, "web").stdout == "hello from web\n"
    follow = subprocess.Popen([KUBECTL, "logs", "-f", "-n", kns, "web"], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, KUBECONFIG=os.environ["KUBECONFIG"]))
    try:
        assert follow.stdout.readline() == "hello from web\n"
        kubectl("delete", "-n", kns, "pod", "web", "--wait=false")
        assert follow.wait(30) == 0   # the stream ends with the container
    finally:
        follow.kill()
    wait_for(lambda: kubectl("logs", "-n", kns, "crasher", "--previous", check=False).returncode == 0,
             message="a previous instance of the crashing container")
    assert kubectl("logs", "-n", kns, "crasher", "--previous").stdout.startswith("run ")
    fresh = POD.replace("name: web", "name: fresh")
    kubectl("apply", "-n", kns, "-f", "-", stdin=fresh)
    kubectl("wait", "-n", kns, "--for=condition=Ready", "pod/fresh", "--timeout=60s")
    proc = kubectl("logs", "-n", kns, "fresh", "--previous", check=False)
    assert proc.returncode != 0 and 'previous terminated container "main" in pod "fresh" not found' in proc.stderr


def test_delete_wait_returns_once_the_pod_is_gone(kubectl, kns, kube):
    kubectl("apply", "-n", kns, "-f", "-", stdin=POD)
    kubectl("wait", "-n", kns, "--for=condition=Ready", "pod/web", "--timeout=60s")
    out = kubectl("delete", "-n", kns, "pod", "web", "--wait=true", "--timeout=60s").stdout
    assert 'pod "web" deleted' in out
    assert kube.core.list_namespaced_pod(kns).items == []


def test_explain_reads_the_openapi_schema(kubectl):
    out = kubectl("explain", "pod.spec.containers.image").stdout
    assert "KIND:       Pod" in out and "FIELD: image <string>" in out and "Container image name" in out
    pvc = kubectl("explain", "persistentvolumeclaim.spec.accessModes").stdout
    assert "<[]string>" in pvc


def test_label_annotate_and_the_three_patch_types(kubectl, kns):
    kubectl("apply", "-n", kns, "-f", "-", stdin=CONFIGMAP)
    kubectl("label", "-n", kns, "cm", "settings", "team=vision")
    kubectl("annotate", "-n", kns, "cm", "settings", "owner=alice")
    kubectl("patch", "-n", kns, "cm", "settings", "-p", '{"data": {"s": "strategic"}}')
    kubectl("patch", "-n", kns, "cm", "settings", "--type=merge", "-p", '{"data": {"m": "merge"}}')
    kubectl("patch", "-n", kns, "cm", "settings", "--type=json", "-p", '[{"op": "add", "path": "/data/j", "value": "json"}]')
    got = json.loads(kubectl("get", "-n", kns, "cm", "settings", "-o", "json").stdout)
    assert got["metadata"]["labels"] == {"team": "vision"}
    assert got["metadata"]["annotations"]["owner"] == "alice"
    assert got["data"] == {"a": "1", "s": "strategic", "m": "merge", "j": "json"}
    assert kubectl("get", "-n", kns, "cm", "-l", "team=vision", "-o", "name").stdout.strip() == "configmap/settings"
    kubectl("label", "-n", kns, "cm", "settings", "team-")
    assert "team" not in (json.loads(kubectl("get", "-n", kns, "cm", "settings", "-o", "json").stdout)["metadata"].get("labels") or {})


def test_imperative_create_sends_protobuf_and_gets_a_clear_415(kubectl, kube):
    proc = kubectl("create", "namespace", "made-by-kubectl", check=False)   # kubectl 1.35 sends protobuf here
    assert proc.returncode != 0
    assert "the body of the request was in an unknown format" in proc.stderr
    assert "application/json" in proc.stderr
    assert "made-by-kubectl" not in [n.metadata.name for n in kube.core.list_namespace().items]
    # the declarative form of the same works
    kubectl("create", "-f", "-", stdin="apiVersion: v1\nkind: Namespace\nmetadata: {name: made-by-kubectl}\n")


def test_a_kubeconfig_without_the_token_is_refused(kubectl, module_cluster, tmp_path):
    import yaml
    config = yaml.safe_load(Path(module_cluster.kubeconfig_path).read_text())
    config["users"][0]["user"] = {"token": "not-the-token"}
    other = tmp_path / "kubeconfig"
    other.write_text(yaml.safe_dump(config))
    proc = subprocess.run([KUBECTL, "get", "pods"], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, KUBECONFIG=str(other), HOME=str(tmp_path)))
    assert proc.returncode != 0
    assert "Unauthorized" in proc.stderr or "provide credentials" in proc.stderr, proc.stderr


def test_validate_warn_accepts_and_warns(kubectl, kns):
    bad = CONFIGMAP.replace("\ndata:", "\nbogus: 1\ndata:")
    proc = kubectl("apply", "-n", kns, "--validate=warn", "-f", "-", stdin=bad)
    assert "configmap/settings created" in proc.stdout
    assert 'Warning: unknown field "bogus"' in proc.stderr
    assert "bogus" not in json.loads(kubectl("get", "-n", kns, "cm", "settings", "-o", "json").stdout)


def test_get_watch_prints_rows_as_pods_change(kubectl, kns, module_cluster, tmp_path):
    kubectl("apply", "-n", kns, "-f", "-", stdin=POD)
    watch = subprocess.Popen([KUBECTL, "get", "pods", "-w", "-n", kns], stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ, KUBECONFIG=module_cluster.kubeconfig_path, HOME=str(tmp_path)))
    try:
        assert watch.stdout.readline().split()[:3] == ["NAME", "READY", "STATUS"]
        assert watch.stdout.readline().split()[0] == "web"
        kubectl("delete", "-n", kns, "pod", "web", "--wait=false")
        while True:   # rows follow the pod to its end
            row = watch.stdout.readline().split()
            assert row and row[0] == "web"
            if row[2] == "Terminating":
                break
    finally:
        watch.kill()


def test_apply_a_list_as_kubectl_get_writes_it(kubectl, kns, tmp_path):
    """A ``kind: List`` (what ``kubectl get -o json`` writes): kubectl validates it against the
    OpenAPI v2 document in protobuf, which the server serves as kube-apiserver does."""
    items = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"listed-{i}"}, "data": {"i": str(i)}}
             for i in (1, 2)]
    path = tmp_path / "list.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    out = kubectl("apply", "-n", kns, "-f", str(path)).stdout
    assert "configmap/listed-1 created" in out and "configmap/listed-2 created" in out, out
    items[1]["bogus"] = 1
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    proc = kubectl("apply", "-n", kns, "--validate=strict", "-f", str(path), check=False)
    assert proc.returncode != 0 and 'unknown field "bogus"' in proc.stderr, proc.stderr
