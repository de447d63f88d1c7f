"""The embedded cluster's own keeping of state (embedded-only): events expire after the event
TTL, as kube-apiserver's ``--event-ttl`` has them, and what was written is on disk before a
clean stop (a cluster that is killed comes back with it), through snapshot + journal."""

import shutil

import pytest
from kubernetes import watch

from tests.cluster.k8s_conformance import Kube
from tests.waiting import wait_for

from tests.clusterutil import running_cluster

pytestmark = pytest.mark.timeout(120)


def _event(ns, name, reason="Checked"):
    return {"metadata": {"name": name}, "involvedObject": {"kind": "ConfigMap", "namespace": ns, "name": "cfg",
                                                           "uid": "0b5e-" + name},
            "reason": reason, "message": "looked at", "type": "Normal", "count": 1,
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z"}


def test_events_expire_after_the_event_ttl_and_watchers_see_them_go(tmp_path):
    with running_cluster(tmp_path / "k8s", event_ttl=2) as cluster:
        kube = Kube(cluster)
        try:
            ns = kube.namespace()
            kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "cfg"}})
            created = kube.core.create_namespaced_event(ns, _event(ns, "short-lived"))
            seen = []
            for ev in watch.Watch().stream(kube.core.list_namespaced_event, ns, timeout_seconds=20,
                                           resource_version=created.metadata.resource_version):
                seen.append((ev["type"], ev["object"].metadata.name))
                if ev["type"] == "DELETED":
                    break
            assert seen == [("DELETED", "short-lived")]
            assert kube.core.list_namespaced_event(ns).items == []
            assert kube.core.read_namespaced_config_map("cfg", ns).metadata.name == "cfg"   # only events expire
        finally:
            kube.close()


def test_what_was_written_survives_a_crash_without_a_clean_stop(tmp_path, monkeypatch):
    from ptjaas_sandbox.cluster import journal
    monkeypatch.setattr(journal, "MIN_JOURNAL_BYTES", 0)   # fold the journal into snapshots early, too
    crashed = tmp_path / "crashed"
    with running_cluster(tmp_path / "k8s") as first:
        kube = Kube(first)
        try:
            ns = kube.namespace()
            for i in range(30):
                kube.core.create_namespaced_config_map(ns, {"metadata": {"name": f"cm-{i}"}, "data": {"i": str(i)}})
            kube.core.patch_namespaced_config_map("cm-3", ns, {"data": {"i": "three"}})
            kube.core.delete_namespaced_config_map("cm-4", ns)
            kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "big"}, "data": {"x": "y" * 200000}})
            kube.core.delete_namespaced_config_map("cm-5", ns)
            last_rv = int(kube.core.list_namespaced_config_map(ns).metadata.resource_version)
            wait_for(lambda: not first.call(lambda: first.store.dirty), timeout=10, message="the changes saved")
            shutil.copytree(first.state_dir, crashed, ignore=shutil.ignore_patterns("pods", "volumes"))
        finally:
            kube.close()
    with running_cluster(crashed) as second:   # the copy taken while the first one ran: as after a kill
        kube = Kube(second)
        try:
            names = {cm.metadata.name: cm.data for cm in kube.core.list_namespaced_config_map(ns).items}
            assert {f"cm-{i}" for i in range(30)} - {"cm-4", "cm-5"} | {"big"} <= set(names)
            assert "cm-4" not in names and "cm-5" not in names
            assert names["cm-3"] == {"i": "three"} and len(names["big"]["x"]) == 200000
            newer = kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "after"}})
            assert int(newer.metadata.resource_version) > last_rv
        finally:
            kube.close()
