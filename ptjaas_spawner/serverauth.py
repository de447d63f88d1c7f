"""Inside the single-user server: what a visitor of a shared server may do (view or collaborate).

The hub's sharing page (``sharing.py``) records a share's mode on JupyterHub's share itself (its
scopes: ``custom:jupyter_server:read:*`` to view; read, write and execute to collaborate). A
visitor's login cannot carry those scopes (JupyterHub 5 and 6 issue a server's OAuth token from
the visitor's roles, not their shares: only ``access:servers`` comes through), so this
authorizer asks the hub, with the server's own API token, what the visitor's shares on this
server allow (``GET /hub/api/ptjaas/sharing/mode/<visitor>``, answered by ``sharing.py``; kept
for ``CACHE_SECONDS`` per login: a new login asks again, an open one sees a change within that),
and then checks each request's action (jupyter-server's Authorizer API:
``read``, ``write``, ``execute`` on ``contents``, ``kernels``, ...); a refused one is
jupyter-server's 403. The owner may do everything; a visitor with no share (an admin's
``access:servers`` role) is checked as JupyterHub checks by default (access is enough). If the
hub does not answer, a visitor may only read.

Self-contained on purpose (only ``jupyterhub``, ``tornado`` and the standard library): a notebook
image that does not install ptjaas copies this one file (see ``images/notebook-cpu/Dockerfile``).
The spawner passes ``--ServerApp.authorizer_class=ptjaas_spawner.serverauth.ShareModeAuthorizer``
(``c.PtjaasSharing.server_authorizer``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from urllib.parse import quote

from jupyterhub.singleuser.extension import JupyterHubAuthorizer
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

CACHE_SECONDS = 30
ALLOWED = {"view": {"read"}, "collaborate": None}  # None: every action


class ShareModeAuthorizer(JupyterHubAuthorizer):
    """The owner does everything; a visitor as far as their share's mode allows."""

    _modes: dict = {}

    async def share_mode(self, visitor: str, login: str) -> str:
        """``view``, ``collaborate``, ``none`` (no share) or ``unknown`` (the hub did not say)."""
        if len(self._modes) > 1000:
            self._modes.clear()
        cached = self._modes.get((visitor, login))
        if cached and cached[1] > time.monotonic():
            return cached[0]
        api = os.environ.get("JUPYTERHUB_API_URL", "").rstrip("/")
        url = f"{api}/ptjaas/sharing/mode/{quote(visitor, safe='')}"
        try:
            r = await AsyncHTTPClient().fetch(url, request_timeout=5, headers={
                "Authorization": "token " + os.environ.get("JUPYTERHUB_API_TOKEN", "")})
            mode = json.loads(r.body).get("mode", "unknown")
        except (HTTPClientError, OSError, ValueError) as e:
            self.log.warning("the hub did not say what %s's share allows (%s): read only", visitor, e)
            return "unknown"
        self._modes[(visitor, login)] = (mode, time.monotonic() + CACHE_SECONDS)
        return mode

    async def is_authorized(self, handler, user, action, resource):
        if not super().is_authorized(handler, user, action, resource):
            return False
        if user.username == os.environ.get("JUPYTERHUB_USER", ""):
            return True
        login = hashlib.sha256((self.hub_auth.get_token(handler) or "").encode()).hexdigest()
        mode = await self.share_mode(user.username, login)
        if mode == "none":
            return True  # not a share: JupyterHub's own rule (access:servers) holds
        allowed = ALLOWED.get(mode, {"read"})
        if allowed is not None and action not in allowed:
            self.log.info("%s may not %s %s on this shared server (%s share)", user.username, action,
                          resource, mode)
            return False
        return True
