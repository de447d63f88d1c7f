"""Issue 23, team datasets: the pure rules (ptjaas_spawner/datasets/policy.py). The whole thing
through a real hub: tests/test_datasets_hub.py."""

import json

import pytest

from ptjaas_spawner.datasets import policy
from ptjaas_spawner.errors import SettingError

pytestmark = pytest.mark.version_independent  # pure policy: no hub, spawner or auth code

QUOTA = {"team-a": {"gpus": 2, "datasets": {"count": 2, "storage": "10Gi"}}, "team-b": {"gpus": 1},
         "Data Science": {"datasets": {"count": 1, "storage": "1Gi"}}}
CLASSES = {"shared": {"storage_class": "nfs", "access_modes": ["ReadWriteMany"]},
           "fast": {"access_modes": ["ReadWriteOnce"]}}


def existing(*sizes):
    return [{"name": f"d{i}", "size": s} for i, s in enumerate(sizes)]


@pytest.mark.parametrize("team, groups, have, name, size, klass, write, result", [
    ("team-a", ["team-a"], [], "images", "5Gi", None, None, {"name": "images", "size": 5 * 2**30, "class": "shared", "write": "creator"}),
    ("team-a", ["team-a"], existing("5Gi"), "x", "5Gi", "fast", "team", {"name": "x", "size": 5 * 2**30, "class": "fast", "write": "team"}),
    ("team-a", ["team-b"], [], "x", "1Gi", None, None, (403, "not a member of team 'team-a'")),
    ("team-b", ["team-b"], [], "x", "1Gi", None, None, (403, "has no datasets")),
    ("team-a", ["team-a"], [], "Bad_Name", "1Gi", None, None, (400, "is not a DNS label")),
    ("Data Science", ["Data Science"], [], "x", "1Gi", None, None, (400, "not a Kubernetes label value")),
    ("team-a", ["team-a"], [], "x" * 41, "1Gi", None, None, (400, "too long (41 characters, at most 40)")),
    ("team-a", ["team-a"], [], "", "1Gi", None, None, (400, "needs a name")),
    ("team-a", ["team-a"], [], "x", "lots", None, None, (400, "size 'lots' is not valid")),
    ("team-a", ["team-a"], [], "x", "0", None, None, (400, "more than 0")),
    ("team-a", ["team-a"], [], "x", "1Gi", "gold", None, (400, "Unknown access class 'gold'; classes: shared, fast")),
    ("team-a", ["team-a"], [], "x", "1Gi", None, "anyone", (400, "not one of creator, team, read-only")),
    ("team-a", ["team-a"], existing("1Gi"), "d0", "1Gi", None, None, (409, "already has a dataset d0")),
    ("team-a", ["team-a"], existing("1Gi", "1Gi"), "x", "1Gi", None, None, (400, "2 of 2 datasets")),
    ("team-a", ["team-a"], existing("8Gi"), "x", "3Gi", None, None, (400, "2Gi of 10Gi left")),
])
def test_may_create(team, groups, have, name, size, klass, write, result):
    if isinstance(result, dict):
        assert policy.may_create(team, groups, QUOTA, CLASSES, have, name, size, klass, write) == result
        return
    with pytest.raises(policy.DatasetRefused) as e:
        policy.may_create(team, groups, QUOTA, CLASSES, have, name, size, klass, write)
    assert e.value.status == result[0] and result[1] in str(e.value)


def dataset(write="creator", creator="alice", modes=("ReadWriteMany",)):
    return {"name": "images", "team": "team-a", "claim": "dataset-images", "namespace": "jhub",
            "creator": creator, "write": write, "access_modes": list(modes)}


