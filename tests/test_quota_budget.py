"""Pure quota arithmetic: budgets, pools, most-generous entitlements, messages."""

import pytest

from ptjaas_spawner.quota.budget import (
    Amount,
    Charge,
    Ledger,
    QuotaConfigError,
    QuotaPolicy,
    availability,
    decide,
    pod_amount,
    size_amount,
    usage_report,
)

GPU1 = Amount(gpus=1, cpu=2, memory=4 * 2**30)
CPU = Amount(gpus=0, cpu=1, memory=2**30)


def policy(**kw):
    return QuotaPolicy.from_config(kw.get("default"), kw.get("users"), kw.get("groups"))


def charge(ledger, user, server, amount, pool=None, size="s"):
    ledger.add(Charge(user, server, amount, pool, size, "python", "2025.01"))


def test_config_errors_name_the_key():
    with pytest.raises(QuotaConfigError, match=r"quota_groups\['vision'\]\['gpus'\]"):
        policy(groups={"vision": {"gpus": -1}})
    with pytest.raises(QuotaConfigError, match=r"quota_default has unknown key\(s\) \['gpu'\]"):
        policy(default={"gpu": 1})
    with pytest.raises(QuotaConfigError, match=r"quota_users\['bob'\]\['memory'\]"):
        policy(users={"bob": {"memory": "lots"}})
    with pytest.raises(QuotaConfigError, match=r"per_user'\]\['servers'\]"):
        policy(groups={"vision": {"per_user": {"servers": 1.5}}})


def test_no_config_allows_everything():
    pol = policy()
    assert not pol.enabled
    assert decide(pol, Ledger(), "a", [], GPU1).allowed


def test_user_budget_counts_named_servers_and_says_how_to_free():
    pol = policy(default={"gpus": 1, "servers": 2})
    led = Ledger()
    charge(led, "ann", "", GPU1)
    d = decide(pol, led, "ann", [], GPU1, server="second")
    assert not d.allowed
    assert "personal GPUs budget is full" in d.message and "1 of 1" in d.message
    assert "ann/(default)" in d.message and "Stop one of your servers" in d.message
    # a CPU-only named server still fits (GPU budget not touched), the third server does not
    assert decide(pol, led, "ann", [], CPU, server="cpu").allowed
    charge(led, "ann", "cpu", CPU)
    d = decide(pol, led, "ann", [], CPU, server="third")
    assert not d.allowed and "servers budget" in d.message
    # restarting an existing server does not count against itself
    assert decide(pol, led, "ann", [], GPU1, server="").allowed


def test_group_pool_is_shared_and_exactly_fills():
    pol = policy(groups={"vision": {"gpus": 4}})
    led = Ledger()
    results = []
    for i in range(20):  # 20 users asking for the 4 pooled GPUs, reserving as they go
        d = decide(pol, led, f"u{i}", ["vision"], GPU1)
        if d.allowed:
            charge(led, f"u{i}", "", GPU1, d.pool)
        results.append(d)
    assert sum(d.allowed for d in results) == 4
    last = results[-1]
    assert "group 'vision' holds 4 of its 4 GPUs" in last.message
    assert "ask a team member to stop one" in last.message
    led.remove("u0", "")
    d = decide(pol, led, "u19", ["vision"], GPU1)
    assert d.allowed and d.pool == "vision" and d.note == "1 of 4 vision GPUs free"


def test_user_in_two_pools_drawn_from_the_one_that_fits():
    pol = policy(groups={"vision": {"gpus": 2}, "nlp": {"gpus": 1}})
    led = Ledger()
    charge(led, "v1", "", GPU1, "vision")
    charge(led, "v2", "", GPU1, "vision")
    d = decide(pol, led, "both", ["nlp", "vision"], GPU1)
    assert d.allowed and d.pool == "nlp"
    charge(led, "both", "", GPU1, "nlp")
    d = decide(pol, led, "both", ["nlp", "vision"], GPU1, server="x")
    assert not d.allowed
    assert "'nlp' holds 1 of its 1 GPUs (1 of them yours)" in d.message
    assert "'vision' holds 2 of its 2 GPUs" in d.message


def test_pool_preference_is_most_headroom():
    pol = policy(groups={"a": {"gpus": 2}, "b": {"gpus": 8}})
    assert decide(pol, Ledger(), "x", ["a", "b"], GPU1).pool == "b"


