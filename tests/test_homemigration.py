"""``ptjaas migrate-home``'s checks and objects (pure), and its copy scripts run as processes."""

import io
import socket
import subprocess
import sys
import tarfile
import threading

import pytest

from ptjaas_spawner import homemigration as hm
from ptjaas_spawner.homevolume import claim_owner


def old_claim(annotations=None, phase="Bound", labels=None):
    return {"metadata": {"name": "claim-ann", "namespace": "jhub", "labels": labels if labels is not None else {"ptjaas.io/user": "ann"},
                         "annotations": annotations if annotations is not None else {"hub.jupyter.org/username": "ann"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                     "resources": {"requests": {"storage": "10Gi"}}},
            "status": {"phase": phase, "capacity": {"storage": "20Gi"}}}


def plan(snapshot_class=None):
    return hm.plan_for(old_claim(), "ann", "jhub", "jhub-team-vision", snapshot_class)


def test_the_new_claim_is_the_users_and_not_yet_marked_migrated():
    new = hm.new_claim(old_claim(), plan())
    assert claim_owner(new, "ann")[0] == "mine"
    assert new["metadata"]["namespace"] == "jhub-team-vision"
    assert "ptjaas.io/migrated-from" not in new["metadata"]["annotations"]
    # as large as the old volume is now (it may have grown), same class and modes
    assert new["spec"] == {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                           "resources": {"requests": {"storage": "20Gi"}}}
    done = hm.finished_patch(plan())["metadata"]["annotations"]
    assert done == {"ptjaas.io/migrated-from": "jhub/claim-ann", hm.COPYING: None}


@pytest.mark.parametrize("claim,words", [
    (None, "no claim claim-ann in namespace jhub"),
    (old_claim(annotations={}, labels={}), "is not proven to be 'ann''s home"),
    (old_claim(annotations={"hub.jupyter.org/username": "bob"}), "is not proven to be 'ann''s home"),
    (old_claim(phase="Pending"), "is not bound"),
    (old_claim(labels={hm.MIGRATED_LABEL: "true"}), "was migrated already"),
])
def test_a_source_that_must_not_be_copied_is_refused(claim, words):
    with pytest.raises(hm.MigrationError, match=words.replace("(", r"\(")):
        hm.check_source(claim, "ann", "claim-ann", "jhub")


def test_an_existing_target_is_refused_with_what_to_do():
    with pytest.raises(hm.MigrationError, match="exists already"):
        hm.check_target(old_claim(), plan())
    with pytest.raises(hm.MigrationError, match="unfinished copy of an interrupted migration: delete it"):
        hm.check_target({"metadata": {"annotations": {hm.COPYING: "jhub/claim-ann"}}}, plan())
    hm.check_target(None, plan())


def test_running_servers_and_pods_mounting_the_home_are_found():
    def pod(ns, name, user=None, claim=None, phase="Running"):
        return {"metadata": {"namespace": ns, "name": name,
                             "annotations": {"hub.jupyter.org/username": user} if user else {}},
                "spec": {"volumes": [{"name": "h", "persistentVolumeClaim": {"claimName": claim}}] if claim else []},
                "status": {"phase": phase}}
    pods = [pod("jhub", "jupyter-ann", "ann"), pod("jhub-team-vision", "jupyter-ann-x", "ann"),
            pod("jhub", "backup", claim="claim-ann"), pod("jhub", "jupyter-bob", "bob"),
            pod("jhub", "old", "ann", phase="Succeeded"), pod("other", "x", claim="claim-ann")]
    assert hm.servers_running(pods, "ann", "claim-ann", "jhub") == [
        "jhub-team-vision/jupyter-ann-x", "jhub/backup", "jhub/jupyter-ann"]


def test_bad_requests_name_the_flag():
    with pytest.raises(hm.MigrationError, match="--team-namespace: 'Team_X' is not a valid namespace name"):
        hm.check_request("ann", "Team_X", "jhub")
    with pytest.raises(hm.MigrationError, match="is the hub's namespace"):
        hm.check_request("ann", "jhub", "jhub")
    assert hm.default_claim_name("ann") == "claim-ann"
    assert hm.default_claim_name("Ann@example.org") is None


def test_copy_pods_are_unprivileged_and_the_sender_reads_only():
    send = hm.copy_pod(plan(), "send", "claim-ann", "img", 1000, 100, ["0.0.0.0", 8765, hm.MOUNT, 60])
    recv = hm.copy_pod(plan(), "receive", "claim-ann", "img", 1000, 100, ["10.0.0.1", 8765, hm.MOUNT, 60])
    assert send["metadata"]["namespace"] == "jhub" and recv["metadata"]["namespace"] == "jhub-team-vision"
    for pod in (send, recv):
        spec = pod["spec"]
        assert spec["securityContext"]["runAsUser"] == 1000 and spec["securityContext"]["runAsNonRoot"]
        assert spec["automountServiceAccountToken"] is False
        assert spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False
    assert send["spec"]["volumes"][0]["persistentVolumeClaim"]["readOnly"] is True
    assert send["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] is True
    assert len(hm.pod_name("claim-" + "x" * 100, "receive")) <= 63


def _serve_once(data: bytes):
    srv = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = srv.accept()
        with conn:
            conn.sendall(data)
        srv.close()
    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


def _tar(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def test_the_receiver_unpacks_the_home_and_refuses_entries_leaving_it(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    port = _serve_once(_tar([("work/a.txt", b"kept")]))
    r = subprocess.run([sys.executable, "-c", hm.RECEIVE, "127.0.0.1", str(port), str(home), "30"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (home / "work" / "a.txt").read_bytes() == b"kept"
    port = _serve_once(_tar([("../escaped.txt", b"x")]))
    r = subprocess.run([sys.executable, "-c", hm.RECEIVE, "127.0.0.1", str(port), str(home), "30"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert not (tmp_path / "escaped.txt").exists()


def test_the_sender_streams_the_directory(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f.txt").write_text("hello")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = subprocess.Popen([sys.executable, "-c", hm.SEND, "127.0.0.1", str(port), str(src), "30"],
                              stdout=subprocess.PIPE, text=True)
    dst = tmp_path / "dst"
    dst.mkdir()
    r = subprocess.run([sys.executable, "-c", hm.RECEIVE, "127.0.0.1", str(port), str(dst), "30"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert sender.wait(30) == 0
    assert (dst / "d" / "f.txt").read_text() == "hello"
