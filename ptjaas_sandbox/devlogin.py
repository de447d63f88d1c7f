"""The demo's development login: any username, one shared password.

``DevLoginAuthenticator`` is JupyterHub's ``DummyAuthenticator`` plus what
``PtjaasAuthenticator`` adds to the hub (the admin usage page at ``/hub/ptjaas/usage``), so that
the demo shows the same hub as production with only the login replaced. Selected by
``helm-values/values-demo.yaml``; it lives in the sandbox, which a hub image does not install.
"""

from jupyterhub.auth import DummyAuthenticator


class DevLoginAuthenticator(DummyAuthenticator):
    """Development login for ``ptjaas demo`` (never for a shared hub: everyone knows the password)."""

    ptjaas_usage_page = True   # fragment 40 links the usage page in the navigation bar

    def get_handlers(self, app):
        from ptjaas_spawner.usagepages import usage_handlers

        return super().get_handlers(app) + usage_handlers
