"""Team datasets over the hub's REST API and on a hub page.

REST (a user's own token; members of the team only, admins for every team):

Each call needs the caller's token to hold ``read:servers`` (GET) or ``servers`` on
themselves: a user's own API token or browser session does, a notebook server's token does not.

- ``GET    /hub/api/ptjaas/datasets/<team>[/<name>]``: ``{"team", "datasets": [{"name", "team", "claim",
  "namespace", "creator", "write", "class", "access_modes", "size", "phase"}]}``;
- ``POST   /hub/api/ptjaas/datasets/<team>`` ``{"name", "size", "class"?, "write"?}``: create
  one (201 with the dataset), within ``quota_groups.<team>.datasets``;
- ``DELETE /hub/api/ptjaas/datasets/<team>/<name>`` ``{"confirm": "<name>"}``: its creator or
  an admin, with the name typed again. Where snapshots are on for the dataset's StorageClass
  (``snapshot_classes``), a VolumeSnapshot of it is taken and ready first (kept; answered as
  ``snapshot``); otherwise a deleted dataset is gone.

Time-travel (``timetravel``, ``timetravel_ops``; members list, writers and admins act, others get 404):

- ``GET    /hub/api/ptjaas/datasets/<team>/<name>/snapshots``: ``{"dataset", "team", "snapshots": [...]}``;
- ``POST   /hub/api/ptjaas/datasets/<team>/<name>/snapshots`` ``{}``: take one now (201);
- ``POST   /hub/api/ptjaas/datasets/<team>/<name>/restore`` ``{"snapshot"}``: restore without loss
  (the current claim is snapshotted and kept), only while no server mounts it (409 names whose);
- ``POST   /hub/api/ptjaas/datasets/<team>/<name>/snapshots/<snapshot>/open`` ``{}``: open it read-only
  at the caller's next start, at ``~/data/<name>@<time>`` (members who may mount it; 202).

Page: ``/hub/ptjaas/datasets`` (``templates/pages/datasets.html``), linked from the home page.
Bodies and form posts are strict and bounded (``hubrequests``); each create and delete is on the
audit record (``dataset-create``, ``dataset-delete``, ``dataset-snapshot``, ``dataset-restore``,
``dataset-open``), each refusal too (``refused-dataset``).
The claim is made with the hub's own rights (z2jh's hub Role creates and deletes PVCs in its
namespace, as it does for homes; ``ptjaas team-manifests`` gives it the same in team namespaces).
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlencode

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler
from tornado import web

from .. import audit, hubrequests
from ..kube import ApiException, Kube
from ..snapshots import ops as snapshot_ops
from ..snapshots import policy as snapshot_policy
from ..catalog import shown
from ..pagetemplates import render_page
from . import policy, timetravel, timetravel_ops
from .mixin import DatasetsMixin

_TEXT = {"type": "string", "maxLength": 100}
hubrequests.accept(
    bodies={
        "dataset-create": hubrequests.object_schema(
            {"name": {"type": "string", "maxLength": 100}, "size": {"type": "string", "maxLength": policy.MAX_SIZE_TEXT},
             "class": _TEXT, "write": _TEXT}, ["name", "size"]),
        "dataset-delete": hubrequests.object_schema({"confirm": _TEXT}, ["confirm"]),
        "dataset-snapshot": hubrequests.object_schema({}, []),
        "dataset-open": hubrequests.object_schema({}, []),
        "dataset-restore": hubrequests.object_schema({"snapshot": {"type": "string", "maxLength": 253}}, ["snapshot"]),
    },
    queries={"dataset-list": {}},
    forms={"datasets-page": ({"action": 20, "team": 100, "name": 100, "size": policy.MAX_SIZE_TEXT,
                              "class": 100, "write": 100, "confirm": 100, "snapshot": 253}, {})},
)
_LOCKS: dict = {}  # (namespace, team) -> asyncio.Lock: one create at a time per team (count, storage)


def _spawner(user):
    spawner = user.spawner
    if not isinstance(spawner, DatasetsMixin):
        raise web.HTTPError(404, "Datasets need the ptjaas spawner")
    return spawner


def _groups(user) -> list:
    return sorted(g.name for g in user.groups)


async def list_team(spawner, team: str) -> list:
    if not policy.team_labels_ok(team):
        return []  # no claim can carry it (may_create refuses such a team)
    items = await spawner.dataset_kube().list_claims(policy.selector(team), spawner.dataset_namespace(team))
    return sorted((policy.describe(i) for i in items), key=lambda d: d["name"])


async def create(spawner, user, team: str, name, size, klass, write) -> dict:
    namespace = spawner.dataset_namespace(team)
    async with _LOCKS.setdefault((namespace, team), asyncio.Lock()):
        existing = await list_team(spawner, team) if team in _groups(user) else []
        request = policy.may_create(team, _groups(user), spawner.quota_groups, spawner.dataset_classes, existing,
                                    name, size, klass, write)
        pvc = policy.claim_manifest(team, namespace, request, user.name, spawner.dataset_classes)
        try:
            made = await spawner.dataset_kube().create_claim(pvc, namespace)
        except ApiException as e:
            if e.status == 409:
                raise policy.DatasetRefused(f"A claim named {pvc['metadata']['name']} already exists in namespace "
                                            f"{namespace}: choose another name.", 409) from None
            if e.status in (403, 422):  # a ResourceQuota on storage, an admission refusal
                raise policy.DatasetRefused(f"Kubernetes refused the dataset's claim: {_api_message(e)}", 403) from None
            raise
    return policy.describe(made)


def _api_message(e) -> str:
    try:
        return str(json.loads(e.body).get("message"))[:300]
    except (TypeError, ValueError, AttributeError):
        return str(e.reason)[:300]


async def delete(spawner, user, team: str, name: str, confirm) -> dict:
    if not policy.may_see(team, _groups(user), user.admin):
        raise policy.DatasetRefused(f"You are not a member of team {shown(team)}.", 403)
    found = [d for d in await list_team(spawner, team) if d["name"] == name]
    if not found:
        raise policy.DatasetRefused(f"Team {shown(team)} has no dataset {shown(name)}.", 404)
    d = found[0]
    problem = policy.may_delete(d, user.name, user.admin, confirm)
    if problem:
        raise policy.DatasetRefused(problem, 403 if "creator" in problem else 400)
    kube = spawner.dataset_kube()
    snapshot_class = spawner.snapshot_classes.get(await kube.storage_class_name({"spec": {
        "storageClassName": d["storage_class"]}} if d["storage_class"] else None) or "")
    if snapshot_class:  # snapshots are on for its storage: one is taken, and ready, before the delete
        snap = policy.snapshot_before_delete(d, snapshot_class, user.name, snapshot_policy.now())
        await kube.create_snapshot(snap, d["namespace"])
        try:
            await snapshot_ops.wait_ready(Kube(d["namespace"], spawner.api.api_client), snap["metadata"]["name"],
                                          spawner.snapshot_ready_timeout)
        except RuntimeError as e:
            raise policy.DatasetRefused(f"Dataset {d['name']} is not deleted: its snapshot first failed ({e}).",
                                        503) from None
        d = dict(d, snapshot=snap["metadata"]["name"])
    await kube.delete_claim(d["claim"], namespace=d["namespace"])
    return d


def _record(handler, action, d, user):
    audit.write(hubrequests.audit_path(handler), audit.entry(
        action, user.name, by=user.name, dataset=d["name"], team=d["team"], claim=d["claim"],
        namespace=d["namespace"], size=d["size"], write=d["write"], access_modes=d["access_modes"],
        snapshot=d.get("snapshot")), handler.log)


def _record_snapshot(handler, action, d, user, **fields):
    fields = {k: v for k, v in fields.items() if k not in ("dataset", "team")}
    audit.write(hubrequests.audit_path(handler), audit.entry(
        action, user.name, by=user.name, dataset=d["name"], team=d["team"], namespace=d["namespace"], **fields),
        handler.log)


async def _page_snapshots(spawner, d) -> list:
    try:
        return (await timetravel_ops.snapshots(spawner, d))[:20]
    except ApiException:  # no snapshot CRDs on this cluster: the page still lists the datasets
        return []


def _refused(handler, e, user_name, team, name):
    hubrequests.record(handler, "refused-dataset", user_name, str(e), team=str(team)[:100],
                       dataset=name[:100] if isinstance(name, str) else None)


class DatasetAPIHandler(APIHandler):
    def _user(self, scope):
        """The requesting user, whose token must hold ``scope`` on themselves (a notebook
        server's own token does not: code in a notebook cannot create or delete datasets)."""
        user = self.current_user
        if user is None or not hasattr(user, "groups"):
            hubrequests.refuse(self, 403, "refused-access", None, "Datasets are for signed-in users.")
        if not {scope, f"{scope}!user={user.name}"} & set(self.expanded_scopes):
            hubrequests.refuse(self, 403, "refused-access", user.name,
                               f"This token lacks the '{scope}' scope on {user.name}, which datasets need.")
        return user

    def _answer(self, status, body):
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(body))

    async def get(self, team, name=None):
        user = self._user("read:servers")
        hubrequests.check_query(self, "dataset-list", user.name)
        if not policy.may_see(team, _groups(user), user.admin):
            message = f"You are not a member of team {shown(team)}."
            hubrequests.record(self, "refused-dataset", user.name, message, team=team[:100])
            return self._answer(403, {"status": 403, "message": message})
        listed = await list_team(_spawner(user), team)
        if name is None:
            return self._answer(200, {"team": team, "datasets": listed})
        found = [d for d in listed if d["name"] == name]
        if not found:
            message = f"Team {shown(team)} has no dataset {shown(name)}."
            hubrequests.record(self, "refused-dataset", user.name, message, team=team[:100], dataset=name[:100])
            return self._answer(404, {"status": 404, "message": message})
        self._answer(200, found[0])

    async def post(self, team, name=None):
        user = self._user("servers")
        if name is not None:
            raise web.HTTPError(405)
        body = hubrequests.json_body(self, "dataset-create", user.name)
        try:
            d = await create(_spawner(user), user, team, body["name"], body["size"], body.get("class"),
                             body.get("write"))
        except policy.DatasetRefused as e:
            _refused(self, e, user.name, team, body["name"])
            return self._answer(e.status, {"status": e.status, "message": str(e)})
        _record(self, "dataset-create", d, user)
        self._answer(201, d)

    async def delete(self, team, name=None):
        user = self._user("servers")
        body = hubrequests.json_body(self, "dataset-delete", user.name)
        try:
            if name is None:
                raise policy.DatasetRefused("Name the dataset to delete: DELETE .../datasets/<team>/<name>.")
            d = await delete(_spawner(user), user, team, name, body["confirm"])
        except policy.DatasetRefused as e:
            _refused(self, e, user.name, team, name)
            return self._answer(e.status, {"status": e.status, "message": str(e)})
        _record(self, "dataset-delete", d, user)
        self._answer(200, {"deleted": d["name"], "team": d["team"], "snapshot": d.get("snapshot")})