@pytest.mark.parametrize("write, user, groups, mode, admin, refused", [
    ("creator", "alice", ["team-a"], "rw", False, ""),
    ("creator", "bob", ["team-a"], "ro", False, ""),
    ("creator", "bob", ["team-a"], "rw", False, "Only its creator (alice) may write"),
    ("creator", "bob", ["team-a"], "rw", True, ""),       # admins override the rule
    ("team", "bob", ["team-a"], "rw", False, ""),
    ("read-only", "alice", ["team-a"], "rw", False, "read-only for everyone"),
    ("team", "carol", ["team-b"], "ro", False, "not one of your teams' datasets"),
    ("team", "carol", ["team-b"], "ro", True, "not one of your teams' datasets"),
    ("team", "bob", ["team-a"], "wr", False, "must be 'rw' or 'ro'"),
])
def test_may_mount(write, user, groups, mode, admin, refused):
    assert (refused in policy.may_mount(dataset(write), user, groups, mode, admin)) and \
        bool(policy.may_mount(dataset(write), user, groups, mode, admin)) == bool(refused)


@pytest.mark.parametrize("user, admin, confirm, refused", [
    ("alice", False, "images", ""),
    ("admin", True, "images", ""),
    ("bob", False, "images", "Only its creator (alice) or an admin"),
    ("alice", False, "image", "Type the dataset's name (images)"),
    ("alice", False, None, "Type the dataset's name"),
])
def test_may_delete(user, admin, confirm, refused):
    got = policy.may_delete(dataset(), user, admin, confirm)
    assert (refused in got) and bool(got) == bool(refused)


def test_manifest_and_mounts_round_trip():
    request = policy.may_create("team-a", ["team-a"], QUOTA, CLASSES, [], "images", "5Gi", "shared", "team")
    pvc = policy.claim_manifest("team-a", "jhub", request, "alice", CLASSES)
    assert pvc["metadata"]["labels"][policy.DATASET_LABEL] == "images"
    assert pvc["metadata"]["labels"][policy.TEAM_LABEL] == "team-a"
    assert pvc["spec"] == {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "5Gi"}},
                           "storageClassName": "nfs"}
    d = policy.describe(pvc)
    assert (d["name"], d["creator"], d["write"], d["class"], d["size"]) == ("images", "alice", "team", "shared", "5Gi")
    volumes, mounts = policy.mount_parts([(d, "ro")], "/home/jovyan")
    assert volumes == [{"name": "dataset-images", "persistentVolumeClaim": {"claimName": "dataset-images", "readOnly": True}}]
    assert mounts == [{"name": "dataset-images", "mountPath": "/home/jovyan/data/images", "readOnly": True}]
    # a tampered write annotation reads as the strictest rule
    pvc["metadata"]["annotations"][policy.WRITE] = "everyone"
    assert policy.describe(pvc)["write"] == "read-only"


def test_rwo_in_use_elsewhere_names_who():
    pod = {"metadata": {"name": "jupyter-alice", "namespace": "jhub", "annotations": {"hub.jupyter.org/username": "alice"}},
           "spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "dataset-images"}}]},
           "status": {"phase": "Running"}}
    rwo = dataset(modes=("ReadWriteOnce",))
    assert "in use by alice's server (pod jupyter-alice)" in policy.in_use_elsewhere(rwo, [pod], "jupyter-bob")
    assert policy.in_use_elsewhere(rwo, [pod], "jupyter-alice") == ""      # its own pod
    assert policy.in_use_elsewhere(dataset(), [pod], "jupyter-bob") == ""  # ReadWriteMany
    assert policy.in_use_elsewhere(rwo, [dict(pod, status={"phase": "Succeeded"})], "jupyter-bob") == ""


@pytest.mark.parametrize("option, refused", [
    (None, ""), ({"images": "ro"}, ""),
    (["images"], "must be an object"), ({"images": "write"}, "must be 'rw' or 'ro'"),
    ({"../etc": "ro"}, "not a DNS label"), ({f"d{i}": "ro" for i in range(21)}, "Too many datasets"),
])
def test_chosen_mounts(option, refused):
    if not refused:
        assert policy.chosen_mounts(option) == (option or {})
        return
    with pytest.raises(policy.DatasetRefused, match=refused):
        policy.chosen_mounts(option)


