"""docs/: the Sphinx (MyST) site builds with warnings as errors, and says what is true.

The build runs the config-reference extension (docs/_ext/ptjaas_configref.py), which imports
the spawner, authenticator and culler classes and renders their traits' help= text: a class
that fails to import, a trait without help text, a broken cross-reference or a missing image
fails this test.
"""

import re
import subprocess
import sys

import pytest

from tests.deploy_support import CHART_APP_VERSION, CHART_VERSION, DOCS, load_module_file

ptjaas_configref = load_module_file("ptjaas_configref", DOCS / "_ext" / "ptjaas_configref.py")

REFERENCED_CLASSES = {
    "ptjaas_spawner.spawner.PtjaasSpawner": "hub.config",
    "ptjaas_spawner.auth.PtjaasAuthenticator": "hub.config",
    "ptjaas_spawner.culler.app.PtjaasCuller": None,
}
PRESETS = ["ptjaas_spawner.auth.keycloak.KeycloakAuthenticator", "ptjaas_spawner.auth.azuread.AzureAdAuthenticator"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    pytest.importorskip("sphinx", reason="the docs extra (sphinx, myst-parser) is not installed")
    pytest.importorskip("myst_parser", reason="the docs extra (sphinx, myst-parser) is not installed")
    out = tmp_path_factory.mktemp("html")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(out / ".doctrees"), str(DOCS), str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"sphinx -W failed:\n{proc.stderr[-4000:]}"
    return out


def _text(html_file):
    return re.sub(r"<[^>]+>", " ", html_file.read_text())


def test_docs_build_with_warnings_as_errors(built):
    for page in ("index", "install", "demo", "user-guide", "configuration", "config-reference",
                 "upgrade", "troubleshooting", "architecture"):
        assert (built / f"{page}.html").exists(), page


def test_config_reference_is_generated_from_every_trait(built):
    page = _text(built / "config-reference.html")
    source = (DOCS / "config-reference.md").read_text()
    for path, helm in REFERENCED_CLASSES.items():
        assert f"{{ptjaas-config}} {path}" in source
        cls = ptjaas_configref.import_class(path)
        traits = ptjaas_configref.own_traits(cls)
        assert traits, path
        for name, trait in traits.items():
            assert f"c.{cls.__name__}.{name}" in page, f"{cls.__name__}.{name} missing from the reference"
            first_words = " ".join((trait.help or "").split()[:4])
            assert first_words.split()[0] in page
            if helm:
                assert f"{helm}.{cls.__name__}.{name}" in page
            assert f"{cls.__name__}.{name}" not in source, "the reference is generated, not hand-written"
    for path in PRESETS:
        cls = ptjaas_configref.import_class(path)
        preset = ptjaas_configref.own_traits(cls, defined_here=True)
        assert preset and f"{{ptjaas-config}} {path}" in source
        for name in preset:
            assert f"hub.config.{cls.__name__}.{name}" in page
        assert f"c.{cls.__name__}.groups_claim" not in page, "inherited settings are not repeated"


def test_docs_name_the_pinned_chart():
    install = (DOCS / "install.md").read_text()
    assert f"--version {CHART_VERSION}" in install
    assert f"**{CHART_VERSION}**" in install and f"**{CHART_APP_VERSION}**" in install


def test_user_guide_shows_the_screenshots_the_script_takes(built):
    guide = (DOCS / "user-guide.md").read_text()
    referenced = set(re.findall(r"_static/screenshots/([\w-]+\.png)", guide))
    script = (DOCS / "screenshots.py").read_text()
    taken = set(re.findall(r'out / "([\w-]+\.png)"', script))
    assert referenced == taken and len(taken) >= 4
    for name in taken:
        assert (DOCS / "_static" / "screenshots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (built / "_images" / name).exists()


def test_screenshot_script_explains_itself_and_refuses_a_missing_browser(tmp_path):
    script = DOCS / "screenshots.py"
    help_text = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert help_text.returncode == 0 and "ptjaas demo" in help_text.stdout
    missing = subprocess.run(
        [sys.executable, str(script), "--chromium", str(tmp_path / "no-chromium"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert missing.returncode == 2 and "no Chromium at" in missing.stderr
    assert not list(tmp_path.glob("*.png"))


def test_config_reference_lists_every_key_of_the_settings_schema(built):
    from ptjaas_spawner import settings_schema

    page = _text(built / "config-reference.html")
    for path, schema in settings_schema.VALUES.items():
        assert path.replace("<", "&lt;").replace(">", "&gt;") in page, path
        for key, prop in schema["properties"].items():
            first_word = re.match(r"[\w-]+", prop["description"]).group(0)
            assert key in page and first_word in page, f"{path}.{key}"
