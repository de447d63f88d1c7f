"""A refused first start of a new named server leaves no entry in the user's server list.

JupyterHub makes a named server's database entry as soon as a start (or the form) is requested,
before the spawner sees the options: a refused start (bad options, a full quota, a home claim
that is not the user's) would leave a dead entry behind; after a race of 20 starts a user had 19.
``RefusedNewServerMixin`` removes the hub's record of such a server (never anything in
Kubernetes) once JupyterHub has finished cleaning up the failed start (the start,
``start.start_server``, and the form's refusals call it).
"""

import functools

from tornado import web
from traitlets.config import LoggingConfigurable

from .homeclaim import ClaimOwnerError


def is_refusal(e) -> bool:
    """A start refused before anything ran: the user's request, not a failure of the cluster."""
    return isinstance(e, ClaimOwnerError) or (isinstance(e, web.HTTPError) and 400 <= e.status_code < 500)


class RefusedNewServerMixin(LoggingConfigurable):
    """For ``PtjaasSpawner`` (reads its ``_last`` and ``_home`` state)."""

    def _is_new_named_server(self):
        """A named server that never started: no home and no last choice in its state (a start
        that got as far as the home claim records it)."""
        orm = getattr(self, "orm_spawner", None)
        return bool(self.name and orm is not None and getattr(orm, "id", None) is not None
                    and not getattr(self, "_last", None) and not getattr(self, "_home", None))

    def _forget_new_named_server(self, *_, fresh=None):
        """Remove the hub's entry of a named server whose very first start was refused. Only the
        hub's record goes; nothing in Kubernetes is touched.

        ``fresh``: whether the server was new when the start began (the start may have found
        the home claim since); judged now when not given."""
        fresh = self._is_new_named_server() if fresh is None else fresh
        if not fresh or getattr(self, "_last", None) or self.db is None:
            return
        if self.orm_spawner.server is not None:  # it runs after all
            return
        self.log.info("Removing the entry of new server %s: its first start was refused", self._log_name)
        self.db.delete(self.orm_spawner)
        self.user.spawners.pop(self.name, None)
        self.db.commit()

    def forget_new_named_server_later(self):
        """The first start of a new named server was refused (``start.start_server`` calls this):
        remove its hub entry once JupyterHub has finished its own clean-up of the failed start."""
        forget = functools.partial(self._forget_new_named_server, fresh=True)
        # JupyterHub's spawn future (jupyterhub 6.1 and 5.5: BaseHandler.spawn_single_user sets
        # the private _spawn_future, its clean-up of a failed start runs in it); no public way to
        # run after that clean-up. Would be replaced by a hook run after a failed spawn's
        # clean-up (docs/upstream.md).
        done = getattr(self, "_spawn_future", None)
        if done is not None and not done.done():
            done.add_done_callback(forget)
        else:
            forget()
