"""List and watch conformance: label/field selectors, limit/continue paging, watch semantics.

Watch from a resourceVersion (history replay, in order), without one (synthetic ADDED events),
timeoutSeconds, bookmarks, resumption from the last seen resourceVersion, selector-scoped
watches, and 410 Gone for a too-old resourceVersion, with both official clients.
"""

import asyncio
import json

import pytest
from kubernetes import watch
from kubernetes.client.rest import ApiException
from kubernetes_asyncio import client as ak8s
from kubernetes_asyncio import watch as awatch
from kubernetes_asyncio.client.rest import ApiException as AsyncApiException

from tests.cluster.k8s_conformance import OWN, SLEEP_FOREVER, assert_status, py_pod

pytestmark = pytest.mark.timeout(90)

LABELLED = {
    "a": {"app": "web", "tier": "front"},
    "b": {"app": "web", "tier": "back"},
    "c": {"app": "db"},
    "d": {},
}
SELECTIONS = [
    ("app=web", {"a", "b"}),
    ("app==web", {"a", "b"}),
    ("app!=web", {"c", "d"}),  # != also matches objects without the key
    ("tier in (front,back)", {"a", "b"}),
    ("tier in (front)", {"a"}),
    ("tier notin (front)", {"b", "c", "d"}),  # notin also matches objects without the key
    ("tier", {"a", "b"}),
    ("!tier", {"c", "d"}),
    ("app=web,tier!=front", {"b"}),
    ("app in (web,db),!tier", {"c"}),
    ("app=nothing", set()),
]


def names(objs):
    return {o.metadata.name for o in objs.items}


@pytest.fixture(scope="module")
def labelled_ns(kube):
    ns = kube.namespace("sel")
    for name, labels in LABELLED.items():
        kube.core.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": labels}})
    return ns


@pytest.mark.parametrize("selector,expected", SELECTIONS)
def test_label_selectors(kube, labelled_ns, selector, expected):
    assert names(kube.core.list_namespaced_config_map(labelled_ns, label_selector=selector, field_selector=OWN)) == expected


async def test_label_selectors_async(akube, labelled_ns):
    core = ak8s.CoreV1Api(akube)
    for selector, expected in SELECTIONS:
        got = await core.list_namespaced_config_map(labelled_ns, label_selector=selector, field_selector=OWN)
        assert names(got) == expected, selector


def test_prefixed_label_keys_as_kubespawner_uses_them(kube, ns):
    for user in ("ann", "bob"):
        kube.core.create_namespaced_config_map(ns, {"metadata": {"name": f"jupyter-{user}", "labels": {
            "hub.jupyter.org/username": user, "component": "singleuser-server",
            "app.kubernetes.io/managed-by": "kubespawner"}}})
    sel = "component=singleuser-server,hub.jupyter.org/username in (bob),app.kubernetes.io/managed-by"
    assert names(kube.core.list_namespaced_config_map(ns, label_selector=sel)) == {"jupyter-bob"}


def test_bad_selectors_are_400(kube, labelled_ns):
    e = kube.error(kube.core.list_namespaced_config_map, labelled_ns, label_selector="app in web")
    assert_status(e, 400, "BadRequest")
    e = kube.error(kube.core.list_namespaced_config_map, labelled_ns, field_selector="spec.nope=1")
    assert_status(e, 400, "BadRequest")


def test_field_selectors_on_metadata(kube, labelled_ns):
    assert names(kube.core.list_namespaced_config_map(
        labelled_ns, field_selector="metadata.name=b")) == {"b"}
    assert names(kube.core.list_namespaced_config_map(
        labelled_ns, field_selector="metadata.name!=b," + OWN)) == {"a", "c", "d"}
    everywhere = kube.core.list_config_map_for_all_namespaces(
        field_selector=f"metadata.namespace={labelled_ns}," + OWN)
    assert names(everywhere) == set(LABELLED)
    assert names(kube.core.list_config_map_for_all_namespaces(
        field_selector=f"metadata.namespace={labelled_ns},metadata.name=c",
        label_selector="app=db")) == {"c"}


