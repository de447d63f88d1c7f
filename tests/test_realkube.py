"""The real control plane used by tests (ptjaas_sandbox.realkube): our node agent and provisioner
run pods and make volumes for a real kube-apiserver, as a kubelet and an external provisioner do."""


import kubernetes
import pytest

from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def core(real_cluster):
    api = kubernetes.config.new_client_from_config(config_file=real_cluster.kubeconfig_path)
    yield kubernetes.client.CoreV1Api(api)
    api.close()


def test_node_registered_ready(core):
    node = core.read_node("ptjaas-node-1")
    assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"
    assert node.status.allocatable["nvidia.com/gpu"] == "4"


def test_pod_with_claim_runs_on_our_node(real_cluster, core):
    ns = "realkube-pod"
    core.create_namespace({"metadata": {"name": ns}})
    wait_for(lambda: core.list_namespaced_service_account(ns).items, message="the default ServiceAccount")
    core.create_namespaced_persistent_volume_claim(ns, {"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    script = "import os; open('/data/hello', 'w').write(os.environ['POD']); print('written')"
    core.create_namespaced_pod(ns, {"metadata": {"name": "writer"}, "spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "python:3.12", "command": ["python", "-c", script],
                        "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}})
    pod = wait_for(lambda: (p := core.read_namespaced_pod("writer", ns)).status.phase == "Succeeded" and p,
                   timeout=60, message="the pod to succeed on the real control plane")
    assert pod.spec.node_name == "ptjaas-node-1"
    claim = core.read_namespaced_persistent_volume_claim("data", ns)
    assert claim.status.phase == "Bound" and claim.spec.storage_class_name == "standard"
    pv = core.read_persistent_volume(claim.spec.volume_name)
    with open(f"{pv.spec.host_path.path}/hello") as f:
        assert f.read() == "writer"
    reasons = {e.reason for e in core.list_namespaced_event(ns).items}
    assert {"Scheduled", "Started", "ProvisioningSucceeded"} <= reasons, reasons
    core.delete_namespace(ns)
