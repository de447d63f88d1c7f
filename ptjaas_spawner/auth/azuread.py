"""Microsoft Entra ID (Azure AD) preset: issuer from ``tenant_id``; groups from the ID token's
``groups`` claim (object ids; name them with ``group_mapping``); username from ``email``-like
``preferred_username``."""

from traitlets import Unicode, default

from .oidc import PtjaasAuthenticator


class AzureAdAuthenticator(PtjaasAuthenticator):
    tenant_id = Unicode(
        "",
        config=True,
        help="""Directory (tenant) id; gives ``oidc_issuer`` =
        ``https://login.microsoftonline.com/<tenant_id>/v2.0``.""",
    )

    @default("oidc_issuer")
    def _issuer_default(self):
        return f"https://login.microsoftonline.com/{self.tenant_id}/v2.0" if self.tenant_id else ""

    @default("login_service")
    def _login_service_default(self):
        return "Microsoft"

    @default("groups_claim_source")
    def _source_default(self):
        return "id_token"
