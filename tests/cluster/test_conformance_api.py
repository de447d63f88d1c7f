"""Conformance of the embedded cluster's REST API with the official clients.

Discovery, CRUD of every resource type ptjaas uses, metadata, one cluster-wide resourceVersion,
Status error bodies (404/409/422), the three PATCH flavours, ownerReferences garbage collection
and namespace lifecycle. Driven with `kubernetes` (sync) and `kubernetes_asyncio`.
"""

import base64
import datetime
import re
import uuid

import pytest
from kubernetes import client as k8s
from kubernetes_asyncio import client as ak8s
from kubernetes_asyncio.client.rest import ApiException as AsyncApiException

from tests.cluster.k8s_conformance import OWN, SLEEP_FOREVER, assert_status, py_pod, status_body, wait_for

pytestmark = pytest.mark.timeout(90)

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def standard_provisioner(kube):
    return kube.raw("GET", "/apis/storage.k8s.io/v1/storageclasses/standard").json()["provisioner"]


def rv(obj):
    return int(obj.metadata.resource_version)


# --- discovery ------------------------------------------------------------------------------

def test_version_endpoint_parses_as_version_info(kube):
    info = k8s.VersionApi(kube.api).get_code()
    assert info.major.isdigit() and info.minor.rstrip("+").isdigit()
    assert info.git_version.startswith("v")
    assert info.platform


def test_core_and_group_discovery(kube):
    core = k8s.CoreApi(kube.api).get_api_versions()
    assert "v1" in core.versions
    groups = {g.name: g for g in k8s.ApisApi(kube.api).get_api_versions().groups}
    for name, version in [("storage.k8s.io", "v1"), ("snapshot.storage.k8s.io", "v1")]:
        assert name in groups, sorted(groups)
        g = groups[name]
        assert f"{name}/{version}" in [v.group_version for v in g.versions]
        assert g.preferred_version.group_version == f"{name}/{version}"


def test_resource_lists_name_every_served_resource(kube):
    core = {r.name: r for r in kube.core.get_api_resources().resources}
    for plural, kind in [("namespaces", "Namespace"), ("pods", "Pod"),
                         ("persistentvolumeclaims", "PersistentVolumeClaim"),
                         ("services", "Service"), ("secrets", "Secret"),
                         ("configmaps", "ConfigMap"), ("serviceaccounts", "ServiceAccount"),
                         ("events", "Event"), ("resourcequotas", "ResourceQuota"),
                         ("nodes", "Node")]:
        assert plural in core, sorted(core)
        assert core[plural].kind == kind
        assert "list" in core[plural].verbs and "watch" in core[plural].verbs
    assert core["pods"].namespaced and not core["nodes"].namespaced
    assert "pods/log" in core and "pods/status" in core
    storage = {r.name for r in kube.storage.get_api_resources().resources}
    assert "storageclasses" in storage


def test_dynamic_client_discovers_and_uses_resources(kube, ns, tmp_path):
    from kubernetes.dynamic import DynamicClient

    dyn = DynamicClient(kube.api, cache_file=str(tmp_path / "discovery.json"))
    snaps = dyn.resources.get(api_version="snapshot.storage.k8s.io/v1", kind="VolumeSnapshot")
    assert snaps.namespaced and snaps.name == "volumesnapshots"
    dyn.resources.get(api_version="storage.k8s.io/v1", kind="StorageClass")
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    cms.create(namespace=ns, body={"metadata": {"name": "dyn"}, "data": {"k": "v"}})
    assert [i.metadata.name for i in cms.get(namespace=ns, field_selector=OWN).items] == ["dyn"]


async def test_discovery_with_async_client(akube):
    info = await ak8s.VersionApi(akube).get_code()
    assert info.git_version.startswith("v")
    assert "v1" in (await ak8s.CoreApi(akube).get_api_versions()).versions
    names = [g.name for g in (await ak8s.ApisApi(akube).get_api_versions()).groups]
    assert "storage.k8s.io" in names and "snapshot.storage.k8s.io" in names


# --- metadata and resourceVersion -----------------------------------------------------------

