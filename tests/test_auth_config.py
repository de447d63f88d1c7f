"""OpenID Connect: groups from a nested ID-token claim, ID-token verification against the real
provider's keys, the provider being down, and admin config errors at hub start-up."""

import base64
import json
import textwrap
from urllib.parse import urljoin

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from tornado import web


from ptjaas_spawner.auth import PtjaasAuthenticator  # noqa: E402
from ptjaas_spawner.auth.groups import claim_lookup, map_groups, normalize_groups  # noqa: E402
from ptjaas_sandbox.cluster.server import free_port  # noqa: E402
from ptjaas_sandbox.devoidc import DevOIDCProvider  # noqa: E402

USERS = {
    "kim": {"password": "pw", "claims": {"realm_access": {"roles": ["vision", "offline_access"]}}},
    "lee": {"password": "pw", "claims": {"realm_access": {"roles": "nlp"}, "groups": ["vision"]}},
    "max": {"password": "pw", "claims": {"realm_access": ["vision"]}},
}


@pytest.fixture(scope="module")
def idp():
    with DevOIDCProvider(users=USERS, groups_in_id_token=True) as provider:
        yield provider


def _login(hub, username, password="pw"):
    import re

    s = requests.Session()
    r = s.get(f"{hub.url}/hub/oauth_login", params={"next": "/hub/home"}, timeout=30)
    for data in ({"login": username, "password": password}, {}):
        m = re.search(r'<form method="post" action="([^"]+)"', r.text)
        if "/interaction/" not in r.url or not m:
            break
        r = s.post(urljoin(r.url, m.group(1)), data=data, timeout=30)
    return r


@pytest.mark.hub
@pytest.mark.timeout(180)
def test_nested_groups_claim_from_the_id_token(idp, module_cluster, module_hub_factory):
    config = idp.authenticator_config_text(
        groups_claim="realm_access.roles", groups_claim_source="id_token", groups_pattern="(vision|nlp)"
    ) + textwrap.dedent(
        """
        c.Authenticator.allow_all = False
        c.PtjaasAuthenticator.allowed_groups = {"vision", "nlp"}
        """
    )
    hub = module_hub_factory(config, cluster=module_cluster, start=False)
    idp.set_redirect_uris([f"{hub.url}/hub/oauth_callback"])
    hub.start()
    assert _login(hub, "kim").status_code == 200
    assert hub.api("GET", "/users/kim").json()["groups"] == ["vision"]  # offline_access filtered out
    # the nested claim wins over the top-level "groups" claim, a single string is one group
    assert _login(hub, "lee").status_code == 200
    assert hub.api("GET", "/users/lee").json()["groups"] == ["nlp"]
    r = _login(hub, "max")  # realm_access is a list: the nested key does not exist
    assert r.status_code == 403 and "your groups: none" in r.text
    assert "Groups of max: the identity provider sent no 'realm_access.roles' claim" in hub.logs()


@pytest.fixture
async def authenticator(idp):
    a = PtjaasAuthenticator(oidc_issuer=idp.issuer, client_id=idp.client_id, client_secret=idp.client_secret)
    await a.discover()
    return a


def _b64(d):
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


def _claims(idp):
    import time

    now = int(time.time())
    return {"iss": idp.issuer, "aud": idp.client_id, "sub": "kim", "iat": now, "exp": now + 300,
            "groups": ["vision"]}


async def test_forged_id_tokens_are_refused(idp, authenticator):
    jwks_uri = requests.get(f"{idp.issuer}/.well-known/openid-configuration", timeout=10).json()["jwks_uri"]
    kid = requests.get(jwks_uri, timeout=10).json()["keys"][0]["kid"]
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(_claims(idp), attacker, algorithm="RS256", headers={"kid": kid})
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(idp))}."
    shared = jwt.encode(_claims(idp), idp.client_secret.encode() * 2, algorithm="HS256")
    cases = {
        forged: "did not verify",
        unsigned: "unaccepted algorithm 'none'",
        shared: "unaccepted algorithm 'HS256'",
        "not-a-jwt": "malformed",
    }
    for token, expected in cases.items():
        with pytest.raises(web.HTTPError) as e:
            await authenticator.verified_id_token_claims(token)
        assert e.value.status_code == 403
        assert expected in e.value.log_message % e.value.args


def test_group_claim_shapes_pure():
    assert normalize_groups(["b", "a", "a"]) == (["a", "b"], [])
    assert normalize_groups("solo")[0] == ["solo"]
    assert normalize_groups([{"name": "x"}, {"displayName": "y"}])[0] == ["x", "y"]
    groups, problems = normalize_groups({"a": 1}, "groups")
    assert groups == [] and "malformed" in problems[0]
    groups, problems = normalize_groups(["ok", "x" * 300, "bad\nname", 3])
    assert groups == ["ok"] and len(problems) == 3
    assert claim_lookup({"https://example.org/groups": ["a"]}, "https://example.org/groups") == ["a"]
    assert map_groups(["/team/a", "/vision", "raw"], {"raw": "renamed"}, "", "/") == ["renamed", "vision"]


@pytest.mark.hub
@pytest.mark.timeout(120)
def test_provider_down_gives_a_clear_page_and_the_hub_still_starts(hub_factory):
    port = free_port()
    hub = hub_factory(textwrap.dedent(
        f"""
        c.JupyterHub.authenticator_class = "ptjaas"
        c.PtjaasAuthenticator.oidc_issuer = "http://127.0.0.1:{port}"
        c.PtjaasAuthenticator.client_id = "hub"
        """
    ))
    r = requests.get(f"{hub.url}/hub/oauth_login", timeout=30)
    assert r.status_code == 503
    assert "identity provider (http://127.0.0.1:" in r.text and "cannot be reached right now" in r.text


@pytest.mark.hub
@pytest.mark.timeout(120)
@pytest.mark.parametrize("setting,expected", [
    ('c.PtjaasAuthenticator.oidc_issuer = "ftp://idp.example.org"',
     "PtjaasAuthenticator.oidc_issuer must be an http(s) URL"),
    ('c.PtjaasAuthenticator.client_id = "hub"', "PtjaasAuthenticator.oidc_issuer is not set"),
    ('c.PtjaasAuthenticator.oidc_issuer = "https://idp.example.org"\nc.PtjaasAuthenticator.groups_pattern = "(("',
     "PtjaasAuthenticator.groups_pattern is not a valid regular expression"),
])
def test_bad_settings_stop_the_hub_naming_the_key(hub_factory, setting, expected):
    hub = hub_factory('c.JupyterHub.authenticator_class = "ptjaas"\n' + setting + "\n", start=False)
    hub.start(wait=False)
    assert hub.wait_exit(60) != 0
    assert expected in hub.logs()


def test_provider_presets_derive_the_issuer():
    from ptjaas_spawner.auth.azuread import AzureAdAuthenticator
    from ptjaas_spawner.auth.keycloak import KeycloakAuthenticator

    kc = KeycloakAuthenticator(keycloak_url="https://kc.example.org/", realm="research", client_id="hub")
    assert kc.oidc_issuer == "https://kc.example.org/realms/research" and kc.groups_strip_prefix == "/"
    az = AzureAdAuthenticator(tenant_id="t-1", client_id="hub")
    assert az.oidc_issuer == "https://login.microsoftonline.com/t-1/v2.0"
    assert az.groups_claim_source == "id_token"