def test_field_selectors_on_pods_phase_and_node(kube, ns):
    kube.create_pod(ns, py_pod("runs", SLEEP_FOREVER, grace=1))
    kube.create_pod(ns, py_pod("done", "pass"))
    kube.create_pod(ns, py_pod("stuck", "pass", node_selector={"no-such": "node"}))
    kube.wait_phase(ns, "runs", "Running")
    kube.wait_phase(ns, "done", "Succeeded")
    sel = kube.core.list_namespaced_pod
    assert names(sel(ns, field_selector="status.phase=Running")) == {"runs"}
    assert names(sel(ns, field_selector="status.phase=Succeeded")) == {"done"}
    assert names(sel(ns, field_selector="status.phase!=Succeeded")) == {"runs", "stuck"}
    assert names(sel(ns, field_selector="spec.nodeName=ptjaas-node-1")) == {"runs", "done"}
    assert names(sel(ns, field_selector="spec.nodeName=")) == {"stuck"}
    assert names(kube.core.list_pod_for_all_namespaces(
        field_selector=f"spec.nodeName=ptjaas-node-1,metadata.namespace={ns},status.phase=Running"
    )) == {"runs"}


def test_field_selectors_on_events_involved_object(kube, ns):
    def event(name, kind, obj, uid):
        kube.core.create_namespaced_event(ns, {
            "metadata": {"name": name}, "reason": "R", "message": "m", "type": "Normal",
            "involvedObject": {"kind": kind, "name": obj, "namespace": ns, "uid": uid}})

    event("e1", "Pod", "jupyter-ann", "u-1")
    event("e2", "Pod", "jupyter-bob", "u-2")
    event("e3", "PersistentVolumeClaim", "claim-ann", "u-3")
    ev = kube.core.list_namespaced_event
    assert names(ev(ns, field_selector="involvedObject.kind=Pod")) == {"e1", "e2"}
    assert names(ev(ns, field_selector="involvedObject.kind=Pod,involvedObject.name=jupyter-bob")) == {"e2"}
    assert names(ev(ns, field_selector="involvedObject.uid=u-3")) == {"e3"}
    assert names(kube.core.list_event_for_all_namespaces(
        field_selector=f"involvedObject.namespace={ns},involvedObject.kind!=Pod")) == {"e3"}


def test_limit_and_continue_paging(kube, ns):
    created = {f"page-{i}" for i in range(7)}
    for name in sorted(created, reverse=True):
        kube.core.create_namespaced_config_map(ns, {"metadata": {"name": name}})
    seen, token, pages = [], None, 0
    while True:
        page = kube.core.list_namespaced_config_map(ns, limit=3, _continue=token, field_selector=OWN)
        pages += 1
        assert len(page.items) <= 3
        seen += [c.metadata.name for c in page.items]
        token = page.metadata.var_continue
        if not token:
            break
        assert pages < 10
    assert pages == 3
    assert seen == sorted(created)  # every item exactly once, in key order
    e = kube.error(kube.core.list_namespaced_config_map, ns, limit=3, _continue="not-a-token")
    assert_status(e, 400, "BadRequest")


def test_continued_pages_show_the_first_page_snapshot(kube, ns):
    """Objects created, changed or deleted after the first page do not show up in later pages
    (the guarantee documented for `limit` in the API)."""
    for name in ("b", "c", "d", "e"):
        kube.core.create_namespaced_config_map(ns, {"metadata": {"name": name}, "data": {"v": "old"}})
    first = kube.core.list_namespaced_config_map(ns, limit=2, field_selector=OWN)
    assert [c.metadata.name for c in first.items] == ["b", "c"]
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "a"}})
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "f"}})
    kube.core.patch_namespaced_config_map("d", ns, {"data": {"v": "new"}})
    kube.core.delete_namespaced_config_map("e", ns)
    rest = kube.core.list_namespaced_config_map(ns, limit=10, _continue=first.metadata.var_continue,
                                              field_selector=OWN)
    assert [(c.metadata.name, c.data) for c in rest.items] == [("d", {"v": "old"}), ("e", {"v": "old"})]
    assert rest.metadata.resource_version == first.metadata.resource_version
    now = kube.core.list_namespaced_config_map(ns, field_selector=OWN)
    assert [c.metadata.name for c in now.items] == ["a", "b", "c", "d", "f"]