def test_users_outside_pools_only_have_personal_limits():
    pol = policy(groups={"vision": {"gpus": 1}})
    led = Ledger()
    charge(led, "v", "", GPU1, "vision")
    assert decide(pol, led, "other", ["students"], GPU1).allowed
    assert not decide(pol, led, "v2", ["vision", "students"], GPU1).allowed


def test_most_generous_per_user_entitlement_and_user_override():
    pol = policy(
        default={"gpus": 0, "cpu": 2},
        groups={"students": {"per_user": {"cpu": 4}}, "vision": {"per_user": {"gpus": 2}}},
        users={"boss": {"gpus": 8}},
    )
    lim = pol.user_limits("kim", ["students", "vision"])
    assert lim["gpus"] == 2 and lim["cpu"] == 4 and lim["memory"] is None
    assert pol.user_limits("kim", ["students"])["gpus"] == 0
    assert pol.user_limits("boss", [])["gpus"] == 8
    assert not decide(pol, Ledger(), "nogroup", [], GPU1).allowed
    assert decide(pol, Ledger(), "kim", ["vision"], GPU1).allowed


def test_cpu_and_memory_budgets():
    pol = policy(groups={"lab": {"cpu": "3", "memory": "5Gi"}})
    led = Ledger()
    charge(led, "a", "", GPU1, "lab")  # 2 cpu, 4Gi
    d = decide(pol, led, "b", ["lab"], CPU)  # 1 cpu, 1Gi -> exactly fits
    assert d.allowed
    charge(led, "b", "", CPU, "lab")
    d = decide(pol, led, "c", ["lab"], CPU)
    assert not d.allowed and "CPU cores budget is full" in d.message


def test_availability_for_the_form():
    pol = policy(groups={"vision": {"gpus": 4}})
    led = Ledger()
    charge(led, "a", "", Amount(gpus=2), "vision")
    av = availability(pol, led, "me", ["vision"], {"small": CPU, "gpu1": GPU1, "gpu4": Amount(gpus=4)})
    assert av["gpu1"] == (True, "2 of 4 vision GPUs free")
    assert av["gpu4"][0] is False and "2 of 4 vision GPUs free" in av["gpu4"][1]
    assert av["small"][0] is True


def test_amounts_from_size_and_pod():
    size = {"cpu_guarantee": "500m", "mem_guarantee": "1Gi", "gpu": 2, "cpu_limit": 2, "mem_limit": "2Gi"}
    assert size_amount(size) == Amount(gpus=2, cpu=0.5, memory=2**30)
    pod = {"spec": {"containers": [
        {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"nvidia.com/gpu": "2"}}},
        {"resources": {"limits": {"cpu": "1", "memory": "512Mi"}}},
    ]}}
    assert pod_amount(pod) == Amount(gpus=2, cpu=1.5, memory=2**30 + 2**29)


def test_usage_report_groups_sizes_versions():
    pol = policy(groups={"vision": {"gpus": 4}}, default={"servers": 3})
    led = Ledger()
    charge(led, "a", "", GPU1, "vision", size="gpu1")
    charge(led, "b", "x", GPU1, "vision", size="gpu1")
    rep = usage_report(pol, led, {"a": ["vision"], "b": ["vision"]})
    assert rep["groups"]["vision"]["used"]["gpus"] == 2
    assert rep["groups"]["vision"]["holders"] == ["a", "b"]
    assert rep["sizes"]["gpu1"]["servers"] == 2
    assert rep["versions"]["python:2025.01"]["gpus"] == 2
    assert rep["users"]["a"]["limits"]["servers"] == 3


def test_usage_report_by_namespace():
    led = Ledger()
    for user, server, amount, ns in [("a", "", GPU1, "jhub-team-vision"), ("b", "", GPU1, "jhub-team-vision"),
                                     ("a", "x", CPU, "jhub"), ("c", "", CPU, "")]:
        led.add(Charge(user, server, amount, None, "s", "python", "1", 4.0, 8 * 2**30, namespace=ns))
    rep = usage_report(policy(), led, {})
    assert list(rep["namespaces"]) == ["(unknown)", "jhub", "jhub-team-vision"]
    vision = rep["namespaces"]["jhub-team-vision"]
    assert (vision["servers"], vision["gpus"], vision["cpu"], vision["memory"]) == (2, 2, 4, 8 * 2**30)
    assert (vision["cpu_limit"], vision["memory_limit"], vision["users"]) == (8.0, 16 * 2**30, ["a", "b"])
    assert rep["namespaces"]["jhub"]["users"] == ["a"]
    assert [(s["user"], s["server"], s["namespace"]) for s in rep["servers"]] == [
        ("a", "", "jhub-team-vision"), ("a", "x", "jhub"), ("b", "", "jhub-team-vision"), ("c", "", None)]


