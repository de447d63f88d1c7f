"""Issue 9 through a real JupyterHub on the embedded cluster: strict bounded options and no dead
named-server entries (point 4); the form starts what it shows, in Chromium with and without
JavaScript (points 2, 3); the quota summary and the usage page (point 7)."""

import html
import json
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.hubutil import start, stop, wait_ready
from tests.waiting import wait_for

pytestmark = [pytest.mark.hub, pytest.mark.timeout(300)]

IMAGES = {
    "pytorch": {"display_name": "PyTorch (CUDA)", "sizes": ["gpu-1"],
                "versions": {"2": {"image": "example.org/pytorch:2"}}},
    "python": {"display_name": "Python", "versions": {
        "2024.05": {"image": "example.org/python:2024.05", "deprecated": "ends in June"},
        "2025.01": {"image": "example.org/python:2025.01", "default": True}}},
}
SIZES = {
    "small": {"display_name": "Small", "cpu_guarantee": 0.1, "cpu_limit": 1,
              "mem_guarantee": "64Mi", "mem_limit": "1Gi"},
    "gpu-1": {"display_name": "1 GPU", "cpu_guarantee": 0.1, "cpu_limit": 1,
              "mem_guarantee": "64Mi", "mem_limit": "1Gi", "gpu": 1},
}
GROUPS = {"vision": {"users": ["lena", "otto"]}, "solo": {"users": ["nico"]}}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def hub(module_cluster, module_hub_factory):
    config = textwrap.dedent(
        f"""
        c.JupyterHub.allow_named_servers = True
        c.JupyterHub.load_groups = {json.dumps(GROUPS)}
        c.JupyterHub.extra_handlers = __import__("ptjaas_spawner.usagepages", fromlist=["x"]).usage_handlers
        c.Authenticator.admin_users = {{"boss"}}
        c.PtjaasSpawner.images = {IMAGES!r}
        c.PtjaasSpawner.sizes = {SIZES!r}
        # the vision team's GPUs are all taken: its GPU size can never start
        c.PtjaasSpawner.quota_groups = {{"vision": {{"gpus": 0}}, "solo": {{"gpus": 1}}}}
        c.PtjaasSpawner.quota_default = {{"servers": 3}}
        """
    )
    return module_hub_factory(config, cluster=module_cluster)


def servers(hub, user, stopped=True):
    r = hub.api("GET", f"/users/{user}", params={"include_stopped_servers": "1"} if stopped else {})
    r.raise_for_status()
    return r.json()["servers"]


def test_options_are_strict_and_bounded(hub):
    hub.api("POST", "/users", json={"usernames": ["mia"]})
    r = start(hub, "mia", {"image": "python", "size": "small", "profile": "big"})
    assert r.status_code == 400 and "Unknown server option(s): 'profile'" in r.json()["message"]
    # without team namespaces 'team' is an unknown option, whatever its length (issue 20)
    for team in ("vision", "v" * 5000):
        r = start(hub, "mia", {"image": "python", "size": "small", "team": team})
        assert r.status_code == 400 and "Unknown server option(s): 'team'" in r.json()["message"], r.text[:300]

    before = len(hub.logs())
    huge = "<img src=x onerror=alert(1)>" + "A" * 5_000_000
    r = start(hub, "mia", {"image": huge})
    assert r.status_code == 400, r.text[:500]
    message = r.json()["message"]
    assert len(r.content) < 300 and "A" * 20 not in message  # a short prefix of the value only
    assert "'image' is too long (5000028 characters, at most 256)" in message
    logged = hub.logs()[before:]
    assert len(logged) < 50_000 and "A" * 20 not in logged

    session = hub.session("mia")
    url = f"{hub.url}/hub/spawn/mia"
    session.get(url)
    r = session.post(url, data={"_xsrf": session.cookies.get("_xsrf") or "", "choice": "new",
                                "image": "python", "size": "small", "mem_limit": "1Ti"})
    assert r.status_code == 400 and "Unknown form field(s): 'mem_limit'" in html.unescape(r.text)
    # a posted value is shown escaped in the page, and only its beginning
    r = session.post(url, data={"_xsrf": session.cookies.get("_xsrf") or "", "choice": "new",
                                "image": huge[:200], "size": "small"})
    assert r.status_code == 400 and "&lt;img src=x onerror=alert(1)&gt;AAAAAAAAAAAA" in r.text
    assert "<img src=x" not in r.text and "A" * 20 not in r.text


