"""images/: the hub image installs ptjaas the way tested here, and image tags match the catalog.

No Docker engine runs here, so this tests what can be: the package builds as a wheel from
exactly the files the hub Dockerfile copies, installs into a clean environment with pip (as
the Dockerfile does) and its entry points load from there; the versions the chart's hub image
ships satisfy the wheel's requirements; the tags images/build.py gives each Dockerfile are the
ones the catalog in helm-values/ refers to; bases are pinned.
"""

import json
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.deploy_support import BASE, CHART_VERSION, FRAGMENTS, IMAGES, OVERLAYS, PROJECT, compose, load_module_file, load_yaml

from ptjaas_spawner.helmvalues import Z2JH_FRAGMENT_DIR

image_build = load_module_file("image_build", IMAGES / "build.py")

HUB_DOCKERFILE = IMAGES / "hub" / "Dockerfile"


def _wheel_stage_copies():
    """Source paths the hub Dockerfile's wheel stage COPYs from the build context."""
    sources, in_wheel_stage = [], False
    for line in image_build._logical_lines(HUB_DOCKERFILE.read_text()):
        if line.upper().startswith("FROM "):
            in_wheel_stage = line.split()[-1].lower() == "wheel"
        elif in_wheel_stage and line.upper().startswith("COPY ") and "--from" not in line:
            sources += line.split()[1:-1]
    return sources


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    sources = _wheel_stage_copies()
    assert "ptjaas_spawner" in sources and "pyproject.toml" in sources
    missing = [s for s in sources if not (PROJECT / s).exists()]
    if missing == ["README.md"]:
        pytest.skip("README.md (pyproject's readme, copied by the hub Dockerfile) is not written yet")
    assert not missing, f"the hub Dockerfile copies files that do not exist: {missing}"
    src = tmp_path_factory.mktemp("context")
    for source in sources:
        if (PROJECT / source).is_dir():
            shutil.copytree(PROJECT / source, src / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(PROJECT / source, src / source)
    out = tmp_path_factory.mktemp("wheels")
    # what the Dockerfile runs: pip wheel --no-deps (with build isolation, as in the image)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-cache-dir", "--no-deps", "--quiet",
         "--disable-pip-version-check", "--wheel-dir", str(out), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = out.glob("ptjaas-*.whl")
    return whl


def test_wheel_contains_every_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    package = PROJECT / "ptjaas_spawner"
    modules = {
        p.relative_to(PROJECT).as_posix()
        for p in package.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert modules - names == set()
    # the hub image installs production code only: no embedded cluster, demo or dev identity provider
    assert not [n for n in names if n.startswith("ptjaas_sandbox/")]
    for folder in ("templates", "static"):
        for p in package.rglob(f"{folder}/*"):
            if p.is_file():
                assert p.relative_to(PROJECT).as_posix() in names


def test_wheel_installs_into_a_clean_environment_and_its_entry_points_load(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # pip install of the wheel, like the Dockerfile (dependencies come from the image: here
    # --no-deps, and the project's environment is made visible only after the install)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
         "--no-index", "--disable-pip-version-check", str(wheel)],
        check=True, capture_output=True, timeout=300,
    )
    site = Path(subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip())
    (site / "zz_project_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = """
import json
from importlib.metadata import distribution, entry_points
import ptjaas_spawner, ptjaas_spawner.culler
out = {"package": ptjaas_spawner.__file__, "version": distribution("ptjaas").version}
for group in ("jupyterhub.spawners", "jupyterhub.authenticators"):
    (ep,) = [e for e in entry_points(group=group) if e.name == "ptjaas"]
    cls = ep.load()
    out[group] = [cls.__module__ + "." + cls.__name__, __import__(cls.__module__, fromlist=["x"]).__file__]
print(json.dumps(out))
"""
    result = json.loads(subprocess.check_output([str(python), "-c", probe], text=True, cwd=tmp_path, timeout=120))
    assert result["package"].startswith(str(venv))
    assert result["version"] == load_yaml(BASE)["hub"]["image"]["tag"].split("-z2jh")[0]
    spawner_cls, spawner_file = result["jupyterhub.spawners"]
    auth_cls, auth_file = result["jupyterhub.authenticators"]
    assert spawner_cls == "ptjaas_spawner.spawner.PtjaasSpawner" and spawner_file.startswith(str(venv))
    assert auth_cls.endswith(".PtjaasAuthenticator") and auth_file.startswith(str(venv))
    assert (venv / "bin" / "ptjaas").exists()
    # the `ptjaas` command works there, without the sandbox's commands
    usage = subprocess.run([str(venv / "bin" / "ptjaas"), "--help"], capture_output=True, text=True, timeout=120)
    assert usage.returncode == 0, usage.stderr
    assert "demo" not in usage.stdout and "cluster" not in usage.stdout


def test_the_z2jh_hub_image_versions_satisfy_the_wheel_requirements(wheel):
    """The hub Dockerfile installs with the image's packages frozen: they must be enough."""
    metadata = zipfile.ZipFile(wheel).read("ptjaas-0.1.0.dist-info/METADATA").decode()
    requires = [Requirement(line.split(":", 1)[1].strip()) for line in metadata.splitlines()
                if line.startswith("Requires-Dist:")]
    runtime = [r for r in requires if not r.marker or r.marker.evaluate({"extra": ""})]
    pins = {}
    for line in (PROJECT / "constraints" / "z2jh.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip().replace(".*", ".0")
    checked = 0
    for req in runtime:
        if req.name.lower() in pins:
            assert req.specifier.contains(pins[req.name.lower()]), f"{req} excludes z2jh's {pins[req.name.lower()]}"
            checked += 1
    assert checked >= 3, "jupyterhub, kubespawner and oauthenticator are checked against the image"


def test_image_tags_match_the_catalog():
    tags = json.loads(subprocess.check_output([sys.executable, str(IMAGES / "build.py"), "--print-tags"], text=True))
    base = load_yaml(BASE)
    assert tags["hub"] == f"{base['hub']['image']['name']}:{base['hub']['image']['tag']}"
    values = compose(BASE, OVERLAYS["gpu"])
    catalog = values["hub"]["config"]["PtjaasSpawner"]["images"]
    notebook_images = {n: p for n, p in image_build.dockerfiles().items() if n != "hub"}
    assert set(notebook_images) == {"notebook-cpu", "notebook-cuda", "notebook-vscode"}
    for name, dockerfile in notebook_images.items():
        labels = image_build.parse_dockerfile(dockerfile)["labels"]
        image_key, version_key = labels["io.ptjaas.catalog.image"], labels["io.ptjaas.catalog.version"]
        version = catalog[image_key]["versions"][version_key]
        assert version["image"] == tags[name], name
        assert version.get("default") is True, f"{name}: the newest build is the catalog's default"
    # the image z2jh falls back to (and pre-pulls) is the CPU image's current build
    assert f"{base['singleuser']['image']['name']}:{base['singleuser']['image']['tag']}" == tags["notebook-cpu"]


def test_dockerfiles_pin_their_bases():
    for name, dockerfile in image_build.dockerfiles().items():
        parsed = image_build.parse_dockerfile(dockerfile)
        for base in parsed["from"]:
            repository, _, tag = base.partition("@")[0].rpartition(":")
            assert repository and tag and tag != "latest", f"{name}: unpinned base {base}"
            assert parsed["labels"]["org.opencontainers.image.base.name"] in parsed["from"]
        if name == "hub":
            assert set(parsed["from"]) == {f"quay.io/jupyterhub/k8s-hub:{CHART_VERSION}"}
        else:
            (base,) = parsed["from"]
            assert base.startswith("quay.io/jupyter/"), f"{name}: not a Jupyter Docker Stacks image"
            assert re.search(r"\d{4}-\d{2}-\d{2}$", base) or "@sha256:" in base, f"{name}: {base} floats"
        if name == "notebook-cuda":
            assert ":cuda" in parsed["from"][0]


def test_hub_image_puts_the_fragments_where_z2jh_loads_them():
    copies = [line.split()[1:] for line in image_build._logical_lines(HUB_DOCKERFILE.read_text())
              if line.upper().startswith("COPY ") and "--from" not in line]
    assert [FRAGMENTS.name + "/", Z2JH_FRAGMENT_DIR + "/"] in copies
    assert HUB_DOCKERFILE.read_text().count("USER 1000") == 1  # back to the chart's non-root user
