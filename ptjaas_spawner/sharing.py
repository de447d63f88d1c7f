"""Sharing a running server with a colleague or a team (JupyterHub 5's shares), from a hub page.

``/hub/ptjaas/sharing``: a user shares their default server with another user by name, or with
a group they belong to, and revokes it; they also see the servers shared with them, with a link.
A share grants JupyterHub's ``access:servers`` scope on that one server (JupyterHub's own share
model, ``orm.Share``: the shared-with user or group can always revoke it too, and it ends with
the server's deletion); what the visitor may do inside is what the server allows (JupyterLab's
real-time collaboration where the image has jupyter-collaboration).

A share is "view only" or "collaborate" (``modes``): besides ``access:servers`` it grants the
custom scopes ``custom:jupyter_server:read:*`` (view) or read, write and execute (collaborate)
on that server, which the server's authorizer (``serverauth.ShareModeAuthorizer``) enforces: a
viewer lists and opens files, a save or a new kernel is refused (403).

``c.PtjaasSharing`` (z2jh: ``hub.config.PtjaasSharing``) is the site's policy: ``enabled``
(admins turn sharing off; existing shares are then ignored by the page and revoked at its next
use), ``with_users``, ``with_groups``, ``modes`` and ``server_authorizer``. Each grant and
revocation is on the audit record
(``share-grant``, ``share-revoke``: who, whose server, with whom); each refusal too
(``refused-share``). Form posts are strict and bounded (``hubrequests``).
"""

from __future__ import annotations

from urllib.parse import urlencode

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler
from sqlalchemy import event
from sqlalchemy.orm import object_session
from tornado import web
from traitlets import Bool, List, TraitError, Unicode, validate
from traitlets.config import Configurable

from . import audit, hubrequests
from .catalog import shown
from .pagetemplates import render_page
from .remembered import Remembered, settings_key


class PtjaasSharing(Configurable):
    """The site's sharing policy."""

    enabled = Bool(True, config=True, help="""Users may share their running server with a user or a
        group they belong to from /hub/ptjaas/sharing (JupyterHub 5 shares). False: the page
        shares nothing and lists nothing.""")
    with_users = Bool(True, config=True, help="Shares with another user, by name.")
    with_groups = Bool(True, config=True, help="Shares with a group the sharer belongs to.")
    modes = List(Unicode(), ["view", "collaborate"], config=True, help="""What a share may let its
        visitor do, the first being the page's default: "view" (open and list files; saving,
        uploading and running code are refused) and "collaborate" (everything the owner does).
        "view" needs the server to run `server_authorizer`.""")
    server_authorizer = Unicode("", config=True,
        help="""The single-user servers' jupyter-server authorizer that enforces a share's mode,
        passed as --ServerApp.authorizer_class to servers of catalog images (an image of one's own
        may lack it). The images must contain it: ptjaas's notebook images copy
        ptjaas_spawner/serverauth.py, and helm-values/values.yaml sets
        "ptjaas_spawner.serverauth.ShareModeAuthorizer". Empty (the default: any image starts):
        "view" shares are not offered.""")

    @validate("modes")
    def _check_modes(self, proposal):
        modes = list(proposal["value"])
        unknown = [m for m in modes if m not in MODES]
        if unknown or not modes or len(set(modes)) != len(modes):
            raise TraitError(f"c.PtjaasSharing.modes must list one or both of {', '.join(MODES)}, "
                             f"each once; got {', '.join(shown(m) for m in modes[:5]) or 'nothing'}")
        return modes

    def offered_modes(self, custom_image: bool = False) -> list:
        """The modes the page offers: "view" only where the server can enforce it."""
        return [m for m in self.modes if m != "view" or (self.server_authorizer and not custom_image)]


READ = "custom:jupyter_server:read:*"
WRITE = "custom:jupyter_server:write:*"
EXECUTE = "custom:jupyter_server:execute:*"
# the scopes a share of each mode grants (JupyterHub adds the !server=<owner>/<name> filter)
MODES = {"view": ("access:servers", READ), "collaborate": ("access:servers", READ, WRITE, EXECUTE)}
MODE_WORDS = {"view": "view only", "collaborate": "collaborate"}
# c.JupyterHub.custom_scopes: pages.install defines them (scopes must be defined to be granted)
CUSTOM_SCOPES = {
    READ: {"description": "Open and list files on a server shared with you (view only)."},
    WRITE: {"description": "Change files on a server shared with you.", "subscopes": [READ]},
    EXECUTE: {"description": "Run code on a server shared with you.", "subscopes": [WRITE, READ]},
}


def mode_of(scopes) -> str:
    """The mode a share's scopes amount to ("collaborate" for a share made before modes)."""
    bases = {s.partition("!")[0] for s in scopes}
    return "view" if READ in bases and WRITE not in bases and EXECUTE not in bases else "collaborate"