def test_refused_starts_of_new_named_servers_leave_no_entry(hub):
    hub.api("POST", "/users", json={"usernames": ["nico"]})
    # bad options, through the API and through the form
    assert start(hub, "nico", {"image": "python", "size": "nope"}, name="bad").status_code == 400
    session = hub.session("nico")
    url = f"{hub.url}/hub/spawn/nico/badform"
    session.get(url)
    r = session.post(url, data={"_xsrf": session.cookies.get("_xsrf") or "", "choice": "new",
                                "image": "pytorch", "version--pytorch": "2", "size": "small"})
    assert r.status_code == 400 and "cannot run on size 'Small'" in html.unescape(r.text)
    # a race for nico's one GPU: five new named servers at once, one starts
    names = [f"race{i}" for i in range(5)]
    with ThreadPoolExecutor(5) as pool:
        codes = list(pool.map(lambda n: start(hub, "nico", {"image": "pytorch", "size": "gpu-1"}, n).status_code,
                              names))
    def settled():
        listed = servers(hub, "nico")
        return None if any(s["pending"] for s in listed.values()) else listed
    listed = wait_for(settled, timeout=120, interval=0.3, message="nico's starts to settle")
    try:
        assert sum(1 for c in codes if c in (201, 202)) >= 1, codes
        named = sorted(n for n in listed if n)
        assert len(named) == 1 and listed[named[0]]["ready"], (codes, listed)
    finally:
        for name, model in listed.items():
            if model.get("ready"):
                stop(hub, "nico", name)


def _browser(p):
    return p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def _login(context, hub, user):
    page = context.new_page()
    page.goto(f"{hub.url}/hub/login")
    page.fill("input[name=username]", user)
    page.locator("input[type=submit], button[type=submit]").first.click()
    page.wait_for_url(f"{hub.url}/hub/**")
    return page