@pytest.mark.parametrize("value, message", [
    ({"shared": {"access_modes": ["ReadWriteSometimes"]}}, "dataset_classes['shared']['access_modes'][0]"),
    ({"Shared": {"access_modes": ["ReadWriteMany"]}}, "does not match"),
    ({"shared": {"access_modes": ["ReadWriteMany"], "size": "1Gi"}}, "dataset_classes['shared']"),
    ({"shared": {}}, "'access_modes' is a required property"),
])
def test_classes_setting_checked(value, message):
    with pytest.raises(SettingError, match="c.PtjaasSpawner.dataset_classes") as e:
        policy.check_classes(value)
    assert message in str(e.value)
    assert policy.check_classes(CLASSES) == CLASSES


@pytest.mark.parametrize("spec, message", [
    ({"count": 2}, "must be {'count'"), ({"count": -1, "storage": "1Gi"}, "['count'] must be a whole number"),
    ({"count": 1, "storage": "lots"}, "['storage'] is invalid"),
])
def test_team_limits_checked(spec, message):
    with pytest.raises(SettingError) as e:
        policy.check_team_limits({"team-a": {"datasets": spec}})
    assert "quota_groups['team-a']['datasets']" in str(e.value) and message in str(e.value)


def test_startup_check_names_the_setting():
    problems = policy.startup_problems({"dataset_classes": {"shared": {"access_modes": ["ReadWriteMany"]}},
                                        "quota_groups": {"team-a": {"datasets": {"count": 1, "storage": "1Gi"}}}})
    assert problems == []
    problems = policy.startup_problems({"dataset_classes": {"shared": {"access_modes": []}},
                                        "quota_groups": {"team-a": {"datasets": {"count": 1}}}})
    assert [p[0] for p in problems] == ["PtjaasSpawner", "PtjaasSpawner"]
    assert "c.PtjaasSpawner.dataset_classes['shared']['access_modes']" in problems[0][1]
    assert "c.PtjaasSpawner.quota_groups['team-a']['datasets'] must be" in problems[1][1]


def test_time_travel_rights_restore_claim_and_who_mounts():
    from datetime import datetime, timezone

    from ptjaas_spawner.datasets import timetravel

    d = {"name": "images", "team": "team-a", "claim": "dataset-images", "namespace": "ns", "creator": "alice",
         "write": "creator", "access_modes": ["ReadWriteMany"]}
    assert timetravel.may_change(d, "alice", ["team-a"], False) == ""
    assert "Only its creator (alice)" in timetravel.may_change(d, "bob", ["team-a"], False)
    assert timetravel.may_change(dict(d, write="team"), "bob", ["team-a"], False) == ""
    assert "read-only for everyone" in timetravel.may_change(dict(d, write="read-only"), "alice", ["team-a"], False)
    assert timetravel.may_change(d, "root", [], True) == ""
    current = {"metadata": {"name": "dataset-images", "namespace": "ns",
                            "labels": {"ptjaas.io/dataset": "images", "ptjaas.io/team": "team-a"},
                            "annotations": {"ptjaas.io/dataset-creator": "alice", "other.io/x": "y"}},
               "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "nfs",
                        "resources": {"requests": {"storage": "1Gi"}}}}
    snap = {"metadata": {"name": "s1"}, "status": {"restoreSize": "2Gi", "readyToUse": True}}
    when = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
    name = timetravel.restored_claim_name(d, when)
    assert name == "dataset-images-restored-20261207-120000"
    assert timetravel.restored_claim_name(dict(d, claim=name), when) == name  # no growing suffixes
    new = timetravel.restored_claim(current, snap, name)
    assert new["metadata"]["labels"] == current["metadata"]["labels"]
    assert new["metadata"]["annotations"] == {"ptjaas.io/dataset-creator": "alice", "ptjaas.io/restored-from": "s1"}
    assert new["spec"]["resources"]["requests"]["storage"] == "2Gi" and new["spec"]["storageClassName"] == "nfs"
    assert new["spec"]["dataSource"] == {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "s1"}
    patch = timetravel.replaced_patch(d, "s1", "alice", when)["metadata"]
    assert patch["labels"] == {"ptjaas.io/dataset": None, "ptjaas.io/replaced-dataset": "images"}
    pod = {"metadata": {"name": "jupyter-bob", "annotations": {"hub.jupyter.org/username": "bob"}},
           "spec": {"volumes": [{"persistentVolumeClaim": {"claimName": "dataset-images"}}]}, "status": {"phase": "Running"}}
    assert "mounted by bob's server (pod jupyter-bob)" in timetravel.mounted_by(d, [pod])
    assert timetravel.mounted_by(d, [dict(pod, status={"phase": "Succeeded"})]) == ""
    with pytest.raises(policy.DatasetRefused, match="has no snapshot 'nope'"):
        timetravel.find([{"metadata": {"name": "s1"}, "status": {"readyToUse": True}}], d, "nope")


