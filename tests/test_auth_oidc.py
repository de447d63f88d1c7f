"""OpenID Connect login through a real JupyterHub and a real provider (npm ``oidc-provider``).

One provider and one hub for the module; users and their groups change at the provider while
both run (``DevOIDCProvider.set_user``), as they would in a real identity provider.
"""

import json
import re
import textwrap
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlparse, urlunparse

import pytest
import requests


from tests.waiting import wait_for

from ptjaas_sandbox.devoidc import DevOIDCProvider  # noqa: E402

pytestmark = [pytest.mark.hub, pytest.mark.timeout(240)]

USERS = {
    "alice": {"password": "alice-pw", "groups": ["vision"]},
    "bob": {"password": "bob-pw", "groups": ["nlp", "unrelated"]},
    "carol": {"password": "carol-pw", "groups": ["hubadmins"]},
    "dave": {"password": "dave-pw", "groups": []},
    "erin": {"password": "erin-pw", "groups": ["nlp"]},
    "fred": {"password": "fred-pw", "groups": ["nlp"]},
    "solo": {"password": "pw", "groups": "vision"},  # one group sent as a plain string
    "mixed": {"password": "pw", "groups": ["vision", 7, {"name": "nlp"}, "bad/name", None]},
    "numeric": {"password": "pw", "groups": 42},
    "dicty": {"password": "pw", "groups": {"vision": True}},
    "noclaim": {"password": "pw", "claims": {}},
}

IMAGES = {
    "python": {"display_name": "Plain Python", "versions": {"1": {"image": "example.org/py:1"}}},
    "vision-cuda": {"display_name": "Vision CUDA", "groups": ["vision"],
                    "versions": {"12": {"image": "example.org/cuda:12"}}},
    "nlp-llm": {"display_name": "NLP LLM", "groups": ["nlp"],
                "versions": {"1": {"image": "example.org/llm:1"}}},
}
SIZES = {
    "small": {"display_name": "Small", "cpu_guarantee": 0.1, "cpu_limit": 1,
              "mem_guarantee": "128Mi", "mem_limit": "1Gi"},
    "vision-gpu": {"display_name": "Vision GPU", "cpu_guarantee": 1, "cpu_limit": 2,
                   "mem_guarantee": "1Gi", "mem_limit": "2Gi", "gpu": 1, "groups": ["vision"]},
}


@pytest.fixture(scope="module")
def idp():
    with DevOIDCProvider(users=USERS) as provider:
        yield provider


@pytest.fixture(scope="module")
def hub(idp, module_cluster, module_hub_factory):
    h = module_hub_factory("", cluster=module_cluster, start=False)
    # the same helper `ptjaas demo` uses: registers the hub's callback, returns the config
    config = idp.hub_config_text(h.url, allowed_groups=["vision", "nlp"], admin_groups=["hubadmins"])
    h.set_config(config + textwrap.dedent(
        f"""
        c.PtjaasAuthenticator.auth_refresh_age = 1
        c.PtjaasSpawner.images = {json.dumps(IMAGES)}
        c.PtjaasSpawner.sizes = {json.dumps(SIZES)}
        """
    ))
    h.start()
    return h


def _form(html):
    m = re.search(r'<form method="post" action="([^"]+)"', html)
    assert m, f"no form in provider page:\n{html[:1500]}"
    return m.group(1)


def provider_login(hub, username, password, session=None, next_url="/hub/home"):
    """The browser's part of the authorization-code flow: hub -> provider login and consent
    forms -> hub callback. Returns (session, final response)."""
    s = session or requests.Session()
    r = s.get(f"{hub.url}/hub/oauth_login", params={"next": next_url}, timeout=30)
    if "/interaction/" in r.url and 'name="login"' in r.text:
        r = s.post(urljoin(r.url, _form(r.text)), data={"login": username, "password": password}, timeout=30)
    if "/interaction/" in r.url and "/confirm" in r.text:
        r = s.post(urljoin(r.url, _form(r.text)), timeout=30)
    return s, r


def hub_user(hub, name):
    r = hub.api("GET", f"/users/{name}")
    if r.status_code != 200:
        return None
    model = r.json()
    model["groups"] = sorted(model["groups"])
    return model


