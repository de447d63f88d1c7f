"""Accounting and time budgets, pure: runs summed into windows and days, when a budget frees
up, the budgets' settings, a start's refusal, the stop rule, and the record file (a real file:
a restart reads it back, a duplicate line counts once)."""

import json
import os
from datetime import datetime, timezone

import pytest

from ptjaas_spawner.quota.runs import DAY, HOUR, Run, daily, frees_at, parse_window, totals, used_in_window
from ptjaas_spawner.accounting.store import RunStore
from ptjaas_spawner.quota.budget import QuotaConfigError, parse_budget
from ptjaas_spawner.quota.timebudget import TimePolicy, budget_line, check_start, over_budget, standings


def ts(text):
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


NOW = ts("2026-12-07T12:00:00")


def run(user="alice", start="2026-12-07T10:00:00", end=None, gpus=1, cpu=2.0, team="vision", rid=None):
    return Run(id=rid or f"{user}-{start}", user=user, team=team, size="gpu", gpus=gpus, cpu=cpu,
               start=ts(start), end=ts(end) if end else None)


@pytest.mark.parametrize("runs, window, gpu_hours, cpu_hours", [
    ([run()], "month", 2, 4),  # running: counted up to now
    ([run(end="2026-12-07T11:00:00")], "month", 1, 2),
    ([run(start="2026-11-30T23:00:00", end="2026-12-01T01:00:00")], "month", 1, 2),  # calendar: cut at the 1st
    ([run(start="2026-11-30T23:00:00", end="2026-12-01T01:00:00")], "30d", 2, 4),
    ([run(start="2026-11-07T11:00:00", end="2026-11-07T13:00:00")], "30d", 1, 2),  # rolling: half inside
    ([run(gpus=0), run(user="bob", gpus=2, end="2026-12-07T10:30:00")], "30d", 1, 5),
])
def test_usage_in_window(runs, window, gpu_hours, cpu_hours):
    w = parse_window(window, "w")
    assert used_in_window(runs, "gpu_hours", w, NOW) / HOUR == pytest.approx(gpu_hours)
    assert used_in_window(runs, "cpu_hours", w, NOW) / HOUR == pytest.approx(cpu_hours)


@pytest.mark.parametrize("runs, window, limit_h, frees", [
    ([run(end="2026-12-07T11:00:00")], "month", 1, "2027-01-01T00:00:00"),
    ([run(end="2026-12-07T11:00:00")], "month", 2, "2026-12-07T12:00:00"),  # below: now
    # rolling 30d: 4 GPU-hours on Nov 10 10:00-14:00, limit 3 -> frees when 1 h has left the window
    ([run(start="2026-11-10T10:00:00", end="2026-11-10T14:00:00")], "30d", 3, "2026-12-10T11:00:00"),
    ([run(start="2026-11-10T10:00:00", end="2026-11-10T14:00:00", rid="a"),
      run(start="2026-11-20T10:00:00", end="2026-11-20T12:00:00", rid="b")], "30d", 3, "2026-12-10T13:00:00"),
    # a running server is taken as stopping now: 2 h so far, limit 1 -> frees once 1 h has left
    ([run()], "30d", 1, "2027-01-06T11:00:00"),
])
def test_frees_at(runs, window, limit_h, frees):
    assert frees_at(runs, "gpu_hours", parse_window(window, "w"), limit_h * HOUR, NOW) == pytest.approx(ts(frees))


@pytest.mark.parametrize("value", ["30", "0d", "367d", "week", 30, None, "1m"])
def test_bad_window_is_refused_naming_the_key(value):
    with pytest.raises(QuotaConfigError, match=r"quota_default\['window'\]"):
        parse_budget({"gpu_hours": 1, "window": value}, "c.PtjaasSpawner.quota_default")


@pytest.mark.parametrize("spec, match", [
    ({"gpu_hours": -1}, r"quota_default\['gpu_hours'\] must be a number"),
    ({"cpu_hours": "lots"}, r"quota_default\['cpu_hours'\] must be a number"),
    ({"gpu_hours": True}, r"quota_default\['gpu_hours'\]"),
    ({"window": "month"}, r"quota_default\['window'\] is set but neither"),
    ({"gpu_hour": 3}, r"unknown key"),
])
def test_bad_time_budget_is_refused(spec, match):
    with pytest.raises(QuotaConfigError, match=match):
        parse_budget(spec, "c.PtjaasSpawner.quota_default")


POLICY = TimePolicy.from_config(
    default={"gpu_hours": 1, "window": "month"},
    groups={"vision": {"gpu_hours": 200, "window": "month", "per_user": {"gpu_hours": 50, "window": "month"}},
            "nlp": {"per_user": {"cpu_hours": 10}}},
    users={"bob": {"gpu_hours": 5}},
)


