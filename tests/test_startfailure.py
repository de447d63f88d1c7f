"""Start-failure reasons and log redaction: pure, table-driven."""

import logging
import pprint

import pytest

from ptjaas_spawner import redact
from ptjaas_spawner.startfailure import (
    HOME_PROVISIONING, claim_problem, events_of, progress_message, scheduling_state, start_timeout_message,
    unschedulable_message, unschedulable_reason)

CLAIM = {"metadata": {"name": "claim-erin", "uid": "new-uid", "creationTimestamp": "2026-01-01T10:00:00Z"},
         "spec": {}}


def ev(reason, message, type_="Warning", uid="new-uid", name="claim-erin", kind="PersistentVolumeClaim",
       when="2026-01-01T10:00:05Z"):
    return {"type": type_, "reason": reason, "message": message, "lastTimestamp": when,
            "involvedObject": {"kind": kind, "name": name, "uid": uid}}


def test_claim_events_are_matched_by_uid_and_time():
    old = ev("ProvisioningFailed", 'storageclass "gold" not found', uid="old-uid", when="2026-01-01T09:00:00Z")
    assert claim_problem(CLAIM, [old]) == ""
    new = ev("ProvisioningFailed", "disk full")
    assert claim_problem(CLAIM, [old, new]) == "Your home volume (claim-erin) cannot be provisioned: ProvisioningFailed: disk full"
    # an event without uid counts only if not older than the claim
    no_uid_old = dict(old, involvedObject={"kind": "PersistentVolumeClaim", "name": "claim-erin"})
    no_uid_new = dict(new, involvedObject={"kind": "PersistentVolumeClaim", "name": "claim-erin"})
    assert events_of(CLAIM, [no_uid_old, no_uid_new]) == [no_uid_new]
    # another object's events never count
    assert events_of(CLAIM, [ev("ProvisioningFailed", "x", name="claim-other")]) == []


def test_no_storage_class_names_the_setting():
    failed = ev("FailedBinding", "no persistent volumes available for this claim and no storage class is set",
                type_="Normal")
    message = claim_problem(CLAIM, [failed], storage_class=None)
    assert "c.PtjaasSpawner.home_volume_storage_class" in message and "default StorageClass" in message
    # with a class configured that event does not mean "no class"
    assert claim_problem(CLAIM, [failed], storage_class="gold") == ""


@pytest.mark.parametrize("message, words", [
    ("0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: "
     "3 No preemption victims found for incoming pod.", "no node has a free GPU right now"),
    ("0/2 nodes are available: 1 Insufficient cpu, 1 Insufficient memory. preemption: x",
     "no node has enough free CPU right now; no node has enough free memory right now"),
    ("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: x",
     "no node matches this size's node selector"),
    ("0/1 nodes are available: 1 node(s) had untolerated taint {gpu: true}. preemption: x",
     "the nodes that could run it are reserved (tainted) for other work"),
    ("0/1 nodes are available: 1 Too many pods. preemption: x", "no node has room for another server right now"),
    ("0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: x", ""),
    ('0/1 nodes are available: persistentvolume "pvc-1e38" not found. not found', ""),
])
def test_scheduler_messages_in_plain_words(message, words):
    assert unschedulable_reason(message) == words


def test_scheduling_state_and_progress():
    fs = ev("FailedScheduling", "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.", kind="Pod")
    vol = ev("FailedScheduling", "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
             kind="Pod")
    ok = ev("Scheduled", "Successfully assigned default/jupyter-x to node-1", type_="Normal", kind="Pod")
    assert scheduling_state([fs])[0] == "unschedulable"
    assert scheduling_state([vol])[0] == "waiting-volume"
    assert scheduling_state([fs, ok])[0] == "scheduled"
    assert scheduling_state([fs], {"spec": {"nodeName": "n1"}})[0] == "scheduled"
    assert scheduling_state([])[0] == "pending"
    assert progress_message(vol) == HOME_PROVISIONING and progress_message(fs) == ""


@pytest.mark.parametrize("state, message, words", [
    ("unschedulable", "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: x",
     "the cluster could not place it (no node has a free GPU right now)"),
    ("waiting-volume", "pod has unbound immediate PersistentVolumeClaims", "its home volume was not ready"),
    ("scheduled", "", "placed on a node but did not become ready"),
    ("pending", "", "the cluster did not place it"),
])
def test_a_start_out_of_time_is_told_in_words(state, message, words):
    text = start_timeout_message(300, state, message)
    assert text.startswith("Your server did not start within 300 s: ") and words in text, text
    assert "Insufficient" not in text and "preemption" not in text


TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("text", [
    pprint.pformat({"env": [{"name": "JUPYTERHUB_API_TOKEN", "value": TOKEN, "value_from": None}]}, width=40),
    '{"name": "JUPYTERHUB_API_TOKEN", "value": "%s"}' % TOKEN,
    "'JPY_API_TOKEN': '%s'" % TOKEN,
    "env JUPYTERHUB_API_TOKEN=%s started" % TOKEN,
    "Authorization: token %s" % TOKEN,
    '"client_secret": "%s"' % TOKEN,
])
def test_secrets_are_redacted(text):
    out = redact.redact(text)
    assert TOKEN not in out and redact.MASK in out


def test_remembered_values_are_redacted_in_any_shape_and_the_filter_keeps_records():
    redact.remember("tok-" + TOKEN, owner="test")
    try:
        record = logging.LogRecord("JupyterHub", logging.ERROR, __file__, 1, "Failed for %s", ("x tok-%s y" % TOKEN,),
                                   None)
        assert redact.FILTER.filter(record) is True
        assert TOKEN not in record.getMessage() and record.getMessage().startswith("Failed for x ")
    finally:
        redact.forget("test")
    assert redact.redact("plain words stay") == "plain words stay"


def test_each_remembered_value_is_redacted_among_many_whatever_surrounds_it():
    tokens = [f"{i:04d}" + TOKEN[4:] for i in range(300)]
    odd = "p@ss/word+value=="  # not only token characters: searched for on its own
    before = redact.remembered()
    for i, token in enumerate(tokens):
        redact.remember(token, owner=("many", i))
    redact.remember(odd, owner=("many", "odd"))
    try:
        text = (f"env X={tokens[7]} in-a-longer-run-{tokens[150]}-x url ?a={tokens[299]}&b=1 "
                f"'{odd}' {TOKEN[:20]}")
        out = redact.redact(text)
        assert not any(t in out for t in (tokens[7], tokens[150], tokens[299], odd)), out
        assert out.count(redact.MASK) == 4 and out.endswith(TOKEN[:20]) and "in-a-longer-run-" in out
    finally:
        for i in range(300):
            redact.forget(("many", i))
        redact.forget(("many", "odd"))
    assert redact.remembered() == before and redact.redact(text) == text  # forgotten: shown again


def test_api_unreachable_is_told_from_other_failures():
    from kubernetes_asyncio.client.rest import ApiException
    from tornado import web

    from ptjaas_spawner.reflectors import is_unreachable

    assert is_unreachable(ConnectionRefusedError(111, "Connect call failed"))
    assert is_unreachable(ApiException(status=503, reason="Service Unavailable"))
    try:
        try:
            raise ConnectionResetError(104, "reset")
        except ConnectionResetError as e:
            raise RuntimeError("wrapped") from e
    except RuntimeError as e:
        assert is_unreachable(e)
    assert not is_unreachable(TimeoutError("pod default/jupyter-x did not start in 300 seconds!"))
    assert not is_unreachable(ApiException(status=403, reason="Forbidden"))
    assert not is_unreachable(web.HTTPError(403, "quota"))


def test_the_unschedulable_message_says_about_how_long_it_waited():
    """Issue 19: a 30 s fail-fast ends 30.5-30.7 s after the pod was made: 'about 31 s', not a
    precise-sounding '30 s'."""
    text = unschedulable_message("no node has a free GPU right now", 30.6)
    assert "(the cluster could not place it for about 31 s)" in text
    assert "your quota share is free again" in text


def test_redact_forgets_a_stopped_servers_token_and_remembers_a_bounded_number():
    redact.remember("stopped-server-token-0123456789", owner="spawner-a")
    assert redact.redact("x stopped-server-token-0123456789") == f"x {redact.MASK}"
    redact.forget("spawner-a")  # PtjaasSpawner.stop: JupyterHub revoked the token
    assert "stopped-server-token-0123456789" in redact.redact("x stopped-server-token-0123456789")
    before = redact.remembered()
    try:
        for i in range(redact.MAX_KNOWN + 50):
            redact.remember(f"many-starts-token-{i:08d}", owner=("many", i))
        assert redact.remembered() == redact.MAX_KNOWN  # bounded, however many servers start
        assert "many-starts-token-00000000" in redact.redact("many-starts-token-00000000")  # the oldest went first
        newest = f"many-starts-token-{redact.MAX_KNOWN + 49:08d}"
        assert redact.redact(newest) == redact.MASK
    finally:
        for i in range(redact.MAX_KNOWN + 50):
            redact.forget(("many", i))
    assert redact.remembered() <= before