def test_discovery_login_syncs_groups(hub):
    s, r = provider_login(hub, "alice", "alice-pw")
    assert r.status_code == 200 and r.url == f"{hub.url}/hub/home", r.text[:500]
    me = s.get(f"{hub.url}/hub/api/user", headers={"X-XSRFToken": s.cookies.get("_xsrf", "")}).json()
    assert me["name"] == "alice"
    user = hub_user(hub, "alice")
    assert user["groups"] == ["vision"] and user["admin"] is False
    # bob's provider groups include one the hub does not allow: synced all the same
    provider_login(hub, "bob", "bob-pw")
    assert hub_user(hub, "bob")["groups"] == ["nlp", "unrelated"]


def test_wrong_password_stays_at_provider(hub):
    _, r = provider_login(hub, "alice", "not-her-password")
    assert r.status_code == 401 and "Invalid username or password" in r.text
    assert urlparse(r.url).port != urlparse(hub.url).port


def test_admin_group_makes_admin(hub):
    _, r = provider_login(hub, "carol", "carol-pw")
    # carol is in no allowed group, but admin_groups let her in as an admin
    assert r.status_code == 200, r.text[:500]
    assert hub_user(hub, "carol")["admin"] is True


def test_entitlements_follow_groups(hub):
    sa, _ = provider_login(hub, "alice", "alice-pw")
    sb, _ = provider_login(hub, "bob", "bob-pw")
    form_a = sa.get(f"{hub.url}/hub/spawn").text
    form_b = sb.get(f"{hub.url}/hub/spawn").text
    assert "Vision CUDA" in form_a and "NLP LLM" not in form_a and "Vision GPU" in form_a
    assert "NLP LLM" in form_b and "Vision CUDA" not in form_b and "Vision GPU" not in form_b


def test_user_in_no_allowed_group_is_refused_with_a_page(hub):
    s, r = provider_login(hub, "dave", "dave-pw")
    assert r.status_code == 403
    assert "dave is not a member of any group allowed to use this hub (your groups: none)" in r.text
    assert "Traceback" not in r.text
    assert s.get(f"{hub.url}/hub/api/user").status_code == 403
    assert hub_user(hub, "dave") is None


def test_group_change_applies_at_next_login(hub, idp):
    provider_login(hub, "erin", "erin-pw")
    assert hub_user(hub, "erin")["groups"] == ["nlp"]
    idp.set_user("erin", groups=["vision"])
    provider_login(hub, "erin", "erin-pw")  # a fresh browser: a new login at the provider
    assert hub_user(hub, "erin")["groups"] == ["vision"]
    idp.set_user("erin", groups=["unrelated"])
    _, r = provider_login(hub, "erin", "erin-pw")
    assert r.status_code == 403 and "your groups: unrelated" in r.text


def test_group_change_applies_at_auth_refresh(hub, idp):
    idp.set_user("fred", groups=["nlp"])
    s, _ = provider_login(hub, "fred", "fred-pw")
    assert hub_user(hub, "fred")["groups"] == ["nlp"]
    idp.set_user("fred", groups=["nlp", "vision"])

    def refreshed():
        s.get(f"{hub.url}/hub/home", timeout=30)  # auth_refresh_age = 1: a request refreshes
        return hub_user(hub, "fred")["groups"] == ["nlp", "vision"]

    wait_for(refreshed, timeout=30, interval=0.3, message="fred's groups to refresh")
    # leaving every allowed group: the next refresh ends the session
    idp.set_user("fred", groups=["unrelated"])

    def logged_out():
        r = s.get(f"{hub.url}/hub/home", timeout=30, allow_redirects=False)
        return r.status_code in (302, 303) and "login" in r.headers["Location"]

    wait_for(logged_out, timeout=30, interval=0.3, message="fred's session to end")


@pytest.mark.parametrize(
    "user,expected",
    [("solo", ["vision"]), ("mixed", ["nlp", "vision"])],
)
def test_tolerated_group_claim_shapes(hub, user, expected):
    _, r = provider_login(hub, user, "pw")
    assert r.status_code == 200, r.text[:500]
    assert hub_user(hub, user)["groups"] == expected