def test_opening_a_dataset_snapshot_read_only_rules():
    """Who may open a dataset's snapshot (whoever may mount it read-only), where it appears,
    what a start does with a request that no longer holds, and the bound on waiting requests."""
    from ptjaas_spawner.datasets import timetravel
    from ptjaas_spawner.snapshots.views import snapshot_view_volumes

    d = {"name": "images", "team": "team-a", "claim": "dataset-images", "namespace": "ns", "creator": "alice",
         "write": "read-only", "access_modes": ["ReadWriteMany"]}
    assert timetravel.may_open(d, "bob", ["team-a"], False) == ""  # read-only for all: still openable
    assert "not one of your teams' datasets" in timetravel.may_open(d, "carol", ["team-b"], False)
    snap = {"metadata": {"name": "s1", "labels": {"ptjaas.io/dataset": "images", "ptjaas.io/team": "team-a"}},
            "status": {"readyToUse": True, "creationTime": "2026-12-07T12:00:00Z"}}
    assert timetravel.view_mount_path("/home/jovyan/", d, snap) == "/home/jovyan/data/images@2026-12-07_12-00-00"

    # at the start: checked again against what is there now
    found = {"images": d}
    request = timetravel.open_request(d, "s1", "bob")
    assert timetravel.view_problem(request, found, "bob", ["team-a"], False, [snap]) == (d, snap, "")
    other = dict(snap, metadata=dict(snap["metadata"], labels={"ptjaas.io/dataset": "images", "ptjaas.io/team": "x"}))
    for req, user, groups, items, why in [
        (request, "bob", ["team-a"], [other], "has no snapshot 's1'"),  # another team's snapshot of that name
        (request, "bob", ["team-a"], [dict(snap, status={})], "not ready yet"),
        (dict(request, team="team-b"), "bob", ["team-a"], [snap], "no dataset 'images' of team 'team-b'"),
        (dict(request, dataset="gone"), "bob", ["team-a"], [snap], "no dataset 'gone'"),
        (request, "bob", ["team-b"], [snap], "not one of your teams' datasets"),  # left the team since
    ]:
        assert timetravel.view_problem(req, found, user, groups, False, items)[0] is None
        assert why in timetravel.view_problem(req, found, user, groups, False, items)[2]

    # waiting requests: the same one once, at most MAX_OPEN
    pending = timetravel.with_open_request([], request)
    assert timetravel.with_open_request(pending, dict(request)) == pending
    for i in range(timetravel.MAX_OPEN - 1):
        pending = timetravel.with_open_request(pending, dict(request, snapshot=f"s{i + 2}"))
    with pytest.raises(policy.DatasetRefused, match=f"At most {timetravel.MAX_OPEN} snapshots") as e:
        timetravel.with_open_request(pending, dict(request, snapshot="one-more"))
    assert e.value.status == 409

    # the pod mounts each opened view read-only (homes' and datasets' alike)
    vols, mounts = snapshot_view_volumes([{"claim": "jupyter-bob-snapshot-ab", "mount_path": "/home/jovyan/data/images@t"}])
    assert vols == [{"name": "snapshot-0", "persistentVolumeClaim": {"claimName": "jupyter-bob-snapshot-ab",
                                                                     "readOnly": True}}]
    assert mounts == [{"name": "snapshot-0", "mountPath": "/home/jovyan/data/images@t", "readOnly": True}]