def test_resourcequota_manifests_from_the_same_budgets():
    from ptjaas_spawner.quota.resourcequota import namespace_quota, quota_manifest

    pol = policy(groups={"vision": {"gpus": 4, "cpu": 8}, "nlp": {"gpus": 2, "memory": "8Gi"}})
    rq = namespace_quota(pol, "jhub")
    assert rq["metadata"] == {"name": "ptjaas-groups", "namespace": "jhub",
                              "labels": {"app.kubernetes.io/managed-by": "ptjaas"}}
    # GPUs are limited by every pool: summed; CPU and memory are unlimited in one pool each
    assert rq["spec"]["hard"] == {"requests.nvidia.com/gpu": "6"}
    one = quota_manifest("t", "ns", {"gpus": 1, "cpu": 2.5, "memory": 2**30, "servers": 3}, "amd.com/gpu")
    assert one["spec"]["hard"] == {"requests.amd.com/gpu": "1", "requests.cpu": "2500m",   # canonical,
                                   "requests.memory": "1Gi", "pods": "3"}                   # as kubectl shows
    assert namespace_quota(policy(default={"gpus": 1}), "x") is None


def test_resourcequota_refusal_text():
    from ptjaas_spawner.quota.mixin import resourcequota_message

    body = ('{"kind": "Status", "message": "pods \\"jupyter-a\\" is forbidden: exceeded quota: team, '
            'requested: requests.nvidia.com/gpu=1, used: requests.nvidia.com/gpu=4, '
            'limited: requests.nvidia.com/gpu=4", "code": 403}')
    msg = resourcequota_message(body, "jhub")
    assert msg.startswith("The cluster refused to start your server: namespace 'jhub' is at its resource quota")
    assert "quota 'team' allows requests.nvidia.com/gpu=4" in msg and "The server was not created" in msg


def test_resourcequota_command_reads_the_hub_config(tmp_path):
    import json
    import subprocess
    import sys

    cfg = tmp_path / "jupyterhub_config.py"
    cfg.write_text('c.PtjaasSpawner.quota_groups = {"vision": {"gpus": 4, "servers": 10}, "nlp": {"gpus": 2, "servers": 5}}\n')
    out = subprocess.run([sys.executable, "-m", "ptjaas_spawner.quota.resourcequota", str(cfg), "--namespace", "jhub"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert json.loads(out)["spec"]["hard"] == {"requests.nvidia.com/gpu": "6", "pods": "15"}
    cfg.write_text('c.PtjaasSpawner.quota_groups = {"vision": {"gpu": 4}}\n')
    bad = subprocess.run([sys.executable, "-m", "ptjaas_spawner.quota.resourcequota", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "c.PtjaasSpawner.quota_groups['vision'] has unknown key(s) ['gpu']" in bad.stderr


def test_settings_are_parsed_once_and_bad_ones_refused_every_time():
    """Every new spawner reads the same settings (issue 21): equal settings give the policy
    parsed once; a bad setting is refused each time, naming it, even after good ones passed."""
    from ptjaas_spawner.quota.budget import QuotaPolicy
    from ptjaas_spawner.quota.mixin import QuotaMixin
    from traitlets import TraitError

    groups = {"vision": {"gpus": 4, "per_user": {"gpus": 2}}}
    first = QuotaPolicy.from_config({"gpus": 1}, {}, groups)
    assert QuotaPolicy.from_config({"gpus": 1}, {}, {"vision": {"gpus": 4, "per_user": {"gpus": 2}}}) is first
    assert QuotaPolicy.from_config({"gpus": 1, "cpu": 2}, {}, groups) is not first
    assert first.user_limits("tom", ["vision"])["gpus"] == 2
    for _ in range(2):
        with pytest.raises(QuotaConfigError, match=r"quota_users\['tom'\]\['gpus'\]"):
            QuotaPolicy.from_config({"gpus": 1}, {"tom": {"gpus": -1}}, groups)
        QuotaMixin(quota_default={"gpus": 1}, quota_groups=groups)
        with pytest.raises(TraitError, match=r"c.PtjaasSpawner.quota_default\['gpus'\]"):
            QuotaMixin(quota_default={"gpus": "many"})