def test_metadata_uid_timestamp_labels_annotations(kube, ns):
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    cm = kube.core.create_namespaced_config_map(ns, {
        "metadata": {"name": "meta", "labels": {"app": "x"}, "annotations": {"note": "hi"}},
        "data": {"k": "v"}})
    assert UUID_RE.match(cm.metadata.uid)
    assert cm.metadata.namespace == ns
    ts = cm.metadata.creation_timestamp
    assert ts.tzinfo is not None
    assert before - datetime.timedelta(seconds=5) <= ts <= before + datetime.timedelta(seconds=60)
    got = kube.core.read_namespaced_config_map("meta", ns)
    assert (got.metadata.uid, got.metadata.labels, got.metadata.annotations, got.data) == (
        cm.metadata.uid, {"app": "x"}, {"note": "hi"}, {"k": "v"})
    assert got.metadata.creation_timestamp == ts


def test_generate_name(kube, ns):
    names = set()
    for _ in range(3):
        cm = kube.core.create_namespaced_config_map(ns, {"metadata": {"generateName": "gen-"}})
        assert cm.metadata.name.startswith("gen-") and len(cm.metadata.name) > len("gen-")
        assert cm.metadata.generate_name == "gen-"
        names.add(cm.metadata.name)
    assert len(names) == 3
    assert names <= {c.metadata.name for c in kube.core.list_namespaced_config_map(ns).items}


def test_one_cluster_wide_increasing_resource_version(kube, ns):
    seen = [rv(kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "a"}})),
            rv(kube.core.create_namespaced_secret(ns, {"metadata": {"name": "b"}})),
            rv(kube.core.create_namespaced_service_account(ns, {"metadata": {"name": "c"}})),
            rv(kube.core.create_namespace({"metadata": {"name": f"rv-{uuid.uuid4().hex[:6]}"}})),
            rv(kube.core.patch_namespaced_config_map("a", ns, {"data": {"x": "1"}})),
            rv(kube.core.replace_namespaced_secret(
                "b", ns, {"metadata": {"name": "b"}, "data": {"k": "dg=="}}))]
    assert seen == sorted(seen) and len(set(seen)) == len(seen), seen
    # a write that changes nothing keeps the resourceVersion
    assert rv(kube.core.replace_namespaced_secret("b", ns, kube.core.read_namespaced_secret("b", ns))) == seen[-1]
    assert rv(kube.core.patch_namespaced_config_map("a", ns, {"data": {"x": "1"}})) == seen[4]
    listed = kube.core.list_namespaced_config_map(ns)
    assert int(listed.metadata.resource_version) >= seen[-1]
    # reads never bump it
    again = kube.core.read_namespaced_config_map("a", ns)
    assert rv(again) == seen[4]


# --- CRUD of each resource ------------------------------------------------------------------

def test_secret_string_data_is_stored_as_base64_data(kube, ns):
    s = kube.core.create_namespaced_secret(ns, {"metadata": {"name": "s"},
                                                "stringData": {"token": "hunter2"}})
    assert s.type == "Opaque"
    got = kube.core.read_namespaced_secret("s", ns)
    assert got.data == {"token": base64.b64encode(b"hunter2").decode()}
    assert not got.string_data


def test_configmap_crud_and_delete_returns_404_afterwards(kube, ns):
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "cm"}, "data": {"a": "1"},
                                                "binaryData": {"b": base64.b64encode(b"\0\1").decode()}})
    cm = kube.core.read_namespaced_config_map("cm", ns)
    cm.data["a"] = "2"
    updated = kube.core.replace_namespaced_config_map("cm", ns, cm)
    assert updated.data == {"a": "2"} and base64.b64decode(updated.binary_data["b"]) == b"\0\1"
    assert rv(updated) > rv(cm)
    kube.core.delete_namespaced_config_map("cm", ns)
    e = kube.error(kube.core.read_namespaced_config_map, "cm", ns)
    body = assert_status(e, 404, "NotFound")
    assert body["message"] == 'configmaps "cm" not found'
    assert body["details"]["name"] == "cm" and body["details"]["kind"] == "configmaps"
    assert_status(kube.error(kube.core.delete_namespaced_config_map, "cm", ns), 404, "NotFound")