def test_scheduled_dataset_snapshots_due_and_kept():
    """A team's datasets schedule (``{"datasets": {every, keep}}`` beside the homes' in the
    scheduled-snapshot setting): when one is due, which are deleted (only the scheduler's own)."""
    from datetime import datetime, timedelta, timezone

    from ptjaas_spawner.datasets import timetravel
    from ptjaas_spawner.snapshots import scheduler

    d = {"name": "images", "team": "team-a", "claim": "dataset-images", "namespace": "ns", "creator": "alice"}
    now = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)

    def snap(name, hours_ago, reason="schedule", by="ptjaas-snapshots", dataset="images"):
        t = (now - timedelta(hours=hours_ago)).isoformat().replace("+00:00", "Z")
        return {"metadata": {"name": name, "labels": {"ptjaas.io/dataset": dataset, "ptjaas.io/team": "team-a"},
                             "annotations": {"ptjaas.io/snapshot-reason": reason, "ptjaas.io/snapshot-by": by}},
                "status": {"creationTime": t, "readyToUse": True}}

    every_hour = {"every": 3600, "keep": 2}
    assert timetravel.schedule_plan(d, [], every_hour, now) == (True, [])
    items = [snap("s3", 0.5), snap("s2", 1.5), snap("s1", 2.5), snap("manual", 9, reason="manual", by="alice"),
             snap("forged", 9, by="mallory"), snap("other", 9, dataset="models")]
    assert timetravel.schedule_plan(d, items, every_hour, now) == (False, ["s1"])  # not due; keep the newest 2
    assert timetravel.schedule_plan(d, items[1:], every_hour, now) == (True, ["s1"])  # due: the new one counts
    assert timetravel.schedule_plan(d, items, {"every": 3600, "keep": 5}, now) == (False, [])
    made = timetravel.snapshot_manifest(dict(d, namespace="ns"), "vs", "schedule", "ptjaas-snapshots", now)
    assert timetravel.scheduled_of([made], d) == [made] and timetravel.summary(made)["reason"] == "schedule"

    # the setting: homes and datasets per group, a group with datasets only reads no members
    groups = scheduler.check_groups({"vision": {"every": 86400, "keep": 7, "datasets": {"every": 3600, "keep": 24}},
                                     "team-a": {"datasets": {"keep": 3}}})
    assert groups["vision"] == {"every": 86400.0, "keep": 7, "homes": True,
                                "datasets": {"every": 3600.0, "keep": 24}}
    assert groups["team-a"]["homes"] is False and groups["team-a"]["datasets"] == {"every": 86400.0, "keep": 3}
    assert scheduler.check_groups(groups) == groups  # the service checks its settings again
    assert scheduler.schedule_for_users(groups, {"vision": ["alice"], "team-a": ["bob"]}) == {
        "alice": {"every": 86400.0, "keep": 7}}
    for bad, where in [({"g": {"datasets": {"keep": 0}}}, "['g']['datasets']['keep']"),
                       ({"g": {"datasets": {"every": 60, "when": 1}}}, "['g']['datasets'] must be"),
                       ({"g": {"datasets": 5}}, "['g']['datasets'] must be"),
                       ({"g": {"homes": "no"}}, "['g']['homes'] must be true or false"),
                       ({"g": {"homes": False}}, "['g'] schedules nothing")]:
        with pytest.raises(scheduler.ScheduleError) as e:
            scheduler.check_groups(bad)
        assert where in str(e.value)
    entries = scheduler.service_config({"team-a": {"datasets": {"every": 60, "keep": 1}}}, snapshot_classes={"sc": "vs"},
                                       team_namespaces={"team-a": "jhub-team-{group}"})
    assert entries["load_roles"] == []  # no hub right: no member list is read
    settings = json.loads(entries["services"][0]["environment"]["PTJAAS_SNAPSHOT_SCHEDULE"])
    assert settings["team_namespaces"] == {"team-a": "jhub-team-team-a"} and settings["interval"] == 15
    assert scheduler.check_groups(settings["groups"])["team-a"]["homes"] is False  # as the service reads them
