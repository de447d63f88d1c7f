"""What the accounting adds to one start, at 0, 10,000 and 100,000 recorded runs.

Runs the hub's real code paths in-process, without a hub or a cluster, on a real record file:
the time-budget check of a start (``quota.timebudget.check_start`` over the record, as
``AccountingMixin.accounting_check_start`` makes it), the start line (``RunStore.started``,
one append to the file) and the end line (``RunStore.ended``), the spawn form's budget line, and
reading the record back at a hub start. The runs belong to 1,000 users in 4 teams, spread over
the last 60 days; "me" is in team vision with a user and a team GPU-hour budget. Compare with a
start's few seconds (``benchmarks/spawn.py``). The record is read twice: line by line (no
checkpoint, as the first hub start after an upgrade) and from the checkpoint that read leaves.

    python benchmarks/accounting.py [--runs 0,10000,100000]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

from ptjaas_spawner.accounting.store import RunStore, checkpoint_path
from ptjaas_spawner.quota.timebudget import TimePolicy, budget_line, check_start

TEAMS = ["vision", "nlp", "robotics", "genomics"]
POLICY = TimePolicy.from_config(default={"gpu_hours": 100, "cpu_hours": 10000, "window": "30d"},
                                groups={t: {"gpu_hours": 5000, "window": "month"} for t in TEAMS})


def fill(path, n, now):
    rnd = random.Random(1)
    store = RunStore(path, clock=lambda: now)
    for i in range(n):
        start = now - rnd.uniform(0, 60 * 86400)
        store.started(f"run-{i}", user=f"u{i % 1000}", server="", team=TEAMS[i % 4], size="gpu",
                      gpus=i % 2, cpu=1.0, memory=2**30, start=start)
        if i % 50:  # most ended, some still running
            store.ended(f"run-{i}", "stopped", when=min(now, start + rnd.uniform(600, 8 * 3600)))
    return store


def mean_ms(fn, reps):
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="0,10000,100000")
    args = ap.parse_args()
    now = time.time()
    print(f"{'runs':>8} {'check':>9} {'start+end':>10} {'form line':>10} {'read':>9} {'read (cp)':>10}   (ms)")
    for n in (int(x) for x in args.runs.split(",")):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "usage.jsonl")
            store = fill(path, n, now)
            runs = store.runs_of("me", "vision")  # as the spawner passes them
            check = mean_ms(lambda: check_start(POLICY, store.runs_of("me", "vision"), "me", ["vision"], "vision", 1, 1.0,
                                                now), 20)
            counter = iter(range(10**9))

            def start_end():
                rid = f"me-{next(counter)}"
                store.started(rid, user="me", server="", team="vision", size="gpu", gpus=1, cpu=1.0, memory=1)
                store.ended(rid, "stopped")
            write = mean_ms(start_end, 200)
            line = mean_ms(lambda: budget_line(POLICY, runs, "me", ["vision"], "vision", now), 20)
            if os.path.exists(checkpoint_path(path)):
                os.remove(checkpoint_path(path))
            load = mean_ms(lambda: RunStore(path, clock=lambda: now, checkpoint_after=10**12), 2)
            RunStore(path, clock=lambda: now, checkpoint_after=1)  # writes the checkpoint
            load_cp = mean_ms(lambda: RunStore(path, clock=lambda: now), 2)
            print(f"{n:>8} {check:>9.2f} {write:>10.3f} {line:>10.2f} {load:>9.1f} {load_cp:>10.1f}")


if __name__ == "__main__":
    main()