@pytest.mark.parametrize("user, groups, expect", [
    ("carol", [], {"gpu_hours": 1}),
    ("alice", ["vision"], {"gpu_hours": 50}),  # per_user raises the default
    ("bob", ["vision"], {"gpu_hours": 5}),  # quota_users replaces
    ("dan", ["nlp"], {"gpu_hours": 1}),  # no default cpu_hours: per_user raises nothing
])
def test_user_limits(user, groups, expect):
    assert {r: lim.hours for r, lim in POLICY.user_limits(user, groups).items()} == expect


def test_team_line_and_refusal():
    runs = [run(user=u, start="2026-12-01T00:00:00", end="2026-12-03T00:00:00", rid=u) for u in ("a", "b")]
    runs.append(run(user="alice", start="2026-12-07T11:00:00"))
    line = budget_line(POLICY, runs, "alice", ["vision"], "vision", NOW)
    assert line == "vision: 103 of 200 GPU-hours left this month; you: 49 of 50 GPU-hours left this month"
    assert check_start(POLICY, runs, "alice", ["vision"], "vision", 1, 1.0, NOW) == ""
    msg = check_start(POLICY, runs, "a", [], "", 1, 1.0, NOW)
    assert msg.startswith("Your GPU-hours budget is used up: 48 of 1 GPU-hours this month, 0 left.")
    assert "It frees up at 2027-01-01 00:00 UTC." in msg
    assert check_start(POLICY, runs, "a", [], "", 0, 1.0, NOW) == ""  # a CPU size still starts


def test_stop_rule_waits_for_the_grace():
    # 1 GPU-hour budget, a 1-GPU server running since 10:00: at 11:00 it is at 100 %
    for now, stopped in (("2026-12-07T10:55:00", False), ("2026-12-07T11:09:59", False),
                         ("2026-12-07T11:10:00", True)):
        st = standings(POLICY, [run()], "alice", [], "", ts(now))[0]
        assert over_budget(st, grace_seconds=600) is stopped, now


def test_daily_series_and_totals():
    runs = [run(start="2026-12-05T22:00:00", end="2026-12-06T02:00:00"), run(user="bob", team="", gpus=0)]
    d = daily(runs, NOW, days=3)
    assert d["days"] == ["2026-12-05", "2026-12-06", "2026-12-07"]
    assert d["series"]["alice"]["gpu_hours"] == [2, 2, 0]
    assert d["series"]["bob"]["cpu_hours"] == [0, 0, 4]
    by_team = totals(runs, NOW - 30 * DAY, NOW, NOW, key=lambda r: r.team)
    assert by_team["vision"]["gpu_hours"] == 4 and by_team[""]["cpu_hours"] == 4


def test_record_file_survives_a_restart_and_counts_once(tmp_path):
    clock = [NOW]
    path = str(tmp_path / "usage.jsonl")
    store = RunStore(path, clock=lambda: clock[0])
    store.started("pod-1", user="alice", server="", gpus=1, cpu=1.0)
    store.started("pod-1", user="alice", server="", gpus=1, cpu=1.0)  # a repeated start: nothing
    clock[0] += 3600
    assert store.ended("pod-1", "stopped").end == NOW + 3600
    assert store.ended("pod-1", "gone") is None  # a second end: nothing
    store.started("pod-2", user="alice", server="", gpus=2, cpu=1.0)
    with open(path, "a") as f:  # a torn last line and a duplicate end line, as a crash may leave
        f.write('{"event":"end","id":"pod-1","end":1}\n{"event":"sta\n')
    again = RunStore(path, clock=lambda: clock[0] + 1800)
    assert again.runs["pod-1"].end == NOW + 3600
    assert again.open_run("alice", "").id == "pod-2"
    assert used_in_window(list(again.runs.values()), "gpu_hours", parse_window("30d", "w"), again.now()) == 2 * 3600



