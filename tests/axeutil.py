"""Accessibility checks in a real Chromium: axe-core (npm, node_modules/axe-core) run on a page
that Playwright shows, as a browser extension would; the serious and critical violations that
lie in ptjaas's own markup, with where they are."""

from pathlib import Path

AXE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]
SERIOUS = ("serious", "critical")


def violations(page, include=None):
    """axe's serious and critical violations on the page as ``[(rule, target, summary)]``;
    ``include``: CSS selectors of the parts to check (ptjaas's own; None: the whole page)."""
    page.add_script_tag(path=str(AXE))
    context = {"include": [[s] for s in include]} if include else None
    result = page.evaluate("async (context) => await axe.run(context || document, {resultTypes: ['violations']})",
                           context)
    found = []
    for v in result["violations"]:
        if v.get("impact") in SERIOUS:
            for node in v["nodes"]:
                found.append((v["id"], " ".join(map(str, node["target"])), node.get("failureSummary", "")[:300]))
    return found