def test_service_gets_cluster_ip_and_defaults(kube, ns):
    svc = kube.core.create_namespaced_service(ns, {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80,
                                                        "targetPort": 8888}]}})
    assert svc.spec.type == "ClusterIP"
    assert re.match(r"^\d+\.\d+\.\d+\.\d+$", svc.spec.cluster_ip), svc.spec.cluster_ip
    assert svc.spec.ports[0].protocol == "TCP"
    plain = kube.core.create_namespaced_service(ns, {
        "metadata": {"name": "plain"}, "spec": {"ports": [{"port": 8081}]}})
    assert plain.spec.ports[0].target_port in (8081, "8081")
    assert plain.spec.cluster_ip != svc.spec.cluster_ip
    headless = kube.core.create_namespaced_service(ns, {
        "metadata": {"name": "headless"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}})
    assert headless.spec.cluster_ip == "None"
    names = {s.metadata.name for s in kube.core.list_namespaced_service(ns).items}
    assert names == {"web", "plain", "headless"}


def test_service_accounts_and_default_account(kube, ns):
    kube.core.create_namespaced_service_account(ns, {"metadata": {"name": "hub"}})
    wait_for(lambda: {"hub", "default"} <= {
        sa.metadata.name for sa in kube.core.list_namespaced_service_account(ns).items},
        timeout=15, message="the namespace's default service account")