def test_record_file_kept_open_follows_a_rotation_and_a_removal(tmp_path):
    """The usage record is kept open between lines (issue 21); after a rotation (renamed) or a
    removal, the next line goes to a new file at the configured path, whole."""
    path = str(tmp_path / "usage.jsonl")
    store = RunStore(path, clock=lambda: NOW)
    store.started("pod-1", user="alice", server="", gpus=1, cpu=1.0)
    os.rename(path, path + ".1")  # as logrotate does, making a new empty file
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    store.ended("pod-1", "stopped")
    os.remove(path + ".1")
    store.started("pod-2", user="bob", server="", gpus=0, cpu=1.0)
    with open(path) as f:
        assert [json.loads(line)["id"] for line in f] == ["pod-1", "pod-2"]
    os.remove(path)
    store.ended("pod-2", "stopped")
    with open(path) as f:
        assert [(r["event"], r["id"]) for r in map(json.loads, f)] == [("end", "pod-2")]
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_a_checkpoint_reads_the_same_runs_and_a_mismatched_one_is_ignored(tmp_path, caplog):
    from ptjaas_spawner.accounting.store import checkpoint_path

    path = str(tmp_path / "usage.jsonl")

    def state(store):
        return ([r.as_dict() for r in store.runs.values()], sorted(r.id for r in store.open_runs()),
                [r.id for r in store.runs_of("u1", "vision")])

    store = RunStore(path, clock=lambda: NOW)
    for i in range(30):
        store.started(f"pod-{i}", user=f"u{i % 3}", server=f"s{i}", team="vision" if i % 2 else "", gpus=1, cpu=0.5,
                      start=NOW - 3600 + i)
        if i % 4:
            store.ended(f"pod-{i}", "stopped", when=NOW - 60 + i)
    store.started("old", user="u9", server="", start=NOW - 7200)  # two open runs of one server,
    store.started("new", user="u9", server="", start=NOW - 60)    # the older superseded
    full = RunStore(path, clock=lambda: NOW, checkpoint_after=10)  # a full read writes the checkpoint
    assert full.replayed > 10 and os.path.exists(checkpoint_path(path)) and state(full) == state(store)
    store.ended("pod-0", "stopped", when=NOW)  # lines after the checkpoint are replayed on top
    store.started("pod-99", user="u1", server="x", team="vision", start=NOW)
    again = RunStore(path, clock=lambda: NOW, checkpoint_after=10)
    assert again.replayed == 2 and state(again) == state(store)
    assert again.open_run("u9", "").id == "new" and again.runs["old"].end_reason == "superseded"

    with open(path) as f:  # the record replaced under the checkpoint: a full read, same answer
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace('"u9"', '"u8"'))
    caplog.clear()
    replaced = RunStore(path, clock=lambda: NOW, checkpoint_after=10**9)
    assert replaced.replayed == 57 and "does not match its record" in caplog.text
    assert replaced.open_run("u8", "").id == "new" and replaced.open_run("u9", "") is None
    with open(checkpoint_path(path), "w") as f:
        f.write("{not json")
    assert RunStore(path, clock=lambda: NOW).replayed == 57 and "checkpoint" in caplog.text


def test_budget_banner_escapes_and_keeps_the_sites_announcement():
    from types import SimpleNamespace

    from ptjaas_spawner.accounting.banner import budget_template_vars, with_budget_warnings

    warned = {"eve": ["warning: <script>x</script> team: 0.1 of 1 GPU-hours left"]}

    def warnings(user):
        return warned.get(getattr(user, "name", None), [])

    eve, ann = SimpleNamespace(name="eve"), SimpleNamespace(name="ann")
    site = with_budget_warnings("Site <b>news</b>", warnings)
    assert site(eve) == ('Site <b>news</b><br><span class="ptjaas-budget-warning">warning: '
                         '&lt;script&gt;x&lt;/script&gt; team: 0.1 of 1 GPU-hours left</span>')
    assert site(ann) == "Site <b>news</b>" and site(None) == "Site <b>news</b>"
    assert with_budget_warnings(lambda user: f"Hi {user.name}", warnings)(eve).startswith("Hi eve<br><span")
    assert with_budget_warnings(None, warnings)(ann) is None  # no site announcement, no warning

    tv = budget_template_vars({"announcement_home": "Home news", "other": 1})
    assert set(tv) == {"announcement", "announcement_home", "other"} and tv["other"] == 1
    assert budget_template_vars(tv)["announcement"] is tv["announcement"]  # installed once
    assert tv["announcement_home"](ann) == "Home news"


def test_a_chart_of_a_few_minutes_use_shows_a_short_bar_not_a_full_one_labelled_zero():
    import re

    from ptjaas_spawner.accounting.svg import chart

    svg = chart("alice", "cpu_hours", ["2026-12-06", "2026-12-07"], [0.002, 0.05])
    heights = [float(h) for h in re.findall(r'<rect class="bar"[^>]* height="([0-9.]+)"', svg)]
    assert heights == pytest.approx([2.1, 52.0], abs=0.1)  # of 104 px: the axis goes to 0.1 h, not to 0.05
    import xml.etree.ElementTree as ET

    texts = [e.text for e in ET.fromstring(svg).iter() if e.text]  # well-formed: the page embeds it
    assert "alice: 0.05 CPU-hours in 2 days" in texts and "2026-12-06: <0.01 CPU-hours" in texts
    assert 'data-total="0.05"' in svg
