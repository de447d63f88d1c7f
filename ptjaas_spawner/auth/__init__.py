"""OpenID Connect login for ptjaas.

``PtjaasAuthenticator`` (entry point ``jupyterhub.authenticators: ptjaas``) is the generic
OpenID Connect authenticator; ``keycloak`` and ``azuread`` hold small presets on top of it.
Group -> entitlement mapping lives in the spawner config (``groups`` on images and sizes,
group budgets in ``ptjaas_spawner.quota``): this package only makes JupyterHub's groups match
the identity provider's.
"""

from .oidc import PtjaasAuthenticator

__all__ = ["PtjaasAuthenticator"]