def test_events_can_be_created_and_listed(kube, ns):
    kube.core.create_namespaced_event(ns, {
        "metadata": {"name": "ev1"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": ns, "apiVersion": "v1"},
        "reason": "Custom", "message": "hello", "type": "Normal"})
    evs = kube.core.list_namespaced_event(ns).items
    assert [(e.reason, e.message, e.involved_object.name) for e in evs] == [("Custom", "hello", "p")]
    everywhere = kube.core.list_event_for_all_namespaces(
        field_selector=f"involvedObject.name=p,metadata.namespace={ns}").items
    assert [e.metadata.name for e in everywhere] == ["ev1"]


def test_nodes_report_capacity(kube):
    nodes = {n.metadata.name: n for n in kube.core.list_node().items}
    node = nodes["ptjaas-node-1"]
    assert node.status.capacity["cpu"] == "16"
    assert node.status.capacity["memory"] == "64Gi"
    assert node.status.capacity["nvidia.com/gpu"] == "4"
    assert node.status.allocatable["nvidia.com/gpu"] == "4"
    assert {c.type: c.status for c in node.status.conditions}.get("Ready") == "True"
    assert kube.core.read_node("ptjaas-node-1").metadata.uid == node.metadata.uid


def test_resource_quota_crud(kube, ns):
    q = kube.core.create_namespaced_resource_quota(ns, {
        "metadata": {"name": "q"}, "spec": {"hard": {"pods": "3", "requests.cpu": "2"}}})
    assert q.spec.hard == {"pods": "3", "requests.cpu": "2"}
    got = wait_for(lambda: kube.core.read_namespaced_resource_quota("q", ns).status.hard,
                   timeout=10, message="quota status.hard")
    assert got == {"pods": "3", "requests.cpu": "2"}
    assert [x.metadata.name for x in kube.core.list_namespaced_resource_quota(ns).items] == ["q"]


def populate(kube, ns):
    """One object of every namespaced kind, plus a pod that ran (events, status, a bound claim)."""
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "cm"}, "data": {"a": "b"}})
    kube.core.create_namespaced_secret(ns, {"metadata": {"name": "sec"}, "stringData": {"a": "b"}})
    kube.core.create_namespaced_service_account(ns, {"metadata": {"name": "sa"}})
    kube.core.create_namespaced_service(ns, {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}})
    kube.core.create_namespaced_resource_quota(ns, {"metadata": {"name": "rq"},
                                                    "spec": {"hard": {"pods": "10"}}})
    kube.core.create_namespaced_persistent_volume_claim(ns, {"metadata": {"name": "pvc"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    kube.create_pod(ns, py_pod("ran", "print('hi')", volumes=[
        {"name": "v", "persistentVolumeClaim": {"claimName": "pvc"}}],
        mounts=[{"name": "v", "mountPath": "/data"}]))
    kube.wait_phase(ns, "ran", "Succeeded")


def test_sync_client_parses_every_resource_type(kube, ns):
    """The sync client validates answers against its models: every field it requires must be there."""
    populate(kube, ns)
    c = kube.core
    for listing in (c.list_namespaced_config_map(ns), c.list_namespaced_secret(ns),
                    c.list_namespaced_service_account(ns), c.list_namespaced_service(ns),
                    c.list_namespaced_resource_quota(ns), c.list_namespaced_persistent_volume_claim(ns),
                    c.list_namespaced_pod(ns), c.list_namespaced_event(ns)):
        assert listing.items, listing
    assert c.list_namespace().items and c.list_persistent_volume().items
    assert kube.storage.list_storage_class().items
    assert c.read_namespaced_pod("ran", ns).status.container_statuses[0].image_id
    assert c.list_node().items[0].status.node_info.kubelet_version


async def test_async_client_parses_every_resource_type(akube, kube, ns):
    populate(kube, ns)
    c = ak8s.CoreV1Api(akube)
    for listing in (await c.list_namespaced_config_map(ns), await c.list_namespaced_secret(ns),
                    await c.list_namespaced_service_account(ns), await c.list_namespaced_service(ns),
                    await c.list_namespaced_resource_quota(ns),
                    await c.list_namespaced_persistent_volume_claim(ns),
                    await c.list_namespaced_pod(ns), await c.list_namespaced_event(ns),
                    await c.list_node(), await c.list_persistent_volume(),
                    await ak8s.StorageV1Api(akube).list_storage_class()):
        assert listing.items, listing
    pod = await c.read_namespaced_pod("ran", ns)
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0


# --- errors as Status objects ---------------------------------------------------------------

def test_create_taken_name_is_409_already_exists(kube, ns):
    kube.core.create_namespaced_secret(ns, {"metadata": {"name": "dup"}})
    body = assert_status(kube.error(kube.core.create_namespaced_secret, ns,
                                    {"metadata": {"name": "dup"}}), 409, "AlreadyExists")
    assert body["message"] == 'secrets "dup" already exists'
    assert body["details"] == {**body["details"], "name": "dup", "kind": "secrets"}


def test_stale_resource_version_update_is_409_conflict(kube, ns):
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}, "data": {"v": "0"}})
    first = kube.core.read_namespaced_config_map("c", ns)
    second = kube.core.read_namespaced_config_map("c", ns)
    first.data["v"] = "1"
    kube.core.replace_namespaced_config_map("c", ns, first)
    second.data["v"] = "2"
    body = assert_status(kube.error(kube.core.replace_namespaced_config_map, "c", ns, second),
                         409, "Conflict")
    assert body["message"] == (
        'Operation cannot be fulfilled on configmaps "c": the object has been modified; '
        "please apply your changes to the latest version and try again")
    assert kube.core.read_namespaced_config_map("c", ns).data == {"v": "1"}
    # a patch carrying a stale resourceVersion is refused the same way
    e = kube.error(kube.core.patch_namespaced_config_map, "c", ns,
                   {"metadata": {"resourceVersion": second.metadata.resource_version},
                    "data": {"v": "3"}}, _content_type="application/merge-patch+json")
    assert_status(e, 409, "Conflict")
    assert kube.core.read_namespaced_config_map("c", ns).data == {"v": "1"}


@pytest.mark.parametrize("name", ["Bad_Name", "UPPER", "-lead", "x" * 254])
def test_invalid_names_are_422_invalid(kube, ns, name):
    e = kube.error(kube.core.create_namespaced_config_map, ns, {"metadata": {"name": name}})
    body = assert_status(e, 422, "Invalid")
    assert body["message"].startswith(f'ConfigMap "{name}" is invalid: metadata.name: Invalid value')
    assert body["details"]["kind"] == "ConfigMap"
    assert any(c.get("field") == "metadata.name" for c in body["details"]["causes"])
    assert kube.core.list_namespaced_config_map(ns, field_selector=OWN).items == []


