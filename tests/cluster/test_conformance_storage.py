"""Storage conformance: StorageClasses, dynamic provisioning of claims, the missing-class warning,
volume expansion rules, claim protection while in use, and VolumeSnapshots (CustomObjectsApi)."""

import pytest
from kubernetes_asyncio import client as ak8s
from kubernetes_asyncio.client.rest import ApiException as AsyncApiException

from tests.cluster.k8s_conformance import SLEEP_FOREVER, assert_status, py_pod, wait_for

pytestmark = pytest.mark.timeout(90)

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
SNAP = dict(group="snapshot.storage.k8s.io", version="v1", plural="volumesnapshots")


def claim(name, size="1Gi", storage_class="standard", modes=("ReadWriteOnce",)):
    spec = {"accessModes": list(modes), "resources": {"requests": {"storage": size}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": spec}


def wait_bound(kube, ns, name, timeout=20):
    holder = {}

    def bound():
        holder["c"] = kube.core.read_namespaced_persistent_volume_claim(name, ns)
        return holder["c"].status.phase == "Bound"

    wait_for(bound, timeout=timeout, message=f"claim {ns}/{name} Bound")
    return holder["c"]


@pytest.fixture(scope="module")
def standard(kube):
    return kube.storage.read_storage_class("standard")


def test_default_storage_class(kube, standard):
    assert standard.allow_volume_expansion is True
    assert (standard.metadata.annotations or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
    assert standard.provisioner
    assert standard.metadata.namespace is None
    assert "standard" in {c.metadata.name for c in kube.storage.list_storage_class().items}


def test_storage_class_crud(kube, standard):
    made = kube.storage.create_storage_class({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "crud-class"}, "provisioner": standard.provisioner,
        "reclaimPolicy": "Retain", "allowVolumeExpansion": False})
    assert made.reclaim_policy == "Retain" and made.allow_volume_expansion is False
    e = kube.error(kube.storage.create_storage_class, {
        "metadata": {"name": "crud-class"}, "provisioner": standard.provisioner})
    assert assert_status(e, 409, "AlreadyExists")["details"]["group"] == "storage.k8s.io"
    kube.storage.delete_storage_class("crud-class")
    e = kube.error(kube.storage.read_storage_class, "crud-class")
    assert assert_status(e, 404, "NotFound")["message"] == \
        'storageclasses.storage.k8s.io "crud-class" not found'


def test_claim_is_provisioned_and_bound(kube, ns, standard):
    made = kube.core.create_namespaced_persistent_volume_claim(ns, claim("home", "2Gi"))
    assert made.status.phase in (None, "Pending", "Bound")
    c = wait_bound(kube, ns, "home")
    assert c.spec.volume_name
    assert c.status.capacity["storage"] == "2Gi"
    assert c.status.access_modes == ["ReadWriteOnce"]
    pv = kube.core.read_persistent_volume(c.spec.volume_name)
    assert pv.spec.claim_ref.name == "home" and pv.spec.claim_ref.namespace == ns
    assert pv.spec.claim_ref.uid == c.metadata.uid
    assert pv.spec.storage_class_name == "standard"
    assert pv.spec.capacity["storage"] == "2Gi"
    assert pv.status.phase == "Bound"


def test_claim_without_class_gets_the_default_class(kube, ns):
    kube.core.create_namespaced_persistent_volume_claim(ns, claim("nocls", storage_class=None))
    c = wait_bound(kube, ns, "nocls")
    assert c.spec.storage_class_name == "standard"


def test_claim_with_missing_class_stays_pending_with_warning(kube, ns):
    kube.core.create_namespaced_persistent_volume_claim(ns, claim("lost", storage_class="nope"))
    ev = kube.wait_event(ns, "lost", "ProvisioningFailed", kind="PersistentVolumeClaim")
    assert ev.type == "Warning"
    assert 'storageclass.storage.k8s.io "nope" not found' in ev.message
    c = kube.core.read_namespaced_persistent_volume_claim("lost", ns)
    assert c.status.phase == "Pending" and not c.spec.volume_name


def test_expansion_is_honoured_and_shrinking_refused(kube, ns):
    kube.core.create_namespaced_persistent_volume_claim(ns, claim("grow", "1Gi"))
    wait_bound(kube, ns, "grow")
    # strategic-merge patch of the storage request (what the sync client sends for a dict)
    out = kube.core.patch_namespaced_persistent_volume_claim(
        "grow", ns, {"spec": {"resources": {"requests": {"storage": "3Gi"}}}})
    assert out.spec.resources.requests["storage"] == "3Gi"
    wait_for(lambda: kube.core.read_namespaced_persistent_volume_claim("grow", ns)
             .status.capacity["storage"] == "3Gi", timeout=20, message="capacity grows to 3Gi")
    e = kube.error(kube.core.patch_namespaced_persistent_volume_claim, "grow", ns,
                   {"spec": {"resources": {"requests": {"storage": "2Gi"}}}})
    body = assert_status(e, 422, "Invalid")
    assert "spec.resources.requests.storage: Forbidden: field can not be less than status.capacity" \
        in body["message"]
    assert body["message"].startswith('PersistentVolumeClaim "grow" is invalid')
    got = kube.core.read_namespaced_persistent_volume_claim("grow", ns)
    assert got.spec.resources.requests["storage"] == "3Gi"
    got.spec.resources.requests["storage"] = "1Gi"  # a PUT is refused the same way
    e = kube.error(kube.core.replace_namespaced_persistent_volume_claim, "grow", ns, got)
    assert "field can not be less than status.capacity" in assert_status(e, 422, "Invalid")["message"]


def test_expansion_refused_without_allow_volume_expansion(kube, ns, standard):
    kube.storage.create_storage_class({
        "metadata": {"name": f"fixed-{ns}"}, "provisioner": standard.provisioner,
        "allowVolumeExpansion": False})
    kube.core.create_namespaced_persistent_volume_claim(ns, claim("fixed", "1Gi", f"fixed-{ns}"))
    wait_bound(kube, ns, "fixed")
    e = kube.error(kube.core.patch_namespaced_persistent_volume_claim, "fixed", ns,
                   {"spec": {"resources": {"requests": {"storage": "2Gi"}}}})
    body = assert_status(e, 403, "Forbidden")
    assert body["message"].startswith('persistentvolumeclaims "fixed" is forbidden')
    assert "storageclass that provisions the pvc must support resize" in body["message"]
    got = kube.core.read_namespaced_persistent_volume_claim("fixed", ns)
    assert got.spec.resources.requests["storage"] == "1Gi"
    assert got.status.capacity["storage"] == "1Gi"


def test_claim_in_use_is_protected_until_its_pod_goes(kube, ns):
    kube.core.create_namespaced_persistent_volume_claim(ns, claim("busy"))
    volume = wait_bound(kube, ns, "busy").spec.volume_name
    kube.create_pod(ns, py_pod("user", SLEEP_FOREVER, grace=1,
                               volumes=[{"name": "v", "persistentVolumeClaim": {"claimName": "busy"}}],
                               mounts=[{"name": "v", "mountPath": "/data"}]))
    kube.wait_phase(ns, "user", "Running")
    kube.core.delete_namespaced_persistent_volume_claim("busy", ns)
    c = kube.core.read_namespaced_persistent_volume_claim("busy", ns)
    assert c.metadata.deletion_timestamp is not None  # Terminating, kept while in use
    assert "kubernetes.io/pvc-protection" in (c.metadata.finalizers or [])
    kube.core.delete_namespaced_pod("user", ns, grace_period_seconds=1)
    kube.wait_gone(kube.core.read_namespaced_persistent_volume_claim, "busy", ns)
    kube.wait_gone(kube.core.read_persistent_volume, volume)  # reclaimPolicy Delete


async def test_claim_with_async_client(akube, kube, ns):
    core = ak8s.CoreV1Api(akube)
    await core.create_namespaced_persistent_volume_claim(ns, claim("async-claim"))
    with pytest.raises(AsyncApiException) as err:
        await core.create_namespaced_persistent_volume_claim(ns, claim("async-claim"))
    assert_status(err.value, 409, "AlreadyExists")
    out = await core.patch_namespaced_persistent_volume_claim(
        "async-claim", ns, {"metadata": {"labels": {"owner": "ann"}}})
    assert out.metadata.labels == {"owner": "ann"}
    assert wait_bound(kube, ns, "async-claim").metadata.labels == {"owner": "ann"}


# --- VolumeSnapshots through CustomObjectsApi ------------------------------------------------

def snapshot(name, source):
    return {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": name, "labels": {"user": "ann"}},
            "spec": {"source": {"persistentVolumeClaimName": source}}}


def test_volume_snapshot_crud(kube, ns):
    kube.core.create_namespaced_persistent_volume_claim(ns, claim("snapsrc"))
    wait_bound(kube, ns, "snapsrc")
    made = kube.custom.create_namespaced_custom_object(namespace=ns, body=snapshot("s1", "snapsrc"),
                                                       **SNAP)
    assert made["metadata"]["uid"] and made["metadata"]["resourceVersion"]
    assert made["metadata"]["namespace"] == ns
    got = kube.custom.get_namespaced_custom_object(namespace=ns, name="s1", **SNAP)
    assert got["spec"]["source"] == {"persistentVolumeClaimName": "snapsrc"}
    assert got["kind"] == "VolumeSnapshot"
    listed = kube.custom.list_namespaced_custom_object(namespace=ns, label_selector="user=ann", **SNAP)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["s1"]
    patched = kube.custom.patch_namespaced_custom_object(
        namespace=ns, name="s1", body={"metadata": {"labels": {"keep": "yes"}}},
        _content_type="application/merge-patch+json", **SNAP)
    assert patched["metadata"]["labels"] == {"user": "ann", "keep": "yes"}
    assert int(patched["metadata"]["resourceVersion"]) > int(made["metadata"]["resourceVersion"])
    e = kube.error(kube.custom.create_namespaced_custom_object, namespace=ns,
                   body=snapshot("s1", "snapsrc"), **SNAP)
    assert_status(e, 409, "AlreadyExists")
    kube.custom.delete_namespaced_custom_object(namespace=ns, name="s1", **SNAP)
    kube.wait_gone(lambda: kube.custom.get_namespaced_custom_object(namespace=ns, name="s1", **SNAP))
    e = kube.error(kube.custom.get_namespaced_custom_object, namespace=ns, name="s1", **SNAP)
    body = assert_status(e, 404, "NotFound")
    assert body["message"] == 'volumesnapshots.snapshot.storage.k8s.io "s1" not found'


async def test_volume_snapshot_async_client(akube, ns):
    custom = ak8s.CustomObjectsApi(akube)
    await custom.create_namespaced_custom_object(namespace=ns, body=snapshot("a1", "whatever"), **SNAP)
    listed = await custom.list_namespaced_custom_object(namespace=ns, **SNAP)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a1"]
    everywhere = await custom.list_cluster_custom_object(**SNAP)
    assert ("a1", ns) in [(i["metadata"]["name"], i["metadata"]["namespace"])
                          for i in everywhere["items"]]
    with pytest.raises(AsyncApiException) as err:
        await custom.get_namespaced_custom_object(namespace=ns, name="zzz", **SNAP)
    assert err.value.status == 404
