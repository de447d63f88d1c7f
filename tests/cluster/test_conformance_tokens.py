"""Service account tokens as workload identity (issue 23) answered alike by the embedded API server
and the real kube-apiserver: a TokenRequest for a ServiceAccount gives a JWT for the audience
asked, bound to the pod named; under 10 minutes is refused; and a pod with a projected
``serviceAccountToken`` volume (what a data connection's ``identity_token`` mounts) reads that
token from its file while ``automountServiceAccountToken: false`` leaves no other token in it.
The node agent is ours on both backends: it asks for the token as a kubelet does."""

import base64
import json

import pytest

from tests.cluster.k8s_conformance import SLEEP_FOREVER, py_pod
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(90)

READ_TOKEN = ("import os\nprint(open('/var/run/secrets/ptjaas/lake/token').read(), flush=True)\n"
              "print(os.path.exists('/var/run/secrets/kubernetes.io/serviceaccount/token'), flush=True)\n"
              + SLEEP_FOREVER)


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def token_request(kube, ns, account, spec):
    return kube.raw("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{account}/token",
                    json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})


def test_a_projected_token_reaches_only_the_pod_that_asks_and_is_bound_to_it(kube):
    ns = kube.namespace("identity")
    kube.core.create_namespaced_service_account(ns, {"metadata": {"name": "servers"},
                                                     "automountServiceAccountToken": False})
    short = token_request(kube, ns, "servers", {"audiences": ["store"], "expirationSeconds": 599})
    assert short.status_code == 422 and "may not specify a duration less than 10 minutes" in short.text, short.text
    assert token_request(kube, ns, "nobody", {"audiences": ["store"]}).status_code == 404

    volume = {"name": "identity-lake", "projected": {"defaultMode": 0o440, "sources": [
        {"serviceAccountToken": {"audience": "sts.example.org", "expirationSeconds": 3600, "path": "token"}}]}}
    pod = py_pod("reader", READ_TOKEN, volumes=[volume], grace=0,
                 mounts=[{"name": "identity-lake", "mountPath": "/var/run/secrets/ptjaas/lake", "readOnly": True}])
    pod["spec"].update(serviceAccountName="servers", automountServiceAccountToken=False)
    made = kube.create_pod(ns, pod)
    kube.wait_phase(ns, "reader", "Running")
    lines = wait_for(lambda: len(kube.log(ns, "reader").split()) >= 2 and kube.log(ns, "reader").split(),
                     timeout=30, message="the pod read its token")
    token, other = lines[0], lines[1]
    assert other == "False"  # no automounted token besides the projected one
    got = claims(token)
    assert got["aud"] == ["sts.example.org"] and got["sub"] == f"system:serviceaccount:{ns}:servers"
    assert got["kubernetes.io"]["pod"] == {"name": "reader", "uid": made.metadata.uid}
    assert 3000 <= got["exp"] - got["iat"] <= 3600

    # a token bound to a pod that is no longer the one named (another uid) is refused
    wrong = token_request(kube, ns, "servers", {"audiences": ["store"], "boundObjectRef": {
        "kind": "Pod", "apiVersion": "v1", "name": "reader", "uid": "0" * 8 + "-0000-0000-0000-" + "0" * 12}})
    assert wrong.status_code == 409, wrong.text