def test_a_negative_resource_request_is_422_invalid(kube, ns):
    pod = py_pod("neg", SLEEP_FOREVER)
    pod["spec"]["containers"][0]["resources"] = {"requests": {"memory": "-1"}}
    e = kube.error(kube.core.create_namespaced_pod, ns, pod)
    assert ('spec.containers[0].resources.requests[memory]: Invalid value: "-1": '
            "must be greater than or equal to 0") in assert_status(e, 422, "Invalid")["message"]
    assert kube.core.list_namespaced_pod(ns).items == []


def test_invalid_specs_are_422_and_change_nothing(kube, ns):
    e = kube.error(kube.core.create_namespaced_pod, ns,
                   {"metadata": {"name": "empty"}, "spec": {"containers": []}})
    body = assert_status(e, 422, "Invalid")
    assert "spec.containers: Required value" in body["message"]
    e = kube.error(kube.core.create_namespaced_config_map, ns,
                   {"metadata": {"name": "lbl", "labels": {"app": "not a valid value!"}}})
    assert "metadata.labels: Invalid value" in assert_status(e, 422, "Invalid")["message"]
    e = kube.error(kube.core.create_namespaced_service, ns,
                   {"metadata": {"name": "svc.1"}, "spec": {"ports": [{"port": 80}]}})
    assert_status(e, 422, "Invalid")
    assert kube.core.list_namespaced_pod(ns).items == []
    assert kube.core.list_namespaced_service(ns).items == []


def test_unknown_paths_and_bad_bodies_are_status_errors(kube, ns):
    resp = kube.raw("GET", f"/api/v1/namespaces/{ns}/widgets")
    assert resp.status_code == 404
    assert resp.json()["kind"] == "Status" and resp.json()["reason"] == "NotFound"
    resp = kube.raw("POST", f"/api/v1/namespaces/{ns}/configmaps", data="{not json",
                    headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["kind"] == "Status" and resp.json()["reason"] == "BadRequest"


def _replace_pod(kube, ns, name, change):
    """Read, change and replace a pod; a 409 only means the scheduler wrote the pod's status in
    between (it marks an unschedulable pod as it retries), so read again and retry."""
    for _ in range(20):
        pod = kube.core.read_namespaced_pod(name, ns)
        change(pod)
        try:
            return kube.core.replace_namespaced_pod(name, ns, pod)
        except k8s.ApiException as e:
            if e.status != 409:
                raise
    raise AssertionError(f"pod {ns}/{name} kept changing under 20 replace attempts")


def test_pod_spec_is_mostly_immutable(kube, ns):
    kube.create_pod(ns, py_pod("fixed", SLEEP_FOREVER, node_selector={"no-such": "node"}))

    def change_command(pod):
        pod.spec.containers[0].command = ["other"]

    e = kube.error(_replace_pod, kube, ns, "fixed", change_command)
    body = assert_status(e, 422, "Invalid")
    assert "pod updates may not change fields other than" in body["message"]

    def change_image(pod):
        pod.spec.containers[0].image = "python:3.12"  # the image may change

    assert _replace_pod(kube, ns, "fixed", change_image).spec.containers[0].image == "python:3.12"


def test_delete_returns_what_each_client_method_declares(kube, ns, standard_provisioner):
    """Some resources answer DELETE with the deleted object, others with a Status; the sync
    client parses the answer into the declared model, so the wrong one breaks the call."""
    kube.core.create_namespaced_service_account(ns, {"metadata": {"name": "sa"}})
    assert kube.core.delete_namespaced_service_account("sa", ns).metadata.name == "sa"
    kube.core.create_namespaced_resource_quota(ns, {"metadata": {"name": "rq"},
                                                    "spec": {"hard": {"pods": "1"}}})
    assert kube.core.delete_namespaced_resource_quota("rq", ns).metadata.name == "rq"
    kube.core.create_namespaced_service(ns, {"metadata": {"name": "svc"},
                                             "spec": {"ports": [{"port": 80}]}})
    assert kube.core.delete_namespaced_service("svc", ns).metadata.name == "svc"
    sc = f"del-{ns}"
    kube.storage.create_storage_class({"metadata": {"name": sc}, "provisioner": standard_provisioner})
    assert kube.storage.delete_storage_class(sc).metadata.name == sc
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "cm"}})
    status = kube.core.delete_namespaced_config_map("cm", ns)
    status = status if isinstance(status, dict) else kube.to_dict(status)
    assert status["kind"] == "Status" and status["status"] == "Success"
    assert status["details"]["name"] == "cm"


