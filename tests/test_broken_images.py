"""Issue 25, "fail fast, free the share": a start whose image cannot be pulled, or whose server
keeps exiting, ends within seconds with the reason in plain words (KubeSpawner waits for
``start_timeout``: kubespawner#795), its pod deleted, its quota share free again and the
failure on the audit record. The embedded node agent pulls only the images it is told exist
(``kubelet.images``) and reports the kubelet's waiting reasons and events."""

import json
import textwrap

import kubernetes
import pytest

from ptjaas_sandbox.cluster.images import ImageRegistry
from ptjaas_spawner.imageref import normalized
from ptjaas_spawner.startfailure import container_problem

from tests.hubutil import server, stop
from tests.test_start_failures import add_user, start_outcome
from tests.waiting import wait_for

IMAGE = "example.org/py:1"
MISSING = "example.org/py:gone"


# ---- the node's registry (pure) ------------------------------------------------------------

@pytest.mark.parametrize("image, available, reason", [
    ("example.org/py:1", None, None),
    ("example.org/py:gone", None, None),                       # no list: every image exists
    ("example.org/py:1", ["example.org/py:1"], None),
    ("example.org/py:gone", ["example.org/py:1"], "ErrImagePull"),
    ("quay.io/jupyter/base-notebook:2025", ["quay.io/jupyter/*"], None),
    ("python", ["docker.io/library/python:*"], None),          # as containerd names it
    ("Bad Image:1", None, "InvalidImageName"),
    ("example.org/Py:1", None, "InvalidImageName"),             # repository path must be lowercase
])
def test_the_node_pulls_what_its_registry_holds(image, available, reason):
    problem = ImageRegistry(available).problem(image)
    assert (problem[0] if problem else None) == reason
    if reason == "ErrImagePull":
        assert problem[1].endswith(f"{normalized(image)}: not found")


def test_normalized_names_are_containerds():
    assert normalized("python") == "docker.io/library/python:latest"
    assert normalized("jupyter/base:1") == "docker.io/jupyter/base:1"
    assert normalized("localhost:5000/x") == "localhost:5000/x:latest"
    assert normalized("quay.io/a/b@sha256:" + "0" * 64) == "quay.io/a/b@sha256:" + "0" * 64


# ---- what the start makes of the kubelet's report (pure) -----------------------------------

def pod(reason, message="", image=MISSING, restarts=0, exit_code=None):
    cs = {"name": "notebook", "image": image, "restartCount": restarts,
          "state": {"waiting": {"reason": reason, "message": message}}}
    if exit_code is not None:
        cs["lastState"] = {"terminated": {"exitCode": exit_code}}
    return {"spec": {"containers": [{"name": "notebook", "image": image}]}, "status": {"containerStatuses": [cs]}}


NOT_FOUND = f'rpc error: code = NotFound desc = failed to pull and unpack image "{MISSING}": not found'
PULL_EVENT = {"reason": "Failed", "message": f'Failed to pull image "{MISSING}": {NOT_FOUND}'}


@pytest.mark.parametrize("the_pod, events, kind, words", [
    (pod("ContainerCreating"), [], None, None),
    (pod("ErrImagePull", NOT_FOUND), [], "image", f"the image {MISSING} could not be pulled: not found"),
    (pod("ErrImagePull", "rpc error: code = Unknown desc = 401 Unauthorized"), [], "image",
     "the registry refused access"),
    (pod("ErrImagePull", "rpc error: code = Unknown desc = something odd"), [], None, None),   # one more try
    (pod("ErrImagePull", "dial tcp: lookup example.org: no such host"), [], None, None),      # may pass
    (pod("ImagePullBackOff", f'Back-off pulling image "{MISSING}"'), [PULL_EVENT], "image", "could not be pulled: not found"),
    (pod("ImagePullBackOff", f'Back-off pulling image "{MISSING}"'), [], "image", "the pull kept failing"),
    (pod("InvalidImageName", "couldn't parse image reference"), [], "image", "it is not a valid image name"),
    (pod("CrashLoopBackOff", "back-off", image=IMAGE, restarts=2, exit_code=1), [], "crash",
     "keeps exiting as soon as it starts (exit code 1, restarted 2 times)"),
])
def test_container_problems_in_plain_words(the_pod, events, kind, words):
    problem = container_problem(the_pod, events)
    if kind is None:
        assert problem is None
        return
    assert problem[0] == kind and words in problem[1], problem
    assert "Nothing is left running and your quota share is free again" in problem[1]


# ---- through a real hub on the embedded cluster ---------------------------------------------

@pytest.fixture(scope="module")
def hub(module_cluster, module_hub_factory, tmp_path_factory):
    module_cluster.kubelet.images = ImageRegistry([IMAGE])
    audit = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    images = {"python": {"display_name": "Python", "versions": {
        "1": {"image": IMAGE, "default": True}, "gone": {"image": MISSING}}}}
    sizes = {"small": {"display_name": "Small", "cpu_guarantee": 0.1, "cpu_limit": 1,
                       "mem_guarantee": "64Mi", "mem_limit": "1Gi"}}
    h = module_hub_factory(textwrap.dedent(f"""
        c.PtjaasSpawner.images = {images!r}
        c.PtjaasSpawner.sizes = {json.dumps(sizes)}
        c.PtjaasSpawner.quota_default = {{"servers": 1}}
        c.PtjaasSpawner.audit_log_file = {str(audit)!r}
        def crash_for_carl(spawner):  # carl's server program exits at once: a broken image
            if spawner.user.name == "carl":
                spawner.cmd = ["false"]
        c.Spawner.pre_spawn_hook = crash_for_carl
        """), cluster=module_cluster)
    h.audit_path = audit
    yield h
    module_cluster.kubelet.images = ImageRegistry()


def failures(hub, user):
    if not hub.audit_path.exists():
        return []
    lines = [json.loads(line) for line in hub.audit_path.read_text().splitlines()]
    return [r for r in lines if r.get("action") == "server-start-failed" and r.get("user") == user]


@pytest.mark.hub
def test_a_missing_image_fails_in_seconds_and_frees_the_share(hub, module_cluster):
    add_user(hub, "pat")
    ready, message, _, seconds, _ = start_outcome(hub, "pat", {"version": "gone"})
    assert not ready
    assert f"the image {MISSING} could not be pulled: not found" in message, message
    assert seconds < 30, seconds
    wait_for(lambda: server(hub, "pat") is None, timeout=30, message="pat's server gone")
    core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(
        config_file=str(module_cluster.kubeconfig_path)))
    wait_for(lambda: "jupyter-pat" not in [p.metadata.name for p in core.list_namespaced_pod("default").items],
             timeout=30, message="the pod deleted")
    [record] = failures(hub, "pat")
    assert record["reason"] == "image-pull" and record["image"] == MISSING
    # the quota share (1 server) is free again: the good version starts
    ready, message, _, _, _ = start_outcome(hub, "pat", {"version": "1"}, timeout=120)
    assert ready, message
    stop(hub, "pat")


@pytest.mark.hub
def test_a_server_that_keeps_exiting_fails_in_seconds(hub):
    add_user(hub, "carl")
    ready, message, _, seconds, _ = start_outcome(hub, "carl", {"version": "1"})
    assert not ready
    assert "keeps exiting as soon as it starts (exit code 1" in message and IMAGE in message, message
    assert seconds < 30, seconds
    wait_for(lambda: server(hub, "carl") is None, timeout=30, message="carl's server gone")
    assert [r["reason"] for r in failures(hub, "carl")] == ["crash-loop"]
