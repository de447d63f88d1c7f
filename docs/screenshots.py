#!/usr/bin/env python3
"""Take the user guide's screenshots from a real `ptjaas demo`, with Playwright and Chromium.

    python docs/screenshots.py [--out docs/_static/screenshots] [--chromium /usr/bin/chromium]

Starts `ptjaas demo` on a free loopback port with a throw-away state directory, signs in as
`alice` (demo password `ptjaas`), and saves, as PNG files referenced by docs/user-guide.md:

    login.png           the sign-in page
    spawn-form.png      the start form (quota, home, image, version, size, preview)
    spawn-progress.png  the progress page while the server starts
    jupyterlab.png      JupyterLab once the server is up
    home.png            the hub home page with the running server
    usage.png           the user's usage page (/hub/ptjaas/usage/me) after the server stopped

Then stops the server and the demo. Needs the `playwright` Python package (the test extra) and
Debian's Chromium (`apt-get install -y chromium`); no browser is downloaded. The files in
docs/_static/screenshots were made by this script: run it again after changing a page.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

DOCS = Path(__file__).resolve().parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 800}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def start_demo(port, state_dir):
    ptjaas = [sys.executable, "-m", "ptjaas_spawner.cli"]
    proc = subprocess.Popen(ptjaas + ["demo", "--port", str(port), "--state-dir", str(state_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"

    def up():
        if proc.poll() is not None:
            raise SystemExit(f"ptjaas demo exited with {proc.returncode}:\n{proc.stdout.read()}")
        with urllib.request.urlopen(url + "/hub/login", timeout=2) as r:
            return r.status == 200

    wait_for(up, 120, "ptjaas demo to answer")
    return proc, url


def take(url, out, chromium, user, password):
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(url + "/hub/login")
        page.screenshot(path=str(out / "login.png"))
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", password)
        page.click("[type=submit]")
        page.goto(url + "/hub/spawn")
        page.wait_for_selector("form")
        # the form's column only, from its heading, at 90 % (the whole page would be over 200 KB)
        page.evaluate("document.body.style.zoom = '0.9'")
        box, top = page.locator("#spawn_form").bounding_box(), page.locator("h1").first.bounding_box()["y"] - 12
        page.screenshot(path=str(out / "spawn-form.png"), full_page=True, clip={
            "x": max(0, box["x"] - 12), "y": top, "width": box["width"] + 24, "height": box["y"] + box["height"] + 12 - top})
        page.click("form [type=submit]")
        page.wait_for_url("**/spawn-pending/**", timeout=30_000)
        page.screenshot(path=str(out / "spawn-progress.png"))
        page.wait_for_url(f"**/user/{user}/lab**", timeout=300_000)
        page.wait_for_selector(".jp-LauncherCard", timeout=120_000)
        news = page.get_by_role("button", name="No")  # JupyterLab's "get Jupyter news?" toast
        if news.count():
            news.first.click()
            page.get_by_text("official Jupyter news").wait_for(state="hidden", timeout=10_000)
        page.screenshot(path=str(out / "jupyterlab.png"))
        page.goto(url + "/hub/home")
        page.wait_for_selector("#stop")
        page.screenshot(path=str(out / "home.png"))
        # stop the server the way a user does, so that the demo shuts down cleanly
        page.click("#stop")
        page.wait_for_selector("#stop", state="hidden", timeout=120_000)
        # the user's usage page, with the run just stopped
        page.goto(url + "/hub/ptjaas/usage/me")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(out / "usage.png"), full_page=True)
        browser.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DOCS / "_static" / "screenshots")
    parser.add_argument("--chromium", default=os.environ.get("PTJAAS_CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--user", default="alice")
    parser.add_argument("--password", default="ptjaas")
    opts = parser.parse_args(argv)
    if not Path(opts.chromium).exists():
        parser.error(f"no Chromium at {opts.chromium} (apt-get install -y chromium, or --chromium PATH)")
    with tempfile.TemporaryDirectory(prefix="ptjaas-screenshots-") as state_dir:
        proc, url = start_demo(free_port(), state_dir)
        try:
            take(url, opts.out, opts.chromium, opts.user, opts.password)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"screenshots written to {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