def test_create_in_missing_namespace_is_404(kube):
    e = kube.error(kube.core.create_namespaced_config_map, "no-such-ns",
                   {"metadata": {"name": "x"}})
    assert assert_status(e, 404, "NotFound")["message"] == 'namespaces "no-such-ns" not found'


async def test_async_client_errors_and_crud(akube, kube, ns):
    core = ak8s.CoreV1Api(akube)
    made = await core.create_namespaced_config_map(ns, {"metadata": {"name": "a"}})
    assert UUID_RE.match(made.metadata.uid)
    with pytest.raises(AsyncApiException) as err:
        await core.create_namespaced_config_map(ns, {"metadata": {"name": "a"}})
    assert assert_status(err.value, 409, "AlreadyExists")
    with pytest.raises(AsyncApiException) as err:
        await core.read_namespaced_config_map("nope", ns)
    assert assert_status(err.value, 404, "NotFound")
    with pytest.raises(AsyncApiException) as err:
        await core.create_namespaced_config_map(ns, {"metadata": {"name": "No"}})
    assert assert_status(err.value, 422, "Invalid")
    deleted = await core.delete_namespaced_config_map("a", ns)
    assert deleted.kind in ("Status", "ConfigMap")
    assert (await core.list_namespaced_config_map(ns, field_selector=OWN)).items == []


# --- PATCH ----------------------------------------------------------------------------------

def test_strategic_merge_patch_labels_and_containers_by_name(kube, ns):
    pod = py_pod("p", SLEEP_FOREVER, labels={"a": "1", "b": "2"}, node_selector={"none": "x"})
    pod["spec"]["containers"].append({"name": "side", "image": "busybox", "command": ["true"]})
    kube.create_pod(ns, pod)
    # sync client sends dict bodies as application/strategic-merge-patch+json
    patched = kube.core.patch_namespaced_pod("p", ns, {
        "metadata": {"labels": {"b": None, "c": "3"}, "annotations": {"n": "v"}},
        "spec": {"containers": [{"name": "side", "image": "busybox:2"}]}})
    assert patched.metadata.labels == {"a": "1", "c": "3"}
    assert patched.metadata.annotations == {"n": "v"}
    images = {c.name: c.image for c in patched.spec.containers}
    assert images == {"main": "python:3.11", "side": "busybox:2"}  # merged by name, not replaced
    assert patched.spec.containers[0].command == ["python"]


def test_strategic_merge_patch_service_ports_merge_by_port(kube, ns):
    kube.core.create_namespaced_service(ns, {"metadata": {"name": "s"}, "spec": {
        "ports": [{"name": "http", "port": 80, "targetPort": 8888}]}})
    out = kube.core.patch_namespaced_service("s", ns, {"spec": {"ports": [
        {"name": "metrics", "port": 9090}, {"port": 80, "targetPort": 8080}]}})
    ports = {p.port: (p.name, p.target_port) for p in out.spec.ports}
    assert ports == {80: ("http", 8080), 9090: ("metrics", 9090)}


def test_json_merge_patch_replaces_lists_and_deletes_keys(kube, ns):
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "m", "labels": {"x": "1"}},
                                                "data": {"a": "1", "b": "2"}})
    out = kube.core.patch_namespaced_config_map(
        "m", ns, {"data": {"a": None, "c": "3"}, "metadata": {"labels": {"y": "2"}}},
        _content_type="application/merge-patch+json")
    assert out.data == {"b": "2", "c": "3"}
    assert out.metadata.labels == {"x": "1", "y": "2"}
    svc = kube.core.create_namespaced_service(ns, {"metadata": {"name": "s"}, "spec": {
        "ports": [{"name": "a", "port": 1}, {"name": "b", "port": 2}]}})
    out = kube.core.patch_namespaced_service("s", ns, {"spec": {"ports": [{"name": "c", "port": 3}]}},
                                             _content_type="application/merge-patch+json")
    assert [p.name for p in out.spec.ports] == ["c"]  # merge-patch replaces lists
    assert out.spec.cluster_ip == svc.spec.cluster_ip


