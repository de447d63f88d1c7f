"""The GPU-idle rule: pure decision (table), query template and answer checks, and the
Prometheus reader against a small Prometheus-API server (log once, never cull on missing data).
The rule through a real hub and culler: tests/test_cull_hub.py."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ptjaas_spawner.culler.gpuidle import (
    DEFAULT_QUERY, PrometheusAnswerError, build_query, check_query_template, decide_gpu_idle,
    gpu_idle_window, max_utilisation,
)
from ptjaas_spawner.culler.options import command_line
from ptjaas_spawner.culler.policy import PolicyError
from ptjaas_spawner.culler.prometheus import PrometheusGpuProbe
from tests.prometheus_stub import PrometheusStub
from tests.test_cull_policy import decide, policy, server

# gpu-1: 1 GPU, idle timeout 30 min; cpu-small: no GPU; gpu-2 (2 GPUs) inherits the global 1 h


@pytest.mark.parametrize("size, image, idle_min, age_min, used, culled", [
    ("gpu-1", None, 1, 60, 3.0, True),        # busy kernel, GPU under 5 % for 30 min: idle
    ("gpu-1", None, 1, 60, 4.99, True),
    ("gpu-1", None, 1, 60, 5.0, False),       # at the threshold: used
    ("gpu-1", None, 1, 60, 80.0, False),
    ("gpu-1", None, 1, 60, None, False),      # no data: no decision
    ("gpu-1", None, 1, 20, 0.0, None),        # younger than its timeout: rule does not apply
    ("gpu-1", "forever", 1, 60, 0.0, True),   # the size's limit is the stricter
    ("gpu-2", None, 1, 90, 0.0, True),        # the global timeout (1 h)
    ("cpu-small", None, 1, 600, 0.0, None),   # no GPU: rule does not apply
    (None, None, 1, 600, 0.0, None),          # size unknown
])
def test_gpu_idle_decision_table(size, image, idle_min, age_min, used, culled):
    p = policy()
    v = decide(p, server(size, image, idle_min=idle_min, age_min=age_min))
    assert not v.cull and v.kind == "keep"
    window = gpu_idle_window(p, v)
    if culled is None:
        assert window is None
        return
    assert window == p.limits(size, image)[0]
    after = decide_gpu_idle(v, window, used, 5.0)
    assert after.cull is culled
    if culled:
        assert after.kind == "gpu-idle"
        assert after.reason.startswith(f"GPU idle: under 5 % for {'30 min' if size == 'gpu-1' else '1 h'}")
    else:
        assert after == v


def test_already_culled_or_skipped_servers_are_not_asked_about():
    p = policy()
    assert gpu_idle_window(p, decide(p, server("gpu-1", idle_min=40, age_min=60))) is None  # idle anyway
    assert gpu_idle_window(p, decide(p, server("gpu-1", age_min=60, ready=False))) is None


def test_query_template_checks_name_the_setting():
    assert build_query(DEFAULT_QUERY, pod="jupyter-ann", namespace="hub", timeout=1800) == (
        'max_over_time(DCGM_FI_DEV_GPU_UTIL{namespace="hub",pod="jupyter-ann"}[1800s])')
    assert build_query('x{pod="$pod"}', pod='a"b\\', namespace="", timeout=1) == 'x{pod="a\\"b\\\\"}'
    for bad, says in [("DCGM_FI_DEV_GPU_UTIL", "with $pod"), ('x{pod="$pod",u="$who"}', "unknown placeholder(s) $who"),
                      ("x{pod=\"$pod\"} $ 1", "not a placeholder"), ("", "non-empty"), ("x" * 3000 + "$pod", "longer")]:
        with pytest.raises(PolicyError, match="gpu_idle_query") as e:
            check_query_template(bad)
        assert says in str(e.value)
    with pytest.raises(PolicyError, match="culler gpu_idle_threshold.*> 0 and <= 100"):
        command_line({"gpu_idle_threshold": 150})
    with pytest.raises(PolicyError, match="culler prometheus_url.*http"):
        command_line({"prometheus_url": "prometheus:9090"})
    assert command_line({"prometheus_url": "http://prom:9090", "gpu_idle_threshold": 10}) == [
        "--prometheus-url=http://prom:9090", "--gpu-idle-threshold=10"]


def test_prometheus_answers():
    vec = lambda *vals: {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"gpu": str(i)}, "value": [1.0, v]} for i, v in enumerate(vals)]}}
    assert max_utilisation(vec("2", "7.5")) == 7.5  # the busiest GPU of the pod counts
    assert max_utilisation(vec()) is None
    assert max_utilisation(vec("NaN")) is None
    for bad in [{"status": "error", "error": "query timed out"}, {"status": "success", "data": {"resultType": "matrix", "result": []}},
                [], {"status": "success", "data": {"resultType": "vector", "result": [{"value": []}]}}]:
        with pytest.raises(PrometheusAnswerError):
            max_utilisation(bad)


def test_probe_never_culls_on_missing_data_and_logs_once(caplog):
    lists = []

    async def pods():
        lists.append(1)
        await asyncio.sleep(0)  # a real list call yields; servers asking meanwhile share it
        return {("ann", ""): ("default", "jupyter-ann"), ("bob", "gpu"): ("default", "jupyter-bob--gpu")}

    async def run(url, passes):
        probe = PrometheusGpuProbe(url, DEFAULT_QUERY, 5.0, pods, log=logging.getLogger("test.gpu"), timeout=2)
        try:
            out = []
            for _ in range(passes):
                probe.new_pass()
                out.append(list(await asyncio.gather(probe("ann", "", 60), probe("bob", "gpu", 60), probe("eve", "", 60))))
            return out
        finally:
            await probe.close()

    caplog.set_level(logging.INFO, logger="test.gpu")
    with PrometheusStub() as prom:
        prom.series = {"jupyter-ann": {"0": [(10, 2.0), (100, 90.0)]},
                       "jupyter-bob--gpu": {"0": [(5, 1.0)], "1": [(30, 60.0)]}}
        assert asyncio.run(run(prom.url, 1)) == [[2.0, 60.0, None]]  # eve: no pod, no question
        assert len(lists) == 1  # one pod list for the pass
        assert sorted(prom.queries) == [
            'max_over_time(DCGM_FI_DEV_GPU_UTIL{namespace="default",pod="jupyter-ann"}[60s])',
            'max_over_time(DCGM_FI_DEV_GPU_UTIL{namespace="default",pod="jupyter-bob--gpu"}[60s])']
        prom.fail, prom.queries = 503, []
        assert asyncio.run(run(prom.url, 3)) == [[None, None, None]] * 3
        assert len(prom.queries) <= 6  # the rest of a failing pass asks no more (two may be in flight)
        url = prom.url
    assert asyncio.run(run(url, 2)) == [[None, None, None]] * 2  # unreachable
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # once per culler life (a probe), not per server or pass
    assert "answered status 'error': stub failure" in warnings[0]
    assert "unreachable" in warnings[1]
