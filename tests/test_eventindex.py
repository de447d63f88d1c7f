"""The pod events a start looks at come from an index updated incrementally from KubeSpawner's
event reflector (issue 16 point 1): new events are found without going over the namespace's
events again, a relist is indexed anew, deleted events drop out."""

from ptjaas_spawner.eventindex import EventIndex, events_about


def ev(name, pod, when, type_="Normal", ns="default", kind="Pod"):
    return {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}"}, "type": type_,
            "involvedObject": {"kind": kind, "name": pod, "namespace": ns}, "lastTimestamp": when}


def put(resources, event):
    resources[f"{event['metadata']['namespace']}/{event['metadata']['name']}"] = event


def names(events):
    return [e["metadata"]["name"] for e in events]


def test_new_events_are_found_from_the_end_only():
    resources = {}
    for i in range(1000):
        put(resources, ev(f"other.{i}", f"jupyter-u{i}", "2026-01-01T00:00:00Z"))
    index = EventIndex()
    assert index.about(resources, "default", "Pod", "jupyter-ann") == []

    class Counting(dict):
        looked = 0

        def __reversed__(self):
            for key in super().__reversed__():
                Counting.looked += 1
                yield key

    counting = Counting(resources)
    index = EventIndex()
    index.about(counting, "default", "Pod", "jupyter-ann")  # the first look indexes the list once
    put(counting, ev("jupyter-ann.2", "jupyter-ann", "2026-01-01T00:00:02Z", "Warning"))
    put(counting, ev("jupyter-ann.1", "jupyter-ann", "2026-01-01T00:00:01Z"))
    Counting.looked = 0
    assert names(index.about(counting, "default", "Pod", "jupyter-ann")) == ["jupyter-ann.1", "jupyter-ann.2"]
    assert Counting.looked == 3  # the two new keys and the newest one indexed before
    Counting.looked = 0
    assert len(index.about(counting, "default", "Pod", "jupyter-ann")) == 2
    assert Counting.looked == 1


def test_an_updated_event_is_read_fresh_and_a_deleted_one_drops_out():
    resources = {}
    put(resources, ev("jupyter-bo.1", "jupyter-bo", "2026-01-01T00:00:01Z"))
    index = EventIndex()
    assert len(index.about(resources, "default", "Pod", "jupyter-bo")) == 1
    put(resources, dict(ev("jupyter-bo.1", "jupyter-bo", "2026-01-01T00:00:09Z"), count=3))
    assert index.about(resources, "default", "Pod", "jupyter-bo")[0]["count"] == 3
    del resources["default/jupyter-bo.1"]
    assert index.about(resources, "default", "Pod", "jupyter-bo") == []


def test_a_relist_is_indexed_anew_and_objects_are_told_apart():
    index = EventIndex()
    first = {}
    put(first, ev("jupyter-cy.1", "jupyter-cy", "2026-01-01T00:00:01Z"))
    assert len(index.about(first, "default", "Pod", "jupyter-cy")) == 1
    relisted = {}
    put(relisted, ev("jupyter-cy.2", "jupyter-cy", "2026-01-01T00:00:02Z"))
    put(relisted, ev("jupyter-cy.3", "jupyter-cy", "2026-01-01T00:00:03Z", ns="team-a"))
    put(relisted, ev("claim-cy.1", "jupyter-cy", "2026-01-01T00:00:03Z", kind="PersistentVolumeClaim"))
    assert names(index.about(relisted, "default", "Pod", "jupyter-cy")) == ["jupyter-cy.2"]
    assert names(index.about(relisted, "team-a", "Pod", "jupyter-cy")) == ["jupyter-cy.3"]


def test_one_index_per_reflector_and_none_without_events():
    resources = {}
    put(resources, ev("jupyter-di.1", "jupyter-di", "2026-01-01T00:00:01Z"))
    class Reflector:  # KubeSpawner's EventReflector holds ``resources`` the same way
        pass
    reflector = Reflector()
    reflector.resources = resources
    assert len(events_about(reflector, "default", "Pod", "jupyter-di")) == 1
    assert events_about(None, "default", "Pod", "jupyter-di") == []