def _opened_message(out) -> str:
    return (f"Snapshot {out['snapshot']} of dataset {out['dataset']} opens read-only at {out['folder']} "
            + ("at your next start (your server is running: stop it, then start it)." if out["running"]
               else "at your next start."))


class DatasetPageHandler(BaseHandler):
    @web.authenticated
    async def get(self):
        user = self.current_user
        spawner = _spawner(user)
        teams = [t for t in _groups(user) if policy.team_limits(spawner.quota_groups, t) is not None]
        listed = {t: await list_team(spawner, t) for t in teams}
        snaps = {f"{t}/{d['name']}": await _page_snapshots(spawner, d) for t in teams for d in listed[t]}
        classes = policy.classes_or_default(spawner.dataset_classes)
        ns = dict(self.template_namespace, teams=teams, datasets=listed, me=user.name, admin=user.admin,
                  classes={k: c.get("display_name") or k for k, c in classes.items()}, rules=policy.WRITE_RULES,
                  limits={t: policy.team_limits(spawner.quota_groups, t) for t in teams}, snapshots=snaps,
                  may_change={f"{t}/{d['name']}": not timetravel.may_change(d, user.name, _groups(user), user.admin)
                              for t in teams for d in listed[t]},
                  may_open={f"{t}/{d['name']}": not timetravel.may_open(d, user.name, _groups(user), user.admin)
                            for t in teams for d in listed[t]},
                  opening={f"{p['team']}/{p['dataset']}/{p['snapshot']}" for p in spawner.dataset_views_pending or ()},
                  message=self.get_argument("message", "")[:300], xsrf=self.xsrf_token.decode("ascii"))
        self.write(await render_page(self, "datasets.html", ns))

    @web.authenticated
    async def post(self):
        user = self.current_user
        hubrequests.check_form(self, "datasets-page", user.name)
        args = {k: self.get_argument(k, "") for k in ("action", "team", "name", "size", "class", "write", "confirm",
                                                      "snapshot")}
        spawner = _spawner(user)
        try:
            if args["action"] == "create":
                d = await create(spawner, user, args["team"], args["name"], args["size"], args["class"] or None,
                                 args["write"] or None)
                _record(self, "dataset-create", d, user)
                message = f"Dataset {d['name']} of team {d['team']} is made: mount it at your next start."
            elif args["action"] == "delete":
                d = await delete(spawner, user, args["team"], args["name"], args["confirm"])
                _record(self, "dataset-delete", d, user)
                message = f"Dataset {d['name']} of team {d['team']} is deleted." + (
                    f" Its snapshot {d['snapshot']} is kept (an admin can bring it back)." if d.get("snapshot") else "")
            elif args["action"] == "snapshot":
                d = await timetravel_ops.dataset(spawner, user, args["team"], args["name"])
                snap = await timetravel_ops.take(spawner, user, d)
                _record_snapshot(self, "dataset-snapshot", d, user, snapshot=snap["name"])
                message = f"Snapshot {snap['name']} of dataset {d['name']} is being taken."
            elif args["action"] == "open":
                d = await timetravel_ops.dataset(spawner, user, args["team"], args["name"])
                out = await timetravel_ops.open_at_next_start(spawner, user, d, args["snapshot"])
                _record_snapshot(self, "dataset-open", d, user, snapshot=out["snapshot"], mount_path=out["folder"])
                message = _opened_message(out)
            elif args["action"] == "restore":
                d = await timetravel_ops.dataset(spawner, user, args["team"], args["name"])
                out = await timetravel_ops.restore(spawner, user, d, args["snapshot"])
                _record_snapshot(self, "dataset-restore", d, user, **out)
                message = (f"Dataset {d['name']} is restored from snapshot {out['snapshot']}; its previous content "
                           f"is kept as claim {out['previous_claim']} (snapshot {out['before_restore_snapshot']}).")
            else:
                raise policy.DatasetRefused("Unknown action: choose create, delete, snapshot, open or restore.")
        except policy.DatasetRefused as e:
            message = str(e)
            _refused(self, e, user.name, args["team"], args["name"])
        self.redirect(self.hub.base_url + "ptjaas/datasets?" + urlencode({"message": message}))