async def test_paging_async(akube, ns, kube):
    for i in range(5):
        kube.core.create_namespaced_config_map(ns, {"metadata": {"name": f"p{i}"}})
    core = ak8s.CoreV1Api(akube)
    first = await core.list_namespaced_config_map(ns, limit=2, field_selector=OWN)
    assert len(first.items) == 2 and first.metadata._continue
    rest = await core.list_namespaced_config_map(ns, limit=10, _continue=first.metadata._continue,
                                                field_selector=OWN)
    assert not rest.metadata._continue
    assert [c.metadata.name for c in first.items + rest.items] == [f"p{i}" for i in range(5)]


# --- watch (sync client) --------------------------------------------------------------------

def collect(func, *args, count=None, **kwargs):
    """Events of one watch (ends on server-side timeout, or after `count` events)."""
    w, events = watch.Watch(), []
    kwargs.setdefault("_request_timeout", 30)
    for ev in w.stream(func, *args, **kwargs):
        events.append(ev)
        if count is not None and len(events) >= count:
            w.stop()
    return w, events


def summary(events):
    return [(e["type"], e["raw_object"]["metadata"]["name"]) for e in events]


def test_watch_replays_history_in_order(kube, ns):
    rv0 = kube.core.list_namespaced_config_map(ns).metadata.resource_version
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "w"}, "data": {"v": "1"}})
    kube.core.patch_namespaced_config_map("w", ns, {"data": {"v": "2"}})
    kube.core.delete_namespaced_config_map("w", ns)
    _, events = collect(kube.core.list_namespaced_config_map, ns, resource_version=rv0,
                        timeout_seconds=5, count=3)
    assert summary(events) == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]
    assert [e["object"].data for e in events[:2]] == [{"v": "1"}, {"v": "2"}]
    rvs = [int(e["object"].metadata.resource_version) for e in events]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3 and rvs[0] > int(rv0)


def test_watch_without_resource_version_starts_with_current_state(kube, ns):
    for name in ("x", "y"):
        kube.core.create_namespaced_config_map(ns, {"metadata": {"name": name}})
    _, events = collect(kube.core.list_namespaced_config_map, ns, timeout_seconds=5, count=2, field_selector=OWN)
    assert sorted(summary(events)) == [("ADDED", "x"), ("ADDED", "y")]
    _, events = collect(kube.core.list_namespaced_config_map, ns, resource_version="0",
                        timeout_seconds=5, count=2, field_selector=OWN)
    assert sorted(summary(events)) == [("ADDED", "x"), ("ADDED", "y")]


def test_watch_timeout_seconds_ends_the_stream(kube, ns):
    rv0 = kube.core.list_namespaced_config_map(ns).metadata.resource_version
    # a watch with nothing to report ends by itself (the client would hang until
    # _request_timeout, then raise, if the server ignored timeoutSeconds)
    _, events = collect(kube.core.list_namespaced_config_map, ns, resource_version=rv0,
                        timeout_seconds=1, _request_timeout=15)
    assert [e["type"] for e in events if e["type"] != "BOOKMARK"] == []


def test_watch_resumes_from_last_seen_resource_version(kube, ns):
    rv0 = kube.core.list_namespaced_config_map(ns).metadata.resource_version
    for i in range(4):
        kube.core.create_namespaced_config_map(ns, {"metadata": {"name": f"r{i}"}})
    # (the real control plane's root-CA publisher may add kube-root-ca.crt after rv0: left out)
    w, first = collect(kube.core.list_namespaced_config_map, ns, resource_version=rv0,
                       timeout_seconds=5, count=2, field_selector=OWN)
    assert summary(first) == [("ADDED", "r0"), ("ADDED", "r1")]
    assert w.resource_version == first[-1]["object"].metadata.resource_version
    kube.core.delete_namespaced_config_map("r0", ns)
    _, rest = collect(kube.core.list_namespaced_config_map, ns, resource_version=w.resource_version,
                      timeout_seconds=5, count=3, field_selector=OWN)
    assert summary(rest) == [("ADDED", "r2"), ("ADDED", "r3"), ("DELETED", "r0")]


