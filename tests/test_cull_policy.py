"""Pure culling policy: per-size / per-image timeouts, max ages, kernel culling args, config."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from ptjaas_spawner.culler import (
    CullPolicy, PolicyError, decide_server, from_z2jh_values, kernel_culling_args, service_config,
)
from ptjaas_spawner.culler.app import PtjaasCuller
from ptjaas_spawner.culler.policy import decide_user, snapshots_to_prune, usage_entry

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
SIZES = {
    "cpu-small": {"display_name": "CPU", "cpu_limit": 2, "cull_idle_timeout": 4 * 3600},
    "gpu-1": {"display_name": "1 GPU", "gpu": 1, "cull_idle_timeout": 1800, "cull_max_age": 8 * 3600,
              "kernel_idle_timeout": 600},
    "gpu-2": {"display_name": "2 GPUs", "gpu": 2},
}
IMAGES = {
    "pytorch": {"display_name": "PyTorch", "cull_idle_timeout": 900},
    "datascience": {"display_name": "DS"},
    "forever": {"cull_idle_timeout": 0},
}


def policy(**kw):
    return CullPolicy.from_dict({"sizes": SIZES, "images": IMAGES}, timeout=3600, **kw)


def server(size=None, image=None, idle_min=0.0, age_min=60.0, **extra):
    opts = {}
    if size:
        opts["size"] = size
    if image:
        opts["image"] = image
        opts["version"] = "2024.10"
    model = {
        "name": "", "ready": True, "pending": None, "url": "/user/x/", "user_options": opts,
        "started": (NOW - timedelta(minutes=age_min)).isoformat().replace("+00:00", "Z"),
        "last_activity": (NOW - timedelta(minutes=idle_min)).isoformat().replace("+00:00", "Z"),
    }
    model.update(extra)
    return model


def decide(p, srv, name=""):
    return decide_server(p, "alice", name, srv, NOW)


def test_gpu_size_culled_after_its_own_short_timeout_cpu_kept():
    p = policy()
    gpu = decide(p, server("gpu-1", "datascience", idle_min=31))
    assert gpu.cull and gpu.kind == "idle" and "gpu-1" in gpu.reason
    cpu = decide(p, server("cpu-small", "datascience", idle_min=31))
    assert not cpu.cull and cpu.kind == "keep"
    # the CPU size's 4h, not the global 1h, applies
    assert not decide(p, server("cpu-small", "datascience", idle_min=3 * 60)).cull
    assert decide(p, server("cpu-small", "datascience", idle_min=4 * 60 + 1)).cull


def test_active_gpu_server_is_kept():
    assert not decide(policy(), server("gpu-1", idle_min=5)).cull


def test_unknown_or_missing_size_falls_back_to_global_timeout():
    p = policy()
    for srv in (server(None, idle_min=59), server("removed-size", idle_min=59)):
        assert not decide(p, srv).cull
    v = decide(p, server("removed-size", idle_min=61))
    assert v.cull and "removed-size" in v.reason
    # a size without its own timeout (gpu-2) also inherits the global one
    assert decide(p, server("gpu-2", idle_min=61)).cull and not decide(p, server("gpu-2", idle_min=59)).cull


def test_image_timeout_stricter_one_wins():
    p = policy()
    # pytorch (15 min) is stricter than cpu-small's 4h and gpu-1's 30 min
    assert decide(p, server("cpu-small", "pytorch", idle_min=16)).cull
    assert decide(p, server("gpu-1", "pytorch", idle_min=16)).cull
    # an image with 0 (no limit) does not lift the size's limit; alone it disables idle culling
    assert decide(p, server("gpu-1", "forever", idle_min=31)).cull
    assert not decide(p, server(None, "forever", idle_min=10 * 60)).cull


def test_max_age_per_size_culls_active_servers():
    p = policy()
    v = decide(p, server("gpu-1", idle_min=0, age_min=8 * 60 + 1))
    assert v.cull and v.kind == "max-age"
    assert not decide(p, server("cpu-small", idle_min=0, age_min=100 * 60)).cull  # no global max age
    assert decide(policy(max_age=3600), server("cpu-small", idle_min=0, age_min=61)).cull


def test_pending_not_ready_and_no_activity():
    p = policy()
    assert decide(p, server("gpu-1", idle_min=100, pending="stop")).kind == "skip"
    assert decide(p, server("gpu-1", idle_min=100, ready=False)).kind == "skip"
    # no last_activity: the start time counts
    assert decide(p, server("gpu-1", age_min=31, last_activity=None)).cull
    assert not decide(p, server("gpu-1", age_min=29, last_activity=None)).cull


def test_named_servers_count_and_can_be_excluded():
    srv = server("gpu-1", idle_min=40)
    assert decide(policy(), srv, name="training").cull
    assert not decide(policy(cull_named_servers=False), srv, name="training").cull
    assert decide(policy(cull_named_servers=False), srv).cull
    assert decide(policy(), srv, name="training").log_name == "alice/training"


def test_form_style_option_lists_and_custom_option_keys():
    p = CullPolicy.from_dict({"sizes": SIZES, "option_keys": {"size": "profile"}}, timeout=3600)
    srv = server(idle_min=40)
    srv["user_options"] = {"profile": ["gpu-1"]}
    assert decide(p, srv).cull and decide(p, srv).size == "gpu-1"


def test_users_culled_only_when_on_and_no_servers_left():
    p = policy()
    user = {"name": "bob", "admin": False, "created": "2025-01-01T00:00:00Z",
            "last_activity": "2025-06-01T00:00:00Z"}
    assert decide_user(p, user, 0, NOW) == (False, "cull-users is off")
    p = policy(cull_users=True, cull_admin_users=False)
    assert decide_user(p, user, 0, NOW)[0]
    assert not decide_user(p, user, 1, NOW)[0]
    assert not decide_user(p, dict(user, admin=True), 0, NOW)[0]


@pytest.mark.parametrize("bad, key", [
    ({"gpu-1": {"cull_idle_timeout": -5}}, "c.PtjaasSpawner.sizes['gpu-1']['cull_idle_timeout']"),
    ({"gpu-1": {"cull_max_age": "1h"}}, "c.PtjaasSpawner.sizes['gpu-1']['cull_max_age']"),
    ({"gpu-1": {"kernel_idle_timeout": 1.5}}, "c.PtjaasSpawner.sizes['gpu-1']['kernel_idle_timeout']"),
    ({"gpu-1": {"gpu": -1}}, "c.PtjaasSpawner.sizes['gpu-1']['gpu']"),
])
def test_bad_catalog_values_name_the_config_key(bad, key):
    with pytest.raises(PolicyError) as e:
        service_config(bad, {})
    assert key in str(e.value)


def test_bad_image_value_names_the_key():
    with pytest.raises(PolicyError, match=r"c.PtjaasSpawner.images\['pytorch'\]\['cull_idle_timeout'\]"):
        service_config({}, {"pytorch": {"cull_idle_timeout": True}})


def test_kernel_culling_args():
    assert kernel_culling_args(SIZES["cpu-small"]) == []
    args = kernel_culling_args(SIZES["gpu-1"])
    assert "--MappingKernelManager.cull_idle_timeout=600" in args
    assert "--MappingKernelManager.cull_interval=150" in args
    assert "--MappingKernelManager.cull_connected=True" in args
    assert "--MappingKernelManager.cull_busy=False" in args
    # the image can make it stricter
    assert "--MappingKernelManager.cull_idle_timeout=60" in kernel_culling_args(
        SIZES["gpu-1"], {"kernel_idle_timeout": 60})
    with pytest.raises(PolicyError):
        kernel_culling_args({"kernel_idle_timeout": "ten"})


def test_service_config_smallest_role_and_policy_env():
    cfg = service_config(SIZES, IMAGES, timeout=7200, cull_every=60, after_cull_hooks=["snapshot", "usage"],
                         usage_file="/tmp/u.jsonl", snapshot_class="csi-snap", snapshot_keep=2)
    (svc,), (role,) = cfg["services"], cfg["load_roles"]
    assert role["services"] == [svc["name"]]
    assert sorted(role["scopes"]) == ["delete:servers", "list:users", "read:servers", "read:users:activity"]
    assert not any(s.startswith("admin") for s in role["scopes"])
    pol = json.loads(svc["environment"]["PTJAAS_CULL_POLICY"])
    assert pol["sizes"]["gpu-1"] == {"cull_idle_timeout": 1800, "cull_max_age": 28800,
                                     "kernel_idle_timeout": 600, "gpu": 1}
    assert pol["images"]["pytorch"] == {"cull_idle_timeout": 900}
    # the command line parses with the service's own option parser
    app = PtjaasCuller()
    app.parse_command_line(svc["command"][3:])
    assert (app.timeout, app.cull_every, app.after_cull_hooks, app.snapshot_keep) == (
        7200, 60, ["snapshot", "usage"], 2)
    users_cfg = service_config(cull_users=True, cull_admin_users=False)
    assert "delete:users" in users_cfg["load_roles"][0]["scopes"]
    assert "admin:users" not in users_cfg["load_roles"][0]["scopes"]


def test_service_config_rejects_unusable_hooks():
    with pytest.raises(PolicyError, match="usage_file"):
        service_config(after_cull_hooks=["usage"])
    with pytest.raises(PolicyError, match="module:function"):
        service_config(after_cull_hooks=[print])


def test_z2jh_cull_values_keep_their_meaning():
    kw = from_z2jh_values({"enabled": True, "users": False, "adminUsers": True, "removeNamedServers": True,
                           "timeout": 3600, "every": 600, "concurrency": 10, "maxAge": 0})
    assert kw == {"timeout": 3600, "cull_every": 600, "concurrency": 10, "max_age": 0, "cull_users": False,
                  "cull_admin_users": True, "remove_named_servers": True}
    svc = service_config(**kw)["services"][0]
    app = PtjaasCuller()
    app.parse_command_line(svc["command"][3:])
    assert (app.timeout, app.cull_every, app.remove_named_servers, app.cull_users) == (3600, 600, True, False)
    # z2jh passes bare boolean flags
    app = PtjaasCuller()
    app.parse_command_line(["--cull-users", "--remove-named-servers", "--cull-admin-users=false"])
    assert app.cull_users and app.remove_named_servers and not app.cull_admin_users


def test_usage_entry_gpu_hours():
    p = policy()
    ev = {"user": "alice", "server": "", "size": "gpu-2", "image": "pytorch", "version": "2024.10",
          "started": "2026-01-01T09:00:00Z", "stop": "2026-01-01T12:00:00Z", "kind": "idle"}
    e = usage_entry(p, ev, NOW)
    assert (e["hours"], e["gpus"], e["gpu_hours"]) == (3.0, 2, 6.0)
    assert e["stop"] == "2026-01-01T12:00:00Z" and e["version"] == "2024.10"
    assert usage_entry(p, dict(ev, size="cpu-small"), NOW)["gpu_hours"] == 0.0


def test_snapshots_to_prune_keeps_newest():
    objs = [{"metadata": {"name": f"s{i}", "creationTimestamp": f"2026-01-01T00:00:0{i}Z"}} for i in range(5)]
    assert sorted(snapshots_to_prune(objs, 2)) == ["s0", "s1", "s2"]
    assert snapshots_to_prune(objs, 10) == []


def test_size_read_back_from_pod_labels():
    from ptjaas_spawner.culler.policy import choice_from_labels, needs_choice

    p = CullPolicy.from_dict({"sizes": {"gpu.large": {"gpu": 1, "cull_idle_timeout": 60}}, "images": IMAGES})
    labels = {"ptjaas.io/size": "gpu.large", "ptjaas.io/image": "pytorch", "ptjaas.io/version": "2025.01"}
    assert choice_from_labels(p, labels) == {"size": "gpu.large", "image": "pytorch", "version": "2025.01"}
    assert choice_from_labels(p, {"ptjaas.io/size": "gone"}) == {}
    assert needs_choice(p, server(None)) and not needs_choice(p, server("gpu.large"))
    assert not needs_choice(CullPolicy(), server(None))  # no per-size policy: nothing to look up


def test_install_culler_reads_the_spawner_config():
    from traitlets.config import Config

    from ptjaas_spawner.culler import install_culler

    c = Config()
    c.PtjaasSpawner.sizes = SIZES
    c.KubeSpawner.namespace = "jhub-users"
    c.JupyterHub.services = [{"name": "other", "url": "http://127.0.0.1:1"}]
    install_culler(c, timeout=1800)
    assert [s["name"] for s in c.JupyterHub.services] == ["other", "ptjaas-culler"]
    svc = c.JupyterHub.services[1]
    assert "--namespace=jhub-users" in svc["command"] and "--timeout=1800" in svc["command"]
    assert json.loads(svc["environment"]["PTJAAS_CULL_POLICY"])["sizes"]["gpu-1"]["cull_idle_timeout"] == 1800
    assert c.JupyterHub.load_roles[0]["services"] == ["ptjaas-culler"]
    bad = Config()
    bad.PtjaasSpawner.sizes = {"gpu-1": {"cull_max_age": -1}}
    with pytest.raises(PolicyError, match=r"c.PtjaasSpawner.sizes\['gpu-1'\]\['cull_max_age'\]"):
        install_culler(bad)
    assert "services" not in bad.JupyterHub  # nothing changed


@pytest.mark.parametrize("schema", ["CULLER", "Z2JH_CULL"])
def test_every_culler_value_names_a_culler_option(schema):
    from ptjaas_spawner import settings_schema
    from ptjaas_spawner.culler.options import OPTIONS

    mapping = settings_schema.options(getattr(settings_schema, schema))
    assert mapping and set(mapping.values()) <= set(OPTIONS)
    app = PtjaasCuller()   # and each is on the culler's command line under its own name
    app.parse_command_line([f"--{option.replace('_', '-')}={PtjaasCuller.class_traits()[option].default_value!s}"
                            for option in mapping.values()
                            if not isinstance(PtjaasCuller.class_traits()[option].default_value, list)])


@pytest.mark.parametrize("options, message", [
    ({"timeout": -1}, "culler timeout: "), ({"snapshot_keep": 0}, "culler snapshot_keep: "),
    ({"cull_every": True}, "culler cull_every must be an integer"), ({"colour": "red"}, "unknown option 'colour'"),
    ({"hub_gone_timeout": -2}, "culler hub_gone_timeout: "),
])
def test_service_config_refuses_a_bad_option_naming_it(options, message):
    with pytest.raises(PolicyError, match=re.escape(message)):
        service_config(**options)