def server_args(policy: PtjaasSharing, custom_image: bool) -> list:
    """The single-user server's arguments for the policy: the authorizer enforcing "view"."""
    if policy.enabled and "view" in policy.offered_modes(custom_image):
        return [f"--ServerApp.authorizer_class={policy.server_authorizer}"]
    return []


def runs_custom_image(orm_spawner) -> bool:
    """The server was started from an image of one's own (which may lack the authorizer)."""
    return bool(orm_spawner is not None and (orm_spawner.user_options or {}).get("custom_image"))


class ShareRefused(ValueError):
    """A share the user may not make; the message is shown on the page."""


def share_mode(policy: PtjaasSharing, mode: str, custom_image: bool = False) -> str:
    """The mode asked for (the policy's first offered one if none), if the policy offers it."""
    offered = policy.offered_modes(custom_image)
    mode = (mode or "").strip() or (offered[0] if offered else "")
    if mode not in offered:
        raise ShareRefused(f"A share here may be: {', '.join(MODE_WORDS[m] for m in offered)}; "
                           f"not {shown(mode[:40])}.")
    return mode


def share_target(policy: PtjaasSharing, sharer_name: str, sharer_groups, kind: str, name: str,
                 user_exists, group_exists) -> tuple:
    """``(kind, name)`` of whom to share with, checked against the policy (pure: the two
    ``*_exists`` callables look names up). Raises ``ShareRefused``."""
    if not policy.enabled:
        raise ShareRefused("Sharing is turned off on this hub.")
    name = (name or "").strip()
    if not name:
        raise ShareRefused("Enter the user or group to share with.")
    if kind == "user":
        if not policy.with_users:
            raise ShareRefused("Sharing with a single user is turned off on this hub; share with a group.")
        if name == sharer_name:
            raise ShareRefused("Your server is already yours.")
        if not user_exists(name):
            raise ShareRefused(f"There is no user {shown(name)}.")
        return "user", name
    if kind == "group":
        if not policy.with_groups:
            raise ShareRefused("Sharing with a group is turned off on this hub; share with a user.")
        if name not in set(sharer_groups or ()):
            raise ShareRefused(f"You may only share with a group you belong to; you are not in "
                               f"{shown(name)}.")
        if not group_exists(name):
            raise ShareRefused(f"There is no group {shown(name)}.")
        return "group", name
    raise ShareRefused("Choose to share with a user or a group.")




_POLICIES = Remembered(8)


def sharing_policy(config) -> PtjaasSharing:
    """The site's ``c.PtjaasSharing`` read from ``config`` (the hub's), made once per value of
    that section and shared (every start's arguments read it: a new Configurable each time was
    most of ``get_args``'s cost). Settings that fail validation are never remembered."""
    section = config["PtjaasSharing"] if config is not None and "PtjaasSharing" in config else {}
    return _POLICIES.get_or_make(settings_key(dict(section)), lambda: PtjaasSharing(config=config))


class SharingPageHandler(BaseHandler):
    def _policy(self):
        return sharing_policy(self.settings.get("config"))

    @web.authenticated
    async def get(self):
        user = self.current_user
        policy = self._policy()
        spawner = user.orm_spawners.get("")
        mine = []
        if policy.enabled and spawner is not None:
            for share in spawner.shares:
                kind = "user" if share.user is not None else "group"
                mine.append({"kind": kind, "name": (share.user or share.group).name,
                             "mode": MODE_WORDS[mode_of(share.scopes)],
                             "since": share.created_at.strftime("%Y-%m-%d %H:%M UTC")})
        with_me = []
        if policy.enabled:
            groups = [g.id for g in user.groups]
            q = self.db.query(orm.Share).filter(
                (orm.Share.user_id == user.id) | (orm.Share.group_id.in_(groups) if groups else False))
            for share in q:
                owner = share.spawner.user.name
                with_me.append({"owner": owner, "mode": MODE_WORDS[mode_of(share.scopes)],
                                "url": self.hub.base_url.replace("/hub/", "/") + "user/" + owner + "/",
                                "through": "you" if share.user_id == user.id else f"group {share.group.name}"})
        offered = policy.offered_modes(runs_custom_image(spawner))
        ns = dict(self.template_namespace, enabled=policy.enabled, with_users=policy.with_users,
                  with_groups=policy.with_groups, modes=[(m, MODE_WORDS[m]) for m in offered],
                  running=bool(spawner is not None and spawner.server is not None),
                  shares=mine, shared_with_me=with_me, groups=sorted(g.name for g in user.groups),
                  message=self.get_argument("message", "")[:300], xsrf=self.xsrf_token.decode("ascii"))
        self.write(await render_page(self, "sharing.html", ns))

    @web.authenticated
    async def post(self):
        user = self.current_user
        hubrequests.check_form(self, "sharing-page", user.name)
        action, kind, name, mode = (self.get_argument(k, "") for k in ("action", "kind", "name", "mode"))
        policy = self._policy()
        spawner = user.orm_spawners.get("")
        try:
            target = share_target(policy, user.name, [g.name for g in user.groups], kind, name,
                                  lambda n: orm.User.find(self.db, n) is not None,
                                  lambda n: orm.Group.find(self.db, name=n) is not None) \
                if action == "share" else (kind, name)
            mode = share_mode(policy, mode, runs_custom_image(spawner)) if action == "share" else ""
            if action not in ("share", "revoke"):
                raise ShareRefused("Unknown action: choose share or revoke.")
            if spawner is None or (action == "share" and spawner.server is None):
                raise ShareRefused("Your server is not running: start it, then share it.")
            share_with = (orm.User.find(self.db, target[1]) if target[0] == "user"
                          else orm.Group.find(self.db, name=target[1]))
            if share_with is None:
                raise ShareRefused(f"There is no {target[0]} {shown(target[1])}.")
            if action == "share":
                # a share's scopes are replaced, not added to: collaborate -> view takes rights away
                orm.Share.revoke(self.db, spawner, share_with)
                orm.Share.grant(self.db, spawner, share_with, scopes=list(MODES[mode]))
                message = f"Your server is shared with {target[0]} {target[1]} ({MODE_WORDS[mode]})."
            else:
                orm.Share.revoke(self.db, spawner, share_with)
                message = f"{target[0].capitalize()} {target[1]} can no longer open your server."
            audit.write(hubrequests.audit_path(self), audit.entry(
                f"share-{'grant' if action == 'share' else 'revoke'}", user.name, by=user.name, server="",
                share_with=f"{target[0]}:{target[1]}", mode=mode or None), self.log)
        except ShareRefused as e:
            message = str(e)
            hubrequests.record(self, "refused-share", user.name, message,
                               asked={"action": action[:20], "kind": kind[:20], "name": name[:100],
                                      "mode": mode[:20]})
        self.redirect(self.hub.base_url + "ptjaas/sharing?" + urlencode({"message": message}))