@pytest.mark.browser
def test_form_starts_what_it_shows_with_and_without_javascript(hub, module_cluster, tmp_path):
    hub.api("POST", "/users", json={"usernames": ["lena", "nico"]})
    namespace = getattr(module_cluster, "namespace", "default")
    session = hub.session("lena")

    def home_line():
        page = session.get(f"{hub.url}/hub/spawn", timeout=30).text
        return html.unescape(page[page.index('class="ptjaas-home">') + 20:].split("</p>")[0])

    # where the home lives: before the first start a new one is announced, then it is named
    assert home_line() == f"A new 10Gi home volume, claim-lena, will be made in namespace {namespace} " \
                          "when your server starts."
    # lena's last start: the deprecated Python version
    r = start(hub, "lena", {"image": "python", "version": "2024.05", "size": "small"})
    assert r.status_code in (201, 202), r.text
    wait_ready(hub, "lena")
    stop(hub, "lena")
    assert home_line() == f"Your home: claim-lena in namespace {namespace}, 10Gi"
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

    with playwright.sync_playwright() as p:
        browser = _browser(p)
        try:
            # -- with JavaScript ------------------------------------------------------------
            page = _login(browser.new_context(), hub, "lena")
            page.goto(f"{hub.url}/hub/spawn")
            form = page.locator(".ptjaas-options")
            assert form.locator(".ptjaas-quota-summary").inner_text().endswith(
                "you: 0 of 3 servers; team vision: 0 of 0 GPUs free")
            last = form.locator(".ptjaas-last")
            assert "This version is deprecated: ends in June" in last.inner_text()
            assert not last.locator("details code").is_visible()  # the digest is behind details
            # the GPUs are full: a startable pair is pre-selected, not PyTorch (CUDA) + Small
            assert page.locator('input[name="choice"][value="last"]').is_checked()
            assert page.locator('input[name="image"][value="python"]').is_checked()
            assert page.locator('input[name="size"][value="small"]').is_checked()
            preview = page.locator("#ptjaas-preview")
            assert "Python 2024.05 (example.org/python:2024.05)" in preview.inner_text()  # the last choice
            # picking a field switches "same as last time" off
            page.select_option('select[name="version--python"]', "2025.01")
            assert page.locator('input[name="choice"][value="new"]').is_checked()
            assert "Python 2025.01 (example.org/python:2025.01)" in preview.inner_text()
            # PyTorch (CUDA) cannot run on Small: Small is disabled
            page.check('input[name="image"][value="pytorch"]')
            assert page.locator('input[name="size"][value="small"]').is_disabled()
            page.check('input[name="image"][value="python"]')
            assert page.locator('input[name="size"][value="small"]').is_enabled()
            page.screenshot(path=str(tmp_path / "form-js.png"), full_page=True)

            # -- the preview follows the size, keyboard only; axe finds nothing serious -------
            page = _login(browser.new_context(), hub, "nico")  # team solo has a GPU free
            page.goto(f"{hub.url}/hub/spawn")
            preview = page.locator("#ptjaas-preview")
            assert preview.get_attribute("aria-live") == "polite"
            size_part, gpu_part = preview.locator('[data-part="size"]'), preview.locator('[data-part="gpus"]')
            assert "PyTorch (CUDA) 2" in preview.inner_text() and gpu_part.inner_text() == "1 GPU"  # pre-selected
            page.check('input[name="image"][value="python"]')
            page.check('input[name="size"][value="small"]')
            assert size_part.inner_text().startswith("Size Small: CPU 0.1") and gpu_part.inner_text() == "no GPU"
            page.focus('input[name="image"][value="python"]')
            for _ in range(10):  # Tab reaches the sizes
                page.keyboard.press("Tab")
                if page.evaluate("document.activeElement.name") == "size":
                    break
            assert page.evaluate("document.activeElement.value") == "small"
            page.keyboard.press("ArrowDown")  # the next size: one GPU
            assert page.locator('input[name="size"][value="gpu-1"]').is_checked()
            assert size_part.inner_text().startswith("Size 1 GPU: CPU 0.1") and gpu_part.inner_text() == "1 GPU"
            assert "Python 2025.01" in preview.inner_text()
            from tests.axeutil import AXE, violations
            if AXE.exists():
                assert violations(page, [".ptjaas-options"]) == []

            # -- without JavaScript ---------------------------------------------------------
            page = _login(browser.new_context(java_script_enabled=False), hub, "lena")
            page.goto(f"{hub.url}/hub/spawn")
            assert page.locator('input[name="choice"][value="last"]').is_checked()
            page.check('input[name="image"][value="pytorch"]')
            page.check('input[name="size"][value="small"]')
            page.locator("form input[type=submit], form button[type=submit]").last.click()
            page.wait_for_load_state()
            text = page.content()
            assert "Refused: image &#x27;PyTorch (CUDA)&#x27; cannot run on size &#x27;Small&#x27;" in text \
                or "image 'PyTorch (CUDA)' cannot run on size 'Small'" in page.inner_text("body")
            # the user's choices are kept, not a reset form
            assert page.locator('input[name="image"][value="pytorch"]').is_checked()
            assert page.locator('input[name="size"][value="small"]').is_checked()
            assert page.locator('input[name="choice"][value="new"]').is_checked()
            page.screenshot(path=str(tmp_path / "form-nojs-refused.png"), full_page=True)

            # "same as last time" still checked, another version picked: that version starts
            page.goto(f"{hub.url}/hub/spawn")
            assert page.locator('input[name="choice"][value="last"]').is_checked()
            page.check('input[name="image"][value="python"]')
            page.select_option('select[name="version--python"]', "2025.01")
            page.locator("form input[type=submit], form button[type=submit]").last.click()
            wait_ready(hub, "lena")
            model = servers(hub, "lena")[""]
            assert model["user_options"] == {"image": "python", "version": "2025.01", "size": "small"}

            # the usage page: a row per user, CPU and memory as on the form
            admin = _login(browser.new_context(), hub, "boss")
            admin.goto(f"{hub.url}/hub/ptjaas/usage")
            users = admin.locator("#ptjaas-users").inner_text()
            assert "lena" in users and "CPU 0.1 \u2192 1, memory 64Mi \u2192 1Gi" in users
            servers_table = admin.locator("#ptjaas-servers").inner_text()
            assert "CPU 0.1 \u2192 1, memory 64Mi \u2192 1Gi" in servers_table
        finally:
            browser.close()
    stop(hub, "lena")
