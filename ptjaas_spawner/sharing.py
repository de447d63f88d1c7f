"""Sharing a running server with a colleague or a team (JupyterHub 5's shares), from a hub page.

``/hub/ptjaas/sharing``: a user shares their default server with another user by name, or with
a group they belong to, and revokes it; they also see the servers shared with them, with a link.
A share grants JupyterHub's ``access:servers`` scope on that one server (JupyterHub's own share
model, ``orm.Share``: the shared-with user or group can always revoke it too, and it ends with
the server's deletion); what the visitor may do inside is what the server allows (JupyterLab's
real-time collaboration where the image has jupyter-collaboration).

``c.PtjaasSharing`` (z2jh: ``hub.config.PtjaasSharing``) is the site's policy: ``enabled``
(admins turn sharing off; existing shares are then ignored by the page and revoked at its next
use), ``with_users`` and ``with_groups``. Each grant and revocation is on the audit record
(``share-grant``, ``share-revoke``: who, whose server, with whom); each refusal too
(``refused-share``). Form posts are strict and bounded (``hubrequests``).
"""

from __future__ import annotations

from urllib.parse import urlencode

from jupyterhub import orm
from jupyterhub.handlers.base import BaseHandler
from tornado import web
from traitlets import Bool
from traitlets.config import Configurable

from . import audit, hubrequests
from .catalog import shown
from .pagetemplates import render_page


class PtjaasSharing(Configurable):
    """The site's sharing policy."""

    enabled = Bool(True, config=True, help="""Users may share their running server with a user or a
        group they belong to from /hub/ptjaas/sharing (JupyterHub 5 shares). False: the page
        shares nothing and lists nothing.""")
    with_users = Bool(True, config=True, help="Shares with another user, by name.")
    with_groups = Bool(True, config=True, help="Shares with a group the sharer belongs to.")


class ShareRefused(ValueError):
    """A share the user may not make; the message is shown on the page."""


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




class SharingPageHandler(BaseHandler):
    def _policy(self):
        return PtjaasSharing(config=self.settings.get("config"))

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
                             "since": share.created_at.strftime("%Y-%m-%d %H:%M UTC")})
        with_me = []
        if policy.enabled:
            groups = [g.id for g in user.groups]
            q = self.db.query(orm.Share).filter(
                (orm.Share.user_id == user.id) | (orm.Share.group_id.in_(groups) if groups else False))
            for share in q:
                owner = share.spawner.user.name
                with_me.append({"owner": owner, "url": self.hub.base_url.replace("/hub/", "/") + "user/" + owner + "/",
                                "through": "you" if share.user_id == user.id else f"group {share.group.name}"})
        ns = dict(self.template_namespace, enabled=policy.enabled, with_users=policy.with_users,
                  with_groups=policy.with_groups, running=bool(spawner is not None and spawner.server is not None),
                  shares=mine, shared_with_me=with_me, groups=sorted(g.name for g in user.groups),
                  message=self.get_argument("message", "")[:300], xsrf=self.xsrf_token.decode("ascii"))
        self.write(await render_page(self, "sharing.html", ns))

    @web.authenticated
    async def post(self):
        user = self.current_user
        hubrequests.check_form(self, "sharing-page", user.name)
        action, kind, name = (self.get_argument(k, "") for k in ("action", "kind", "name"))
        policy = self._policy()
        spawner = user.orm_spawners.get("")
        try:
            target = share_target(policy, user.name, [g.name for g in user.groups], kind, name,
                                  lambda n: orm.User.find(self.db, n) is not None,
                                  lambda n: orm.Group.find(self.db, name=n) is not None) \
                if action == "share" else (kind, name)
            if action not in ("share", "revoke"):
                raise ShareRefused("Unknown action: choose share or revoke.")
            if spawner is None or (action == "share" and spawner.server is None):
                raise ShareRefused("Your server is not running: start it, then share it.")
            share_with = (orm.User.find(self.db, target[1]) if target[0] == "user"
                          else orm.Group.find(self.db, name=target[1]))
            if share_with is None:
                raise ShareRefused(f"There is no {target[0]} {shown(target[1])}.")
            if action == "share":
                orm.Share.grant(self.db, spawner, share_with)
                message = f"Your server is shared with {target[0]} {target[1]}."
            else:
                orm.Share.revoke(self.db, spawner, share_with)
                message = f"{target[0].capitalize()} {target[1]} can no longer open your server."
            audit.write(hubrequests.audit_path(self), audit.entry(
                f"share-{'grant' if action == 'share' else 'revoke'}", user.name, by=user.name, server="",
                share_with=f"{target[0]}:{target[1]}"), self.log)
        except ShareRefused as e:
            message = str(e)
            hubrequests.record(self, "refused-share", user.name, message,
                               asked={"action": action[:20], "kind": kind[:20], "name": name[:100]})
        self.redirect(self.hub.base_url + "ptjaas/sharing?" + urlencode({"message": message}))


sharing_handlers = [(r"/ptjaas/sharing", SharingPageHandler)]