class DatasetSnapshotAPIHandler(DatasetAPIHandler):
    """``GET|POST .../datasets/<team>/<name>/snapshots`` (list, take now) and
    ``POST .../datasets/<team>/<name>/restore`` ``{"snapshot"}``."""

    async def get(self, team, name, action):
        user = self._user("read:servers")
        hubrequests.check_query(self, "dataset-list", user.name)
        if action != "snapshots":
            raise web.HTTPError(405)
        try:
            d = await timetravel_ops.dataset(_spawner(user), user, team, name)
        except policy.DatasetRefused as e:
            _refused(self, e, user.name, team, name)
            return self._answer(e.status, {"status": e.status, "message": str(e)})
        self._answer(200, {"dataset": d["name"], "team": d["team"],
                           "snapshots": await timetravel_ops.snapshots(_spawner(user), d)})

    async def post(self, team, name, action):
        user = self._user("servers")
        spawner = _spawner(user)
        body = hubrequests.json_body(self, "dataset-snapshot" if action == "snapshots" else "dataset-restore",
                                     user.name)
        try:
            d = await timetravel_ops.dataset(spawner, user, team, name)
            if action == "snapshots":
                snap = await timetravel_ops.take(spawner, user, d)
                _record_snapshot(self, "dataset-snapshot", d, user, snapshot=snap["name"])
                return self._answer(201, snap)
            out = await timetravel_ops.restore(spawner, user, d, body["snapshot"])
        except policy.DatasetRefused as e:
            _refused(self, e, user.name, team, name)
            return self._answer(e.status, {"status": e.status, "message": str(e)})
        _record_snapshot(self, "dataset-restore", d, user, **out)
        self._answer(200, out)


