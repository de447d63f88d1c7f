"""An image of one's own, resolved from its tag to the digest the registry serves now.

With ``custom_images.resolve_digest: true`` the start asks the image's registry (the
Distribution API: ``HEAD /v2/<repository>/manifests/<tag>`` with the manifest media types in
``Accept``) for the ``Docker-Content-Digest`` of the tag, within ``registry_timeout`` seconds,
and the pod then runs ``<reference>@<digest>``: what was started is exactly what is recorded.
A registry that cannot be reached, asks for credentials (the hub holds none: the pull secret is
the kubelet's) or does not know the tag does not stop the start: the pod runs the tag and the
audit record says why it was not resolved (``registry_digest_problem``). Registries listed in
``plain_http_registries`` (``host:port``, a registry inside the cluster) are asked over http.
"""

from __future__ import annotations

import re

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from .imageref import normalized

ACCEPT = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))
DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


def manifest_url(reference: str, plain_http=()) -> str:
    """The registry URL of a reference's manifest (pure); '' when it already names a digest."""
    if "@" in reference:
        return ""
    name = normalized(reference)  # docker.io/library/python:latest
    host, _, rest = name.partition("/")
    repository, _, tag = rest.rpartition(":")
    api_host = "registry-1.docker.io" if host == "docker.io" else host
    scheme = "http" if host in set(plain_http or ()) else "https"
    return f"{scheme}://{api_host}/v2/{repository}/manifests/{tag}"


async def resolve(reference: str, timeout: float = 5, plain_http=()) -> tuple:
    """``(digest, "")`` or ``("", why not)``: the digest the registry serves for the tag."""
    url = manifest_url(reference, plain_http)
    if not url:
        return "", "the reference already names a digest"
    try:
        r = await AsyncHTTPClient().fetch(url, method="HEAD", headers={"Accept": ACCEPT},
                                          connect_timeout=timeout, request_timeout=timeout)
    except HTTPClientError as e:
        if e.code == 401:
            return "", "the registry asks for credentials (the hub has none)"
        if e.code == 404:
            return "", "the registry does not know this tag"
        if e.code != 599:
            return "", f"the registry answered {e.code}"
        return "", f"the registry was not reached ({e})"[:200]
    except (OSError, ValueError) as e:
        return "", f"the registry was not reached ({e})"[:200]
    digest = r.headers.get("Docker-Content-Digest", "")
    if not DIGEST.match(digest):
        return "", "the registry's answer named no sha256 digest"
    return digest, ""


async def pin(spawner, choice, settings: dict) -> dict:
    """Resolve a custom choice's tag if the settings ask for it; set the image the pod runs.
    Returns the audit fields (``registry_digest`` or ``registry_digest_problem``)."""
    if not choice.custom or not (settings or {}).get("resolve_digest"):
        return {}
    digest, problem = await resolve(choice.image_ref, float(settings.get("registry_timeout", 5)),
                                    settings.get("plain_http_registries") or ())
    if not digest:
        spawner.log.info("%s: %s not resolved to a digest: %s; starting the tag", spawner._log_name,
                         choice.image_ref, problem)
        return {"registry_digest_problem": problem}
    spawner.image = f"{choice.image_ref}@{digest}"
    return {"registry_digest": digest}
