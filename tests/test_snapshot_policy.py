"""Pure parts of snapshots and the audit record: ownership (forged names are 'not yours'),
rate limits, pruning, schedules, config errors naming the setting, secrets kept out."""

from datetime import datetime, timedelta, timezone

import pytest
from traitlets import TraitError
from traitlets.config import Config

from ptjaas_spawner import audit
from ptjaas_spawner.snapshots import policy, scheduler
from ptjaas_spawner.snapshots.views import SnapshotViews

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def snap(name, user, when, reason="manual", managed=policy.HUB, ready=True):
    body = policy.snapshot_manifest(name=name, claim=f"claim-{user}", snapshot_class="c", user=user,
                                    reason=reason, by=user, managed_by=managed)
    body["metadata"]["creationTimestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    body["status"] = {"readyToUse": ready, "restoreSize": "10Gi"}
    return body


def test_only_own_snapshots_are_found():
    items = [snap("a1", "alice", T0), snap("b1", "bob", T0), snap("a2", "alice", T0 + timedelta(hours=1))]
    assert [s["metadata"]["name"] for s in policy.user_snapshots(items, "alice")] == ["a2", "a1"]
    assert policy.find_own(items, "alice", "a1")["metadata"]["name"] == "a1"
    with pytest.raises(policy.SnapshotRefused) as e:
        policy.find_own(items, "alice", "b1")
    assert e.value.status == 404 and str(e.value) == "You have no snapshot named b1."
    for forged in ["../b1", "B1", "", "x" * 300, None, ["b1"]]:
        with pytest.raises(policy.SnapshotRefused) as e:
            policy.find_own(items, "alice", forged)
        assert e.value.status == 400
    # a snapshot not made by ptjaas belongs to nobody, whatever its annotations say
    foreign = snap("f1", "alice", T0)
    foreign["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "someone-else"
    assert policy.user_snapshots([foreign], "alice") == []
    not_ready = snap("a3", "alice", T0, ready=False)
    with pytest.raises(policy.SnapshotRefused) as e:
        policy.find_own([not_ready], "alice", "a3")
    assert e.value.status == 409


def test_culler_snapshots_are_the_users_with_reason_cull():
    old_style = {"metadata": {"name": "claim-alice-cull-1", "labels": {"app.kubernetes.io/managed-by": "ptjaas-culler"},
                              "annotations": {"ptjaas.io/user": "alice"}}, "spec": {}, "status": {}}
    assert policy.owner_of(old_style) == "alice" and policy.reason_of(old_style) == "cull"


def test_requested_views_are_bounded():
    assert policy.requested_views(None) == []
    assert policy.requested_views(["a", "a", "b"]) == ["a", "b"]
    with pytest.raises(policy.SnapshotRefused, match="At most"):
        policy.requested_views([f"s{i}" for i in range(policy.MAX_OPEN + 1)])
    with pytest.raises(policy.SnapshotRefused, match="list of snapshot names"):
        policy.requested_views({"name": "a"})


def test_rate_limit_prune_due_and_paths():
    assert policy.rate_limited(None, T0, 600) == 0
    assert policy.rate_limited(T0, T0 + timedelta(seconds=100), 600) == 500
    assert policy.rate_limited(T0, T0 + timedelta(seconds=700), 600) == 0
    items = [snap(f"s{i}", "alice", T0 + timedelta(minutes=i)) for i in range(5)]
    assert policy.to_prune(items, 2) == ["s2", "s1", "s0"]
    assert policy.due(items, 3600, T0 + timedelta(minutes=64))
    assert not policy.due(items, 3600, T0 + timedelta(minutes=63))
    assert policy.due([], 3600, T0)
    s = snap("s", "alice", T0)
    s["status"]["creationTime"] = "2026-11-30T12:00:05Z"
    assert policy.view_mount_path("/home/jovyan", "snapshots", s) == "/home/jovyan/snapshots/2026-11-30_12-00-05"
    assert policy.restored_claim_name("claim-alice-restored-20260101-000000", T0) == "claim-alice-restored-20261130-120000"


def test_the_list_and_the_folder_say_the_time_alike_and_the_message_follows_the_row():
    when = datetime(2026, 11, 30, 12, 0, 5, tzinfo=timezone.utc)
    ready, pending = policy.summary(snap("s1", "alice", when)), policy.summary(snap("s2", "alice", when, ready=False))
    assert ready["folder"] == "2026-11-30_12-00-05"
    assert policy.view_mount_path("/home/jovyan", "snapshots", snap("s1", "alice", when)).endswith("/" + ready["folder"])
    assert policy.taken_message(ready) == "Snapshot s1 (2026-11-30_12-00-05 UTC) is ready."
    assert "is being taken" in policy.taken_message(pending)


def test_schedules_per_group():
    groups = scheduler.check_groups({"vision": {"every": 86400, "keep": 7}, "nlp": {"every": 3600, "keep": 2}})
    plan = scheduler.schedule_for_users(groups, {"vision": ["alice", "bob"], "nlp": ["bob"], "other": ["carl"]})
    assert plan == {"alice": {"every": 86400, "keep": 7}, "bob": {"every": 3600, "keep": 7}}
    for bad, where in [({"g": {"keep": 0}}, "['g']['keep']"), ({"g": {"every": -1}}, "['g']['every']"),
                       ({"g": {"evry": 1}}, "['g'] must be"), ({}, "non-empty")]:
        with pytest.raises(scheduler.ScheduleError) as e:
            scheduler.check_groups(bad)
        assert where in str(e.value)
    claims = [{"metadata": {"name": n, "labels": labels, "annotations": {"ptjaas.io/username": u}}}
              for n, u, labels in [("claim-alice", "alice", {}), ("view", "alice", {"ptjaas.io/purpose": "snapshot-view"}),
                                   ("old", "alice", {"ptjaas.io/replaced": "true"}), ("claim-alice2", "alice.x", {})]]
    assert [c["metadata"]["name"] for c in scheduler.home_claims_of(claims, "alice")] == ["claim-alice"]
    entries = scheduler.service_config({"vision": {"every": 60, "keep": 1}}, snapshot_classes={"sc": "vs"})
    assert entries["load_roles"][0]["scopes"] == ["read:groups!group=vision"]
    with pytest.raises(scheduler.ScheduleError, match="snapshot_classes"):
        scheduler.service_config({"vision": {}}, snapshot_classes={})


def test_snapshot_settings_are_checked_naming_the_setting():
    with pytest.raises(TraitError, match="c.PtjaasSpawner.snapshot_classes"):
        SnapshotViews(config=Config({"SnapshotViews": {"snapshot_classes": {"standard": ""}}}))
    with pytest.raises(TraitError, match="c.PtjaasSpawner.snapshot_mount_dir"):
        SnapshotViews(config=Config({"SnapshotViews": {"snapshot_mount_dir": "../x"}}))


def test_audit_entries_hold_no_secret_and_filter(tmp_path):
    e = audit.entry("server-start", "alice", by="alice", env={"JUPYTERHUB_API_TOKEN": "s3cret", "X": "1"},
                    api_token="s3cret", client_secret="s3cret", Authorization="token s3cret",
                    message="m" * 5000, volumes=[{"claim": "c"}] * 500)
    text = str(e)
    assert "s3cret" not in text and e["env"] == {"X": "1"}
    assert len(e["message"]) == 1000 and len(e["volumes"]) == 100
    with pytest.raises(ValueError):
        audit.entry("made-up", "alice")
    path = str(tmp_path / "a" / "audit.jsonl")
    for user in ("alice", "bob"):
        audit.write(path, audit.entry("snapshot-take", user, by=user))
    assert [r["user"] for r in audit.read(path)] == ["bob", "alice"]
    assert [r["user"] for r in audit.read(path, user="alice")] == ["alice"]
    assert audit.read(path, since=audit.parse_time("2100-01-01", "since")) == []
    with pytest.raises(ValueError, match="since must be a date"):
        audit.parse_time("yesterday", "since")
    import os
    import stat

    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_pod_volumes_kinds_and_access():
    pod = {"spec": {"volumes": [
        {"name": "home", "persistentVolumeClaim": {"claimName": "claim-a"}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "team", "readOnly": False}},
        {"name": "snap", "persistentVolumeClaim": {"claimName": "v1", "readOnly": True}},
        {"name": "tmp", "emptyDir": {}}],
        "containers": [{"volumeMounts": [{"name": "home", "mountPath": "/home/jovyan"},
                                         {"name": "data", "mountPath": "/data", "readOnly": True},
                                         {"name": "snap", "mountPath": "/home/jovyan/snapshots/t"},
                                         {"name": "tmp", "mountPath": "/tmp"}]}]}}
    assert audit.pod_volumes(pod, "claim-a", ["v1"]) == [
        {"kind": "home", "claim": "claim-a", "mount_path": "/home/jovyan", "access": "read-write"},
        {"kind": "shared", "claim": "team", "mount_path": "/data", "access": "read-only"},
        {"kind": "snapshot", "claim": "v1", "mount_path": "/home/jovyan/snapshots/t", "access": "read-only"},
    ]


def test_pages_install_keeps_the_admins_templates_first():
    from ptjaas_spawner.pages import install
    from ptjaas_spawner.snapshots.handlers import TEMPLATE_DIR

    c = Config()
    c.JupyterHub.template_paths = ["/site/templates", "/usr/local/share/jupyterhub/templates"]
    install(c)
    assert c.JupyterHub.template_paths == ["/site/templates", TEMPLATE_DIR, "/usr/local/share/jupyterhub/templates"]
    routes = [h[0] for h in c.JupyterHub.extra_handlers]
    assert {"/ptjaas/usage", "/ptjaas/audit", "/ptjaas/snapshots", "/api/ptjaas/snapshots/([^/]+)"} <= set(routes)
    install(c)  # idempotent for the templates
    assert c.JupyterHub.template_paths.count(TEMPLATE_DIR) == 1


def test_audit_record_kept_open_still_follows_a_rotation_and_a_removal(tmp_path):
    """The record's file is kept open between lines (issue 21); a rotated (renamed) or removed
    file, or its removed folder, still gets the next line at the configured path, whole."""
    import os
    import shutil

    folder = tmp_path / "logs"
    path = str(folder / "audit.jsonl")
    audit.write(path, audit.entry("snapshot-take", "alice", by="alice"))
    os.rename(path, path + ".1")  # as logrotate does, making a new empty file
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    audit.write(path, audit.entry("snapshot-take", "bob", by="bob"))
    assert [r["user"] for r in audit.read(path + ".1")] == ["alice"]
    assert [r["user"] for r in audit.read(path)] == ["bob"]
    shutil.rmtree(folder)
    audit.write(path, audit.entry("snapshot-take", "carol", by="carol"))
    assert [r["user"] for r in audit.read(path)] == ["carol"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