def test_watch_with_selectors(kube, ns):
    rv0 = kube.core.list_namespaced_config_map(ns).metadata.resource_version
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "in", "labels": {"w": "yes"}}})
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "out", "labels": {"w": "no"}}})
    kube.core.patch_namespaced_config_map("in", ns, {"data": {"a": "1"}})
    kube.core.patch_namespaced_config_map("out", ns, {"data": {"a": "1"}})
    # relabelling out of the selection is seen as DELETED by a selector-scoped watcher
    kube.core.patch_namespaced_config_map("in", ns, {"metadata": {"labels": {"w": "no"}}})
    _, by_label = collect(kube.core.list_namespaced_config_map, ns, resource_version=rv0,
                          label_selector="w=yes", timeout_seconds=5, count=3)
    assert summary(by_label) == [("ADDED", "in"), ("MODIFIED", "in"), ("DELETED", "in")]
    _, by_field = collect(kube.core.list_namespaced_config_map, ns, resource_version=rv0,
                          field_selector="metadata.name=out", timeout_seconds=5, count=2)
    assert summary(by_field) == [("ADDED", "out"), ("MODIFIED", "out")]


def test_watch_all_namespaces_sees_only_later_changes(kube, ns):
    rv0 = kube.core.list_config_map_for_all_namespaces().metadata.resource_version
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "global"}})
    _, events = collect(kube.core.list_config_map_for_all_namespaces, resource_version=rv0,
                        field_selector=f"metadata.namespace={ns}," + OWN, timeout_seconds=5, count=1)
    assert summary(events) == [("ADDED", "global")]
    assert events[0]["object"].metadata.namespace == ns


def test_watch_bookmarks_only_when_allowed(kube, ns):
    rv0 = kube.core.list_namespaced_config_map(ns).metadata.resource_version
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "bm"}})
    _, events = collect(kube.core.list_namespaced_config_map, ns, resource_version=rv0,
                        allow_watch_bookmarks=True, timeout_seconds=2)
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert summary([e for e in events if e["type"] != "BOOKMARK"]) == [("ADDED", "bm")]
    # a server sends bookmarks when it likes (a real one about once a minute): none is promised here
    for b in bookmarks:
        obj = b["raw_object"]
        assert obj["kind"] == "ConfigMap" and obj["apiVersion"] == "v1"
        assert int(obj["metadata"]["resourceVersion"]) >= int(rv0)
    _, plain = collect(kube.core.list_namespaced_config_map, ns, resource_version=rv0,
                       timeout_seconds=1)
    assert "BOOKMARK" not in [e["type"] for e in plain]


# --- watch (async client) -------------------------------------------------------------------

async def test_async_watch_streams_live_changes_in_order(akube, kube, ns):
    core = ak8s.CoreV1Api(akube)
    rv0 = (await core.list_namespaced_config_map(ns)).metadata.resource_version
    got = []

    async def watcher():
        async with awatch.Watch() as w:
            async for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv0,
                                     timeout_seconds=20):
                got.append((ev["type"], ev["object"].metadata.name, ev["object"].data))
                if len(got) == 4:
                    w.stop()
                    break
        return w.resource_version

    task = asyncio.ensure_future(watcher())
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "live"}, "data": {"n": "1"}})
    await core.patch_namespaced_config_map("live", ns, {"data": {"n": "2"}})
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "live2"}})
    await core.delete_namespaced_config_map("live", ns)
    last_rv = await asyncio.wait_for(task, 20)
    assert [(t, n) for t, n, _ in got] == [("ADDED", "live"), ("MODIFIED", "live"),
                                           ("ADDED", "live2"), ("DELETED", "live")]
    assert got[1][2] == {"n": "2"}
    assert int(last_rv) > int(rv0)


async def test_concurrent_writes_get_distinct_ordered_versions(akube, ns):
    core = ak8s.CoreV1Api(akube)
    rv0 = (await core.list_namespaced_config_map(ns)).metadata.resource_version
    made = await asyncio.gather(*(core.create_namespaced_config_map(ns, {"metadata": {"name": f"c{i:02}"}})
                                  for i in range(20)))
    versions = sorted(int(m.metadata.resource_version) for m in made)
    assert len(set(versions)) == 20 and versions[0] > int(rv0)
    seen = []
    async with awatch.Watch() as w:
        async for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv0,
                                 timeout_seconds=5, _request_timeout=30):
            seen.append(int(ev["object"].metadata.resource_version))
            if len(seen) == 20:
                w.stop()
                break
    assert seen == versions  # every write, once, in resourceVersion order