def test_json_patch_operations_and_failed_test_op(kube, ns):
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "j"}, "data": {"a": "1"}})
    out = kube.core.patch_namespaced_config_map("j", ns, [
        {"op": "add", "path": "/data/b", "value": "2"},
        {"op": "replace", "path": "/data/a", "value": "10"},
        {"op": "add", "path": "/metadata/labels", "value": {"k": "v"}}])
    assert out.data == {"a": "10", "b": "2"} and out.metadata.labels == {"k": "v"}
    out = kube.core.patch_namespaced_config_map("j", ns, [{"op": "remove", "path": "/data/b"}])
    assert out.data == {"a": "10"}
    e = kube.error(kube.core.patch_namespaced_config_map, "j", ns,
                   [{"op": "test", "path": "/data/a", "value": "wrong"},
                    {"op": "replace", "path": "/data/a", "value": "x"}])
    assert e.status in (409, 422), e.status  # real servers: 422 Invalid (test op failed)
    assert status_body(e)["kind"] == "Status"
    assert kube.core.read_namespaced_config_map("j", ns).data == {"a": "10"}


def test_patch_of_missing_object_is_404(kube, ns):
    e = kube.error(kube.core.patch_namespaced_config_map, "ghost", ns, {"data": {"a": "1"}})
    assert_status(e, 404, "NotFound")


async def test_async_client_patch_flavours(akube, ns):
    core = ak8s.CoreV1Api(akube)
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "p", "labels": {"a": "1"}}})
    # kubernetes_asyncio picks strategic-merge for dicts and json-patch for lists
    out = await core.patch_namespaced_config_map("p", ns, {"metadata": {"labels": {"b": "2"}}})
    assert out.metadata.labels == {"a": "1", "b": "2"}
    out = await core.patch_namespaced_config_map(
        "p", ns, [{"op": "remove", "path": "/metadata/labels/a"}])
    assert out.metadata.labels == {"b": "2"}
    out = await core.patch_namespaced_config_map(
        "p", ns, {"data": {"k": "v"}}, _content_type="application/merge-patch+json")
    assert out.data == {"k": "v"} and out.metadata.labels == {"b": "2"}


# --- status subresource ---------------------------------------------------------------------

def test_pod_status_subresource_is_separate_from_spec(kube, ns):
    kube.create_pod(ns, py_pod("st", SLEEP_FOREVER, node_selector={"no-such": "node"}))
    cond = {"type": "example.com/Custom", "status": "True", "reason": "Testing"}
    out = kube.core.patch_namespaced_pod_status("st", ns, {"status": {"conditions": [cond]}})
    assert ("example.com/Custom", "True") in [(c.type, c.status) for c in out.status.conditions]
    read = kube.core.read_namespaced_pod_status("st", ns)
    assert "example.com/Custom" in [c.type for c in read.status.conditions]
    # status sent to the main resource is ignored; spec sent to /status is ignored
    kube.core.patch_namespaced_pod("st", ns, {"status": {"phase": "Succeeded"}},
                                   _content_type="application/merge-patch+json")
    kube.core.patch_namespaced_pod_status("st", ns, {"spec": {"activeDeadlineSeconds": 5}},
                                          _content_type="application/merge-patch+json")
    pod = kube.core.read_namespaced_pod("st", ns)
    assert pod.status.phase == "Pending"
    assert pod.spec.active_deadline_seconds is None


# --- ownerReferences and namespaces ---------------------------------------------------------