def visitor_mode(shares, visitor_id: int, group_ids) -> str:
    """What a visitor's shares on one server allow (pure): ``collaborate`` if any share does,
    else ``view`` if any share exists, else ``none``."""
    modes = {mode_of(s.scopes) for s in shares if s.user_id == visitor_id or s.group_id in group_ids}
    return "collaborate" if "collaborate" in modes else ("view" if modes else "none")


class ShareModeAPIHandler(APIHandler):
    """``GET /hub/api/ptjaas/sharing/mode/<visitor>``: asked by the owner's server (its API
    token; ``serverauth.ShareModeAuthorizer``) what ``visitor`` may do on it."""

    def get(self, visitor):
        owner = self.current_user
        if owner is None or not self.has_scope(f"access:servers!server={owner.name}/"):
            hubrequests.refuse(self, 403, "refused-access", getattr(owner, "name", None),
                               "Only the server's own token may ask what its visitors may do.")
        spawner = owner.orm_spawners.get("")
        found = orm.User.find(self.db, visitor[:255])
        mode = "none"
        if spawner is not None and found is not None:
            mode = visitor_mode(spawner.shares, found.id, {g.id for g in found.groups})
        self.write({"mode": mode})


# JupyterHub's own OAuth client (``orm.APIToken.new``'s default): never a server's
HUB_OWN_CLIENTS = (None, "", "jupyterhub")


def record_visit(mapper, connection, token) -> None:
    """SQLAlchemy ``after_insert`` listener on JupyterHub's ``orm.APIToken`` (``pages.install``
    registers it): a token issued through a server's OAuth client to someone other than its owner
    is a visit of that server (one per login, not per request): one ``share-visit`` line on the
    owner's audit record (who, whose server, the mode their shares allow: ``view``,
    ``collaborate``, or ``none`` for an admin or a role with ``access:servers``)."""
    from jupyterhub.app import JupyterHub  # the hub process's own app (config: the audit file)

    if not JupyterHub.initialized() or token.user is None or token.client_id in HUB_OWN_CLIENTS:
        return  # (the hub's own client issues each server's API token at every start: no query)
    session = object_session(token)
    with session.no_autoflush:
        client = session.query(orm.OAuthClient).filter_by(identifier=token.client_id).one_or_none()
        spawner = client.spawner if client is not None else None
        if spawner is None or spawner.user is None or spawner.user.id == token.user.id:
            return
        visitor = token.user
        mode = visitor_mode(spawner.shares, visitor.id, {g.id for g in visitor.groups})
        app = JupyterHub.instance()
        audit.write(hubrequests.config_audit_path(app.config), audit.entry(
            "share-visit", spawner.user.name, by=visitor.name, server=spawner.name, mode=mode), app.log)


def record_visits() -> None:
    """Register ``record_visit`` (once per process)."""
    if not event.contains(orm.APIToken, "after_insert", record_visit):
        event.listen(orm.APIToken, "after_insert", record_visit)


sharing_handlers = [(r"/ptjaas/sharing", SharingPageHandler),
                    (r"/api/ptjaas/sharing/mode/([^/]+)", ShareModeAPIHandler)]
