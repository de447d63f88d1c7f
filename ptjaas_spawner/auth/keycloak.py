"""Keycloak preset: issuer from ``keycloak_url`` + ``realm``; groups from the ``groups`` claim
(Keycloak's "Group Membership" mapper, full paths stripped of their leading ``/``)."""

from traitlets import Unicode, default

from .oidc import PtjaasAuthenticator


class KeycloakAuthenticator(PtjaasAuthenticator):
    keycloak_url = Unicode(
        "",
        config=True,
        help="""Base URL of the Keycloak server (``https://keycloak.example.org``); with
        ``realm`` it gives ``oidc_issuer`` = ``<keycloak_url>/realms/<realm>``.""",
    )
    realm = Unicode("", config=True, help="Keycloak realm users sign in to.")

    @default("oidc_issuer")
    def _issuer_default(self):
        if self.keycloak_url and self.realm:
            return f"{self.keycloak_url.rstrip('/')}/realms/{self.realm}"
        return ""

    @default("login_service")
    def _login_service_default(self):
        return "Keycloak"

    @default("groups_strip_prefix")
    def _strip_default(self):
        return "/"