def test_owner_references_cascade_and_orphan(kube, ns):
    owner = kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "owner"}})
    ref = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}]
    kube.core.create_namespaced_secret(ns, {"metadata": {"name": "dep", "ownerReferences": ref}})
    kube.core.create_namespaced_service(ns, {"metadata": {"name": "dep-svc", "ownerReferences": ref},
                                             "spec": {"ports": [{"port": 80}]}})
    kube.core.create_namespaced_secret(ns, {"metadata": {"name": "unrelated"}})
    kube.core.delete_namespaced_config_map("owner", ns)
    kube.wait_gone(kube.core.read_namespaced_secret, "dep", ns, timeout=15)
    kube.wait_gone(kube.core.read_namespaced_service, "dep-svc", ns, timeout=15)
    assert kube.core.read_namespaced_secret("unrelated", ns)

    owner = kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "owner2"}})
    ref = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner2", "uid": owner.metadata.uid}]
    kube.core.create_namespaced_secret(ns, {"metadata": {"name": "kept", "ownerReferences": ref}})
    kube.core.delete_namespaced_config_map("owner2", ns, propagation_policy="Orphan")
    kube.wait_gone(kube.core.read_namespaced_config_map, "owner2", ns, timeout=15)
    wait_for(lambda: not kube.core.read_namespaced_secret("kept", ns).metadata.owner_references,
             timeout=15, message="orphaned dependent loses its ownerReference")


def test_foreground_deletion_waits_for_dependents(kube, ns):
    owner = kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "fg-owner"}})
    ref = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "fg-owner", "uid": owner.metadata.uid,
            "blockOwnerDeletion": True}]
    pod = py_pod("fg-dependent", SLEEP_FOREVER, grace=30)
    pod["metadata"]["ownerReferences"] = ref
    kube.create_pod(ns, pod)
    kube.wait_phase(ns, "fg-dependent", "Running")
    kube.core.delete_namespaced_config_map("fg-owner", ns, propagation_policy="Foreground")
    # the owner stays, marked, until its blocking dependents are gone
    held = kube.core.read_namespaced_config_map("fg-owner", ns)
    assert held.metadata.deletion_timestamp is not None
    assert "foregroundDeletion" in (held.metadata.finalizers or [])
    kube.wait_gone(kube.core.read_namespaced_pod, "fg-dependent", ns)
    kube.wait_gone(kube.core.read_namespaced_config_map, "fg-owner", ns)


def test_pod_owned_secret_goes_with_the_pod(kube, ns):
    pod = kube.create_pod(ns, py_pod("owner-pod", SLEEP_FOREVER))
    kube.core.create_namespaced_secret(ns, {"metadata": {"name": "pod-secret", "ownerReferences": [
        {"apiVersion": "v1", "kind": "Pod", "name": "owner-pod", "uid": pod.metadata.uid}]}})
    kube.core.delete_namespaced_pod("owner-pod", ns, grace_period_seconds=1)
    kube.wait_gone(kube.core.read_namespaced_pod, "owner-pod", ns)
    kube.wait_gone(kube.core.read_namespaced_secret, "pod-secret", ns, timeout=15)


def test_namespace_lifecycle(kube):
    name = kube.namespace("life")
    nsobj = kube.core.read_namespace(name)
    assert nsobj.status.phase == "Active"
    assert "default" in {n.metadata.name for n in kube.core.list_namespace().items}
    kube.core.create_namespaced_config_map(name, {"metadata": {"name": "inside"}})
    kube.core.create_namespaced_pod(name, py_pod("sleeper", SLEEP_FOREVER, grace=1))
    kube.core.delete_namespace(name)
    ns_after = None
    try:
        ns_after = kube.core.read_namespace(name)
    except k8s.ApiException as e:
        assert e.status == 404
    if ns_after is not None:  # still finalizing: Terminating, and closed to new content
        assert ns_after.status.phase == "Terminating"
        e = kube.error(kube.core.create_namespaced_config_map, name, {"metadata": {"name": "late"}})
        if e.status == 403:
            assert "because it is being terminated" in assert_status(e, 403, "Forbidden")["message"]
        else:
            assert_status(e, 404, "NotFound")
    kube.wait_gone(kube.core.read_namespace, name, timeout=30)
    assert kube.core.list_pod_for_all_namespaces(field_selector=f"metadata.namespace={name}").items == []
    assert kube.core.list_config_map_for_all_namespaces(
        field_selector=f"metadata.namespace={name}").items == []