class DatasetSnapshotOpenAPIHandler(DatasetAPIHandler):
    """``POST .../datasets/<team>/<name>/snapshots/<snapshot>/open`` ``{}``: at the caller's next
    start (``timetravel_ops.open_at_next_start``)."""

    async def get(self, team, name, snapshot):
        raise web.HTTPError(405)

    async def delete(self, team, name, snapshot):
        raise web.HTTPError(405)

    async def post(self, team, name, snapshot):
        user = self._user("servers")
        hubrequests.json_body(self, "dataset-open", user.name)
        spawner = _spawner(user)
        try:
            d = await timetravel_ops.dataset(spawner, user, team, name)
            out = await timetravel_ops.open_at_next_start(spawner, user, d, snapshot)
        except policy.DatasetRefused as e:
            _refused(self, e, user.name, team, name)
            return self._answer(e.status, {"status": e.status, "message": str(e)})
        _record_snapshot(self, "dataset-open", d, user, snapshot=out["snapshot"], mount_path=out["folder"])
        self._answer(202, dict(out, message=_opened_message(out)))


dataset_handlers = [
    (r"/ptjaas/datasets", DatasetPageHandler),
    (r"/api/ptjaas/datasets/([^/]+)", DatasetAPIHandler),
    (r"/api/ptjaas/datasets/([^/]+)/([^/]+)", DatasetAPIHandler),
    (r"/api/ptjaas/datasets/([^/]+)/([^/]+)/(snapshots|restore)", DatasetSnapshotAPIHandler),
    (r"/api/ptjaas/datasets/([^/]+)/([^/]+)/snapshots/([^/]+)/open", DatasetSnapshotOpenAPIHandler),
]