@pytest.mark.parametrize(
    "user,logged",
    [("numeric", "claim is malformed: expected a list of group names, got int"),
     ("dicty", "claim is malformed: expected a list of group names, got dict"),
     ("noclaim", "the identity provider sent no 'groups' claim")],
)
def test_malformed_or_missing_group_claim_refuses(hub, user, logged):
    _, r = provider_login(hub, user, "pw")
    assert r.status_code == 403 and "(your groups: none)" in r.text
    assert hub_user(hub, user) is None
    assert f"Groups of {user}: the 'groups' claim is malformed" in hub.logs() if "malformed" in logged \
        else f"Groups of {user}: {logged}" in hub.logs()


def _to_callback(hub, username, password):
    """Run the flow up to the provider's redirect to the hub; return (session, callback URL)."""
    s = requests.Session()
    r = s.get(f"{hub.url}/hub/oauth_login", timeout=30)
    r = s.post(urljoin(r.url, _form(r.text)), data={"login": username, "password": password}, timeout=30,
               allow_redirects=False)
    while True:
        loc = urljoin(r.url, r.headers["Location"])
        if loc.startswith(f"{hub.url}/hub/oauth_callback"):
            return s, loc
        r = s.get(loc, timeout=30, allow_redirects=False)
        if r.status_code == 200 and "/confirm" in r.text:
            r = s.post(urljoin(r.url, _form(r.text)), timeout=30, allow_redirects=False)


def test_tampered_state_is_refused(hub):
    s, callback = _to_callback(hub, "alice", "alice-pw")
    u = urlparse(callback)
    q = {k: v[0] for k, v in parse_qs(u.query).items()}
    q["state"] = "eyJzdGF0ZV9pZCI6ICJmb3JnZWQifQ=="  # {"state_id": "forged"}
    r = s.get(urlunparse(u._replace(query=urlencode(q))), timeout=30)
    assert r.status_code == 400 and "OAuth state mismatch" in r.text
    assert s.get(f"{hub.url}/hub/api/user").status_code == 403


def test_wrong_redirect_uri_is_refused_by_the_provider(hub):
    s = requests.Session()
    r = s.get(f"{hub.url}/hub/oauth_login", allow_redirects=False, timeout=30)
    authorize = r.headers["Location"]
    u = urlparse(authorize)
    q = {k: v[0] for k, v in parse_qs(u.query).items()}
    assert q["redirect_uri"] == f"{hub.url}/hub/oauth_callback"
    q["redirect_uri"] = "http://127.0.0.1:9/steal"
    r = s.get(urlunparse(u._replace(query=urlencode(q))), allow_redirects=False, timeout=30)
    assert r.status_code == 400 and "redirect_uri" in r.text
    assert "127.0.0.1:9" not in r.headers.get("Location", "")


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.mark.browser
def test_browser_login_through_the_provider(hub, idp, tmp_path):
    """What a person does: the hub's login button, the provider's forms, back on the hub."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    idp.set_user("gwen", password="gwen-pw", groups=["vision"])
    idp.set_user("hank", password="hank-pw", groups=["sales"])
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{hub.url}/hub/login")
            page.get_by_text("Sign in with OpenID Connect").click()
            page.fill("input[name=login]", "gwen")
            page.fill("input[name=password]", "gwen-pw")
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("button", name="Allow").click()  # the provider's consent form
            page.wait_for_url(f"{hub.url}/hub/**")
            page.goto(f"{hub.url}/hub/spawn")
            assert page.get_by_text("Vision CUDA", exact=True).is_visible()
            assert page.get_by_text("NLP LLM").count() == 0
            page.screenshot(path=str(tmp_path / "gwen-spawn-form.png"), full_page=True)

            other = browser.new_context().new_page()  # another person, another browser profile
            other.goto(f"{hub.url}/hub/oauth_login")
            other.fill("input[name=login]", "hank")
            other.fill("input[name=password]", "hank-pw")
            other.get_by_role("button", name="Sign in").click()
            other.get_by_role("button", name="Allow").click()
            other.wait_for_url(f"{hub.url}/hub/**")
            assert other.locator("p", has_text="hank is not a member of any group allowed to use this hub").is_visible()
            other.screenshot(path=str(tmp_path / "hank-refused.png"), full_page=True)
        finally:
            browser.close()
    assert hub_user(hub, "gwen")["groups"] == ["vision"] and hub_user(hub, "hank") is None
