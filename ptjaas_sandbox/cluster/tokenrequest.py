"""``POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token``: a TokenRequest answered as the
real kube-apiserver answers it (authentication.k8s.io/v1): a signed JWT of the ServiceAccount,
for the audiences asked, bound to a pod when the request names one, that lives
``expirationSeconds`` (at least 10 minutes). The node agent asks for one per projected
``serviceAccountToken`` volume source, as a kubelet does.

The signing key (ES256, ``<state>/tls/sa.key``, 0600) is made once per state directory; its
public half is ``<state>/tls/sa.pub``, what a relying party would trust through the cluster's
OIDC issuer. The issuer is the real cluster's default."""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timezone

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from . import errors
from .auth import private_dir, write_private
from .resources import BY_PATH

ISSUER = "https://kubernetes.default.svc.cluster.local"
MIN_SECONDS = 600
DEFAULT_SECONDS = 3600


def signing_key(state_dir) -> bytes:
    """The ServiceAccount token signing key (PEM), made once."""
    directory = private_dir(os.path.join(state_dir, "tls"))
    path = os.path.join(directory, "sa.key")
    if not os.path.exists(path):
        key = ec.generate_private_key(ec.SECP256R1())
        write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()).decode())
        with open(os.path.join(directory, "sa.pub"), "wb") as f:
            f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    with open(path, "rb") as f:
        return f.read()


def issue(registry, state_dir, namespace: str, name: str, body: dict) -> dict:
    """The TokenRequest ``body`` for ServiceAccount ``namespace/name``, answered (201's body)."""
    spec = dict((body or {}).get("spec") or {})
    seconds = spec.get("expirationSeconds", DEFAULT_SECONDS)
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < MIN_SECONDS:
        raise errors.invalid("TokenRequest", name, [(
            "spec.expirationSeconds", f"Invalid value: {seconds}: may not specify a duration less than 10 minutes")],
            "authentication.k8s.io")
    account = registry.get(BY_PATH[("", "v1", "serviceaccounts")], namespace, name)
    audiences = list(spec.get("audiences") or [ISSUER])
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": f"system:serviceaccount:{namespace}:{name}", "aud": audiences,
              "iat": now, "nbf": now, "exp": now + seconds, "jti": str(uuid.uuid4()),
              "kubernetes.io": {"namespace": namespace, "serviceaccount": {
                  "name": name, "uid": account["metadata"]["uid"]}}}
    bound = spec.get("boundObjectRef") or None
    if bound:
        if bound.get("kind") != "Pod":
            raise errors.invalid("TokenRequest", name, [(
                "spec.boundObjectRef.kind", f'Unsupported value: "{bound.get("kind")}": supported values: "Pod", '
                '"Secret", "Node"')], "authentication.k8s.io")
        pod = registry.get(BY_PATH[("", "v1", "pods")], namespace, bound.get("name") or "")
        if bound.get("uid") and bound["uid"] != pod["metadata"]["uid"]:
            raise errors.ApiError(409, "Conflict", f'the UID in the bound object reference ({bound["uid"]}) does '
                                  f'not match the UID in record. The object might have been deleted and then recreated')
        if (pod["spec"].get("serviceAccountName") or "default") != name:
            raise errors.ApiError(400, "BadRequest", f'cannot issue token for pod "{pod["metadata"]["name"]}" '
                                  f'whose service account is not "{name}"')
        claims["kubernetes.io"]["pod"] = {"name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}
        spec["boundObjectRef"] = dict(bound, uid=pod["metadata"]["uid"])
    token = jwt.encode(claims, signing_key(state_dir), algorithm="ES256")
    spec.update(audiences=audiences, expirationSeconds=seconds)
    expires = datetime.fromtimestamp(now + seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
            "spec": spec, "status": {"token": token, "expirationTimestamp": expires}}
