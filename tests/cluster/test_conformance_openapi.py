"""The OpenAPI documents come from Kubernetes' own type definitions (kubernetes-validate's
schemas), for the types this server serves, in the shapes kube-apiserver publishes."""

import hashlib
import json
import os
import importlib.util

import pytest

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _embedded_only(module_cluster):
    """The embedded cluster's own node agent and documents."""


def upstream(name):
    spec = importlib.util.find_spec("kubernetes_validate")
    root = os.path.join(list(spec.submodule_search_locations)[0], "kubernetes-json-schema")
    with open(os.path.join(root, "v1.31.0-local", "_definitions.json")) as f:
        return json.load(f)["$defs"][name]


def test_v2_document(kube):
    r = kube.raw("GET", "/openapi/v2", headers={"Accept": "application/json"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    doc = r.json()
    assert doc["swagger"] == "2.0"
    pod = doc["definitions"]["io.k8s.api.core.v1.Pod"]
    assert pod["description"] == upstream("io.k8s.api.core.v1.Pod")["description"]
    assert pod["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "Pod", "version": "v1"}]
    assert pod["properties"]["spec"]["$ref"] == "#/definitions/io.k8s.api.core.v1.PodSpec"
    int_or_string = doc["definitions"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    assert (int_or_string["type"], int_or_string["format"]) == ("string", "int-or-string")   # as the real v2 says
    assert "/api/v1/namespaces/{namespace}/pods/{name}" in doc["paths"]
    # what kubectl asks for to validate a kind: List: gnostic's openapi.v2.Document, labelled with
    # the media type Go's mime parser reads (kube-apiserver 1.36's answer, and its Etag)
    for accept in ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
                   "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"):
        pb = kube.raw("GET", "/openapi/v2", headers={"Accept": accept})
        assert pb.status_code == 200, pb.text[:300]
        assert pb.headers["Content-Type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
        assert pb.headers["Etag"] == r.headers["Etag"]
        assert pb.content.startswith(b"\x0a\x032.0\x12")   # field 1 swagger "2.0", then field 2 info
        assert b"io.k8s.api.core.v1.Pod" in pb.content and b"x-kubernetes-group-version-kind" in pb.content
    assert kube.raw("GET", "/openapi/v2", headers={"Accept": "text/plain"}).status_code == 406


def test_v3_index_and_group_documents(kube):
    index = kube.raw("GET", "/openapi/v3").json()["paths"]
    assert {"api/v1", "apis/storage.k8s.io/v1", "apis/snapshot.storage.k8s.io/v1"} <= set(index)
    url = index["api/v1"]["serverRelativeURL"]
    r = kube.raw("GET", url)
    assert r.status_code == 200 and "immutable" in r.headers.get("Cache-Control", "")
    assert url.endswith("hash=" + hashlib.sha512(r.content).hexdigest().upper())
    doc = r.json()
    assert doc["openapi"] == "3.0.0"
    schemas = doc["components"]["schemas"]
    pvc = schemas["io.k8s.api.core.v1.PersistentVolumeClaim"]
    assert pvc["properties"]["spec"]["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PersistentVolumeClaimSpec"}]
    assert "enum" not in pvc["properties"]["kind"]
    patch = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
    assert set(patch["requestBody"]["content"]) == {"application/apply-patch+yaml", "application/json-patch+json",
                                                    "application/merge-patch+json", "application/strategic-merge-patch+json"}
    snap = kube.raw("GET", index["apis/snapshot.storage.k8s.io/v1"]["serverRelativeURL"]).json()
    vs = snap["components"]["schemas"]["io.k8s.storage.snapshot.v1.VolumeSnapshot"]
    assert vs["x-kubernetes-preserve-unknown-fields"] is True   # a CRD without a structural schema
    assert kube.raw("GET", "/openapi/v3/apis/nothing.example.com/v1").status_code == 404
