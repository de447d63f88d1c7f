"""Pure tests: home volume policy and object builders."""

from ptjaas_spawner.homevolume import (
    bind_failure, claim_candidates, growth_decision, home_size_for, shared_volumes_for)
from ptjaas_spawner.objects import choice_labels, label_value


def test_home_size_by_group_takes_the_biggest():
    by_group = {"big": "50Gi", "bigger": "100Gi", "tiny": "1Gi"}
    assert home_size_for([], "10Gi", by_group) == "10Gi"
    assert home_size_for(["tiny"], "10Gi", by_group) == "10Gi"
    assert home_size_for(["big", "bigger"], "10Gi", by_group) == "100Gi"


def test_growth_never_shrinks():
    assert growth_decision("10Gi", "5Gi", True)[0] == "keep"
    assert growth_decision("10Gi", "10Gi", False)[0] == "keep"
    action, msg = growth_decision("10Gi", "20Gi", True)
    assert action == "grow" and "20Gi" in msg
    action, msg = growth_decision("10Gi", "20Gi", False)
    assert action == "cannot-grow" and "stays at 10Gi" in msg and "does not allow expansion" in msg


def test_claim_candidates_order():
    assert claim_candidates("claim-old", "claim-alice", ["claim-alice", "claim-alice-2d40"]) == [
        "claim-old", "claim-alice", "claim-alice-2d40"]
    assert claim_candidates(None, "a", []) == ["a"]


def test_bind_failure_collects_warnings():
    events = [
        {"type": "Normal", "reason": "WaitForFirstConsumer", "message": "waiting"},
        {"type": "Warning", "reason": "ProvisioningFailed", "message": 'storageclass "gold" not found'},
        {"type": "Warning", "reason": "ProvisioningFailed", "message": 'storageclass "gold" not found'},
    ]
    assert bind_failure(events) == 'ProvisioningFailed: storageclass "gold" not found'
    assert bind_failure(events[:1]) == ""


def test_shared_volumes_by_group():
    shared = [{"claim": "datasets", "mount_path": "/data", "read_only": True},
              {"claim": "team-a", "mount_path": "/team", "groups": ["a"]}]
    vols, mounts = shared_volumes_for(shared, [])
    assert [v["persistentVolumeClaim"]["claimName"] for v in vols] == ["datasets"]
    assert mounts[0] == {"name": "shared-0", "mountPath": "/data", "readOnly": True}
    vols, mounts = shared_volumes_for(shared, ["a"])
    assert len(vols) == 2 and mounts[1]["readOnly"] is False


def test_label_values_are_safe_and_distinct():
    assert label_value("python") == "python"
    a, b = label_value("Ünïcode user@example.org"), label_value("Ünïcode user#example.org")
    assert a != b
    for v in (a, b, label_value("x" * 100), label_value("-lead")):
        assert len(v) <= 63 and v[0].isalnum() and v[-1].isalnum()
    assert choice_labels("py", "2024.05", "gpu:large")["ptjaas.io/size"].startswith("gpu-large")
