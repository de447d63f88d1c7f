"""One culling pass over N users with running servers: ptjaas culler vs jupyterhub-idle-culler.

Both cullers run, in the same process, against the same data served by a small fake JupyterHub
REST API (tornado, loopback, a free port, in a subprocess so it does not share the cullers'
event loop). It paginates like JupyterHub 5+ (default page 50, max 200, ``state=ready`` filter,
``application/jupyterhub-pagination+json``), answers ``DELETE .../server`` with 204, and counts
requests. The data is reset before each run; every run culls exactly the same servers (checked).

    python benchmarks/cull.py [--users 2000] [--idle-fraction 0.1] [--hub-ms 0]

``--hub-ms`` adds a simulated hub cost per request (ms) plus 0.05 ms per user model listed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import requests


TOKEN = "bench-token"
SIZES = {"cpu": {"cull_idle_timeout": 4 * 3600}, "gpu": {"gpu": 1, "cull_idle_timeout": 1800}}


def make_users(n: int, idle_fraction: float, seed: int = 1) -> list[dict]:
    """n users, each with one ready default server; ~idle_fraction idle for 2-3h, rest < 20 min."""
    rnd = random.Random(seed)
    now = datetime.now(timezone.utc)
    iso = lambda d: d.isoformat().replace("+00:00", "Z")  # noqa: E731
    users = []
    for i in range(n):
        idle = rnd.random() < idle_fraction
        minutes = rnd.uniform(120, 180) if idle else rnd.uniform(0, 20)
        last = now - timedelta(minutes=minutes)
        size = "gpu" if i % 4 == 0 else "cpu"
        name = f"user-{i:05d}"
        users.append({
            "kind": "user", "name": name, "admin": False, "roles": ["user"], "groups": [],
            "server": f"/user/{name}/", "pending": None, "created": iso(now - timedelta(days=30)),
            "last_activity": iso(last),
            "servers": {"": {
                "name": "", "last_activity": iso(last), "started": iso(now - timedelta(hours=5)),
                "pending": None, "ready": True, "stopped": False, "url": f"/user/{name}/",
                "user_options": {"size": size, "image": "datascience", "version": "2025.01"},
                "progress_url": f"/hub/api/users/{name}/server/progress",
            }},
        })
    return users


# ---------------------------------------------------------------- fake hub (subprocess)

def serve(n: int, idle_fraction: float, hub_ms: float) -> None:
    from tornado import web
    from tornado.ioloop import IOLoop

    state = {"users": {}, "counts": {}}

    def reset():
        state["users"] = {u["name"]: u for u in make_users(n, idle_fraction)}
        state["counts"] = {}
        state["culled"] = []

    reset()

    class Base(web.RequestHandler):
        def prepare(self):
            if self.request.path.startswith("/hub/api") and \
                    self.request.headers.get("Authorization") != f"token {TOKEN}":
                raise web.HTTPError(403)
            key = f"{self.request.method} {self.kind}"
            state["counts"][key] = state["counts"].get(key, 0) + 1

        async def cost(self, items=0):
            if hub_ms:
                await asyncio.sleep((hub_ms + 0.05 * items) / 1000)

    class Root(Base):
        kind = "/"

        async def get(self):
            await self.cost()
            self.write({"version": "5.5.1"})

    class Users(Base):
        kind = "/users"

        async def get(self):
            st = self.get_argument("state", None)
            paginated = "jupyterhub-pagination" in self.request.headers.get("Accept", "")
            offset = int(self.get_argument("offset", 0))
            limit = min(max(int(self.get_argument("limit", 50 if paginated else 200)), 1), 200)
            users = list(state["users"].values())
            if st in ("ready", "active"):
                users = [u for u in users if u["servers"]]
            elif st == "inactive":
                users = [u for u in users if not u["servers"]]
            page = users[offset:offset + limit]
            await self.cost(len(page))
            if not paginated:
                self.write(json.dumps(page))
                return
            nxt = None
            if offset + limit < len(users):
                url = f"{self.request.protocol}://{self.request.host}{self.request.path}?" + "&".join(
                    f"{k}={v}" for k, v in (("state", st), ("offset", offset + limit), ("limit", limit)) if v)
                nxt = {"offset": offset + limit, "limit": limit, "url": url}
            self.write({"items": page, "_pagination": {"offset": offset, "limit": limit,
                                                        "total": len(users), "next": nxt}})

    class Server(Base):
        kind = "/users/{name}/server"

        async def delete(self, name, server_name=""):
            await self.cost()
            u = state["users"].get(name)
            if not u or server_name not in u["servers"]:
                raise web.HTTPError(400, "not running")
            del u["servers"][server_name]
            state["culled"].append(f"{name}/{server_name}" if server_name else name)
            self.set_status(204)

    class Control(web.RequestHandler):
        def get(self):
            self.write({"counts": state["counts"], "culled": sorted(state["culled"])})

        def post(self):
            reset()

    app = web.Application([
        (r"/hub/api/?", Root),
        (r"/hub/api/users", Users),
        (r"/hub/api/users/([^/]+)/server", Server),
        (r"/hub/api/users/([^/]+)/servers/([^/]+)", Server),
        (r"/_control", Control),
    ])
    server = app.listen(0, address="127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    print(port, flush=True)
    IOLoop.current().start()


# ---------------------------------------------------------------- runs

async def run_ours(api_url: str, concurrency: int, page_size: int, per_size: bool):
    from ptjaas_spawner.hubapi import HubAPI
    from ptjaas_spawner.culler.policy import CullPolicy
    from ptjaas_spawner.culler.service import cull_pass

    policy = CullPolicy.from_dict({"sizes": SIZES} if per_size else {}, timeout=3600)
    log = logging.getLogger("ours")
    async with HubAPI(api_url, TOKEN, concurrency=concurrency, log=log) as api:
        res = await cull_pass(api, policy, page_size=page_size, log=log)
    return res


async def run_theirs(api_url: str, concurrency: int, page_size: int):
    from importlib.metadata import version

    from jupyterhub_idle_culler import cull_idle

    kwargs = {}
    if int(version("jupyterhub-idle-culler").split(".")[0]) >= 2:  # 1.x logs to tornado's app_log
        kwargs["logger"] = logging.getLogger("theirs")
    await cull_idle(url=api_url, api_token=TOKEN, inactive_limit=3600, concurrency=concurrency,
                    api_page_size=page_size, **kwargs)


def measure(base: str, label: str, coro_factory) -> dict:
    requests.post(f"{base}/_control").raise_for_status()
    t0 = time.perf_counter()
    asyncio.run(coro_factory())
    wall = time.perf_counter() - t0
    data = requests.get(f"{base}/_control").json()
    counts = data["counts"]
    return {"label": label, "wall": wall, "requests": sum(counts.values()), "counts": counts,
            "culled": data["culled"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--idle-fraction", type=float, default=0.1)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--hub-ms", type=float, default=0.0)
    ap.add_argument("--repeat", type=int, default=3, help="runs per culler (best wall time is shown)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.users, args.idle_fraction, args.hub_ms)
        return
    logging.basicConfig(level=logging.WARNING)
    proc = subprocess.Popen([sys.executable, __file__, "--serve", f"--users={args.users}",
                             f"--idle-fraction={args.idle_fraction}", f"--hub-ms={args.hub_ms}"],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        api = f"{base}/hub/api"
        from jupyterhub_idle_culler import __version__ as theirs

        runs = [
            (f"jupyterhub-idle-culler {theirs} (defaults: page 50)",
             lambda: run_theirs(api, args.concurrency, 0)),
            (f"jupyterhub-idle-culler {theirs} (--api-page-size=200)",
             lambda: run_theirs(api, args.concurrency, 200)),
            ("ptjaas culler (same global timeout)", lambda: run_ours(api, args.concurrency, 0, False)),
        ]
        results = []
        for label, factory in runs:
            best = None
            for _ in range(args.repeat):
                r = measure(base, label, factory)
                if best is None or r["wall"] < best["wall"]:
                    best = r
            results.append(best)
        culled = {tuple(r["culled"]) for r in results}
        same = len(culled) == 1
        print(f"\nOne culling pass: {args.users} users with ready servers, "
              f"{len(results[0]['culled'])} idle past the 1h timeout, concurrency {args.concurrency}, "
              f"simulated hub cost {args.hub_ms} ms/request (best of {args.repeat})\n")
        print(f"{'culler':<52} {'hub requests':>12} {'wall s':>8}   breakdown")
        for r in results:
            bd = ", ".join(f"{k}: {v}" for k, v in sorted(r["counts"].items()))
            print(f"{r['label']:<52} {r['requests']:>12} {r['wall']:>8.3f}   {bd}")
        print(f"\nsame servers culled by all: {same}")
        # per-size policy: same data, GPU servers get 30 min, CPU 4 h (idle-culler cannot express this)
        best = min((measure(base, "per-size", lambda: run_ours(api, args.concurrency, 0, True))
                    for _ in range(args.repeat)), key=lambda r: r["wall"])
        print(f"ptjaas culler with per-size timeouts (GPU 30 min, CPU 4 h): {best['requests']} requests, "
              f"{best['wall']:.3f} s, culled {len(best['culled'])}")
        if not same:
            sys.exit("the cullers disagreed on what to cull")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
