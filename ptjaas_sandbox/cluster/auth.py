"""Authentication of API requests, as a real API server with anonymous access switched off does
it: a bearer token (the one written into the cluster's kubeconfig) on every request but the
health and version endpoints, else ``401 Unauthorized`` with a ``Status`` body.

Also the file modes of the cluster's state: the directory is the cluster owner's alone, and the
files that hold tokens (objects.json, the kubeconfig) are written 0600 from the start.
"""

import hmac
import json
import os

from . import errors

# what kube-apiserver's default RBAC (system:public-info-viewer) lets anyone read
PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")


def is_public(path):
    path = path.rstrip("/") or "/"
    return any(path == p or path.startswith(p + "/") for p in PUBLIC_PATHS)


def unauthorized():
    """The body kube-apiserver answers a request without valid credentials with."""
    return errors.ApiError(401, "Unauthorized", "Unauthorized")


def bearer_token(headers):
    value = headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def check(path, headers, token):
    """Raise 401 unless the request carries ``token``, or carries no credentials at all and asks
    for a public path. Wrong credentials are refused everywhere, as kube-apiserver does: it
    authenticates before it looks at what is asked for."""
    if "Authorization" not in headers and is_public(path):
        return
    given = bearer_token(headers)
    if given is None or not token or not hmac.compare_digest(given.encode(), token.encode()):
        raise unauthorized()


def private_dir(path):
    """Create ``path`` (and parents) if needed; make ``path`` itself 0700."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_private(path, text):
    """Write ``text`` to ``path`` atomically; the file is 0600 from its first byte."""
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.replace(tmp, path)


def write_private_json(path, data):
    write_private(path, json.dumps(data))