async def test_async_event_watch_like_kubespawner(akube, kube, ns):
    core = ak8s.CoreV1Api(akube)
    rv0 = (await core.list_namespaced_event(ns, field_selector="involvedObject.kind=Pod")
           ).metadata.resource_version
    kube.create_pod(ns, py_pod("evented", "pass"))
    kube.wait_phase(ns, "evented", "Succeeded")
    reasons = []
    async with awatch.Watch() as w:
        async for ev in w.stream(core.list_namespaced_event, ns, field_selector="involvedObject.kind=Pod",
                                 resource_version=rv0, timeout_seconds=5, _request_timeout=30):
            assert ev["object"].involved_object.name == "evented"
            reasons.append(ev["object"].reason)
            if "Started" in reasons:
                w.stop()
                break
    assert reasons[0] == "Scheduled" and "Started" in reasons


async def test_async_watch_timeout_ends_iteration(akube, ns):
    core = ak8s.CoreV1Api(akube)
    # the cluster's own kube-root-ca.crt may be written into a new namespace at any moment
    rv0 = (await core.list_namespaced_config_map(ns, field_selector=OWN)).metadata.resource_version
    events = []
    async with awatch.Watch() as w:
        async for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv0, field_selector=OWN,
                                 timeout_seconds=1, _request_timeout=15):
            events.append(ev["type"])
    assert [t for t in events if t != "BOOKMARK"] == []


# --- 410 Gone -------------------------------------------------------------------------------

def watch_error(kube, ns, start_rv):
    """The first line of a raw watch from start_rv if it is an ERROR event (else None)."""
    resp = kube.raw("GET", f"/api/v1/namespaces/{ns}/configmaps",
                    params={"watch": "true", "resourceVersion": start_rv, "timeoutSeconds": "1"},
                    stream=True)
    with resp:
        if resp.status_code == 410:
            return {"type": "ERROR", "object": resp.json(), "http": 410}
        assert resp.status_code == 200, resp.text
        for line in resp.iter_lines():
            if line:
                ev = json.loads(line)
                return ev if ev["type"] == "ERROR" else None
    return None


@pytest.fixture(scope="module")
def expired(kube, module_cluster):
    """A namespace and a resourceVersion the API server reports as too old (after compaction,
    as etcd compacts history)."""
    ns = kube.namespace("gone")
    start_rv = kube.core.list_namespaced_config_map(ns).metadata.resource_version
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "churn"}, "data": {"i": "0"}})
    for i in range(3):
        kube.core.patch_namespaced_config_map("churn", ns, {"data": {"i": str(i)}})
    assert watch_error(kube, ns, start_rv) is None  # still in the history
    module_cluster.compact()
    event = watch_error(kube, ns, start_rv)
    assert event, "a watch from a compacted resourceVersion must fail with 410"
    return ns, start_rv, event


def test_too_old_resource_version_is_an_expired_status_in_the_stream(expired):
    ns, start_rv, event = expired
    assert event.get("http") is None, "real API servers answer 200 and send an ERROR event"
    assert event["type"] == "ERROR"
    status = event["object"]
    assert status["kind"] == "Status" and status["status"] == "Failure"
    assert status["code"] == 410 and status["reason"] in ("Expired", "Gone")
    assert "too old resource version" in status["message"]


def test_sync_watch_raises_410_for_too_old_resource_version(kube, expired):
    ns, start_rv, _ = expired
    with pytest.raises(ApiException) as err:
        collect(kube.core.list_namespaced_config_map, ns, resource_version=start_rv,
                timeout_seconds=2)
    assert err.value.status == 410


async def test_async_watch_raises_410_for_too_old_resource_version(akube, expired):
    ns, start_rv, _ = expired
    core = ak8s.CoreV1Api(akube)
    with pytest.raises(AsyncApiException) as err:
        async with awatch.Watch() as w:
            async for _ in w.stream(core.list_namespaced_config_map, ns, resource_version=start_rv,
                                    timeout_seconds=2):
                pass
    assert err.value.status == 410


def test_relist_and_rewatch_recovers_after_410(kube, expired):
    ns, _, _ = expired
    fresh = kube.core.list_namespaced_config_map(ns, field_selector=OWN)
    assert names(fresh) == {"churn"}
    kube.core.patch_namespaced_config_map("churn", ns, {"data": {"i": "final"}})
    _, events = collect(kube.core.list_namespaced_config_map, ns,
                        resource_version=fresh.metadata.resource_version, timeout_seconds=5,
                        count=1)
    assert summary(events) == [("MODIFIED", "churn")]
    assert events[0]["object"].data == {"i": "final"}
