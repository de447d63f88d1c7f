"""``PtjaasAuthenticator``: generic OpenID Connect login with group sync and admin groups.

A ``GenericOAuthenticator`` (oauthenticator 17.4) that

- finds its endpoints by OpenID Connect discovery (``{oidc_issuer}/.well-known/openid-configuration``),
  lazily at the first login and again after a failure, so a hub starts while its provider is down;
- verifies the ID token (signature against the provider's JWKS, issuer, audience, expiry);
- reads the user's groups from a configurable claim (``groups_claim``, dotted keys for nested
  claims such as Keycloak's ``realm_access.roles``) of the userinfo response or the ID token,
  tolerating the shapes real providers send and refusing the malformed ones (no groups, logged);
- keeps JupyterHub's groups in sync (``manage_groups = True``) at every login and auth refresh,
  so entitlements (image/size ``groups`` on ``c.PtjaasSpawner``) and group quotas follow the
  provider; ``admin_groups`` makes admins;
- refuses a user in none of ``allowed_groups`` with a page saying so (HTTP 403), and forces a
  new login (which then refuses) when a refresh finds the user left every allowed group.
"""

from __future__ import annotations

import contextvars
import re
from urllib.parse import urlparse

import jwt
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.oauth2 import OAuthLoginHandler
from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import Bool, Dict, Enum, List, Unicode, default, validate

from ..errors import Refusal
from ..pages import ptjaas_handlers
from .groups import claim_lookup, is_missing, map_groups, normalize_groups, refusal_message

_refreshing = contextvars.ContextVar("ptjaas_auth_refreshing", default=False)

DEFAULT_REFUSAL = (
    "You signed in as {username}, but {username} is not a member of any group allowed to use "
    "this hub (your groups: {groups}). Ask your administrator to add you to one of the hub's "
    "groups at the identity provider, then sign in again."
)


class IdentityProviderUnavailable(Refusal):
    def __init__(self, issuer, detail):
        super().__init__(
            503,
            f"The identity provider ({issuer}) cannot be reached right now, so you cannot sign in. "
            f"Please try again in a minute. ({detail})",
        )


class PtjaasLoginHandler(OAuthLoginHandler):
    """Runs discovery before redirecting to the provider's authorization endpoint."""

    async def get(self):
        await self.authenticator.discover()
        return super().get()


class PtjaasAuthenticator(GenericOAuthenticator):
    """OpenID Connect login for ptjaas (see module docstring)."""

    login_handler = PtjaasLoginHandler

    oidc_issuer = Unicode(
        "",
        config=True,
        help="""Issuer URL of the OpenID Connect provider, e.g.
        ``https://keycloak.example.org/realms/research`` or
        ``https://login.microsoftonline.com/<tenant>/v2.0``. The authorization, token, userinfo
        and JWKS endpoints are read from ``<issuer>/.well-known/openid-configuration`` at the
        first login; endpoints set explicitly (``authorize_url``, ``token_url``,
        ``userdata_url``) take precedence. Required unless ``authorize_url`` and ``token_url``
        are both set.""",
    )

    groups_claim = Unicode(
        "groups",
        config=True,
        help="""Claim holding the user's groups. Dots reach into nested claims
        (``realm_access.roles`` for Keycloak realm roles, ``resource_access.<client>.roles``);
        a top-level claim whose name contains dots (``https://example.org/groups``) is found
        too. The value may be a list of names, a single name, or a list of objects with a
        ``name``; anything else counts as no groups (logged).""",
    )

    groups_claim_source = Enum(
        ["auto", "userinfo", "id_token"],
        "auto",
        config=True,
        help="""Where ``groups_claim`` is read: ``userinfo`` (the userinfo response),
        ``id_token`` (the verified ID token) or ``auto`` (userinfo, else the ID token). With
        ``id_token``, group changes take effect at the next login (an auth refresh reuses the
        ID token issued at login); with userinfo they also take effect at each auth refresh
        (``auth_refresh_age``, before each spawn) when ``enable_auth_state`` is on.""",
    )

    group_mapping = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        config=True,
        help="""Rename provider groups to hub groups, ``{"provider name": "hub name"}``
        (e.g. an Azure AD group object id to a readable name). Unlisted groups keep their
        name.""",
    )

    groups_strip_prefix = Unicode(
        "",
        config=True,
        help="""A prefix removed from every provider group name before ``group_mapping``
        (``"/"`` for Keycloak full group paths). Names still containing ``/`` are ignored.""",
    )

    groups_pattern = Unicode(
        "",
        config=True,
        help="""Regular expression (full match) a group name must match, after mapping, to be
        synced into JupyterHub; empty keeps all. Use it when users belong to many provider
        groups the hub does not care about.""",
    )

    refusal_message = Unicode(
        DEFAULT_REFUSAL,
        config=True,
        help="""Text of the page shown (HTTP 403) to a user who signs in but is in none of
        ``allowed_groups`` (and not in ``allowed_users``/``admin_users``). ``{username}`` and
        ``{groups}`` (the user's groups, or "none") are filled in.""",
    )

    id_token_algorithms = List(
        Unicode(),
        ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"],
        config=True,
        help="""Signature algorithms accepted on ID tokens (checked against the provider's
        JWKS). ``none`` and shared-secret algorithms are never accepted.""",
    )

    verify_id_token = Bool(
        True,
        config=True,
        help="""Verify the ID token's signature, issuer, audience and expiry at login. A token
        that fails refuses the login. Turn off only for a provider whose keys cannot be
        fetched.""",
    )

    @default("manage_groups")
    def _manage_groups_default(self):
        return True

    @default("login_service")
    def _login_service_default(self):
        return "OpenID Connect"

    @default("username_claim")
    def _username_claim_default(self):
        return "preferred_username"

    @default("scope")
    def _scope_default(self):
        return ["openid", "profile", "email"]

    @validate("oidc_issuer")
    def _validate_issuer(self, proposal):
        value = proposal.value.rstrip("/")
        if value:
            u = urlparse(value)
            if u.scheme not in ("http", "https") or not u.netloc or u.query or u.fragment:
                raise ValueError(
                    f"PtjaasAuthenticator.oidc_issuer must be an http(s) URL without query or "
                    f"fragment, got {proposal.value!r}"
                )
        return value

    @validate("groups_pattern")
    def _validate_pattern(self, proposal):
        try:
            re.compile(proposal.value)
        except re.error as e:
            raise ValueError(f"PtjaasAuthenticator.groups_pattern is not a valid regular expression: {e}")
        return proposal.value

    @validate("id_token_algorithms")
    def _validate_algs(self, proposal):
        bad = [a for a in proposal.value if a.lower() == "none" or a.upper().startswith("HS")]
        if bad:
            raise ValueError(f"PtjaasAuthenticator.id_token_algorithms may not contain {bad}")
        return proposal.value

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not self.oidc_issuer and not (self.authorize_url and self.token_url):
            raise ValueError(
                "PtjaasAuthenticator.oidc_issuer is not set: give the OpenID Connect issuer URL "
                "(or set both authorize_url and token_url)"
            )
        if not self.manage_groups and (self.allowed_groups or self.admin_groups):
            raise ValueError("PtjaasAuthenticator.allowed_groups/admin_groups need manage_groups = True")
        self._discovery: dict | None = None
        self._jwks: jwt.PyJWKSet | None = None

    #: this authenticator serves the admin usage page (fragment 40 links it in the navigation bar)
    ptjaas_usage_page = True

    def get_handlers(self, app):
        return super().get_handlers(app) + ptjaas_handlers()

    # ---- discovery ----
    async def discover(self) -> dict:
        """Fetch and apply the provider's discovery document (once; retried after failures)."""
        if self._discovery is not None or not self.oidc_issuer:
            return self._discovery or {}
        url = f"{self.oidc_issuer}/.well-known/openid-configuration"
        try:
            doc = await self.httpfetch(url, "fetching OpenID configuration", method="GET")
        except (HTTPClientError, OSError, ValueError) as e:
            raise IdentityProviderUnavailable(self.oidc_issuer, f"discovery failed: {e}")
        if not isinstance(doc, dict) or doc.get("issuer", "").rstrip("/") != self.oidc_issuer:
            raise IdentityProviderUnavailable(
                self.oidc_issuer,
                f"the discovery document names issuer {doc.get('issuer') if isinstance(doc, dict) else doc!r}, "
                "not PtjaasAuthenticator.oidc_issuer",
            )
        for key in ("authorization_endpoint", "token_endpoint"):
            if not doc.get(key):
                raise IdentityProviderUnavailable(self.oidc_issuer, f"discovery document lacks {key}")
        if not self.authorize_url:
            self.authorize_url = doc["authorization_endpoint"]
        if not self.token_url:
            self.token_url = doc["token_endpoint"]
        if not self.userdata_url and not self.userdata_from_id_token and doc.get("userinfo_endpoint"):
            self.userdata_url = doc["userinfo_endpoint"]
        self._discovery = doc
        self.log.info("OpenID Connect provider %s discovered", self.oidc_issuer)
        return doc

    async def _get_jwks(self, refresh=False) -> jwt.PyJWKSet:
        if self._jwks is None or refresh:
            doc = await self.discover()
            if not doc.get("jwks_uri"):
                raise Refusal(403, "Sign-in refused: the identity provider publishes no signing keys (jwks_uri)")
            data = await self.httpfetch(doc["jwks_uri"], "fetching JWKS", method="GET")
            self._jwks = jwt.PyJWKSet.from_dict(data)
        return self._jwks

    async def verified_id_token_claims(self, id_token: str) -> dict:
        """The ID token's claims after checking signature, issuer, audience and expiry."""
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as e:
            raise Refusal(403, f"Sign-in refused: the ID token is malformed ({e})")
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.id_token_algorithms:
            raise Refusal(403, f"Sign-in refused: ID token signed with unaccepted algorithm {alg!r}")

        def pick(keyset):
            for k in keyset.keys:
                if kid is None or k.key_id == kid:
                    return k

        key = pick(await self._get_jwks())
        if key is None:  # key rotation at the provider: fetch once more
            key = pick(await self._get_jwks(refresh=True))
        if key is None:
            raise Refusal(403, "Sign-in refused: the ID token's signing key is unknown to the provider")
        try:
            return jwt.decode(
                id_token,
                key=key.key,
                algorithms=[alg],
                audience=self.client_id,
                issuer=(self._discovery or {}).get("issuer") or None,
                leeway=60,
                options={"verify_exp": not _refreshing.get(), "verify_iss": bool(self._discovery)},
            )
        except jwt.PyJWTError as e:
            raise Refusal(403, f"Sign-in refused: the ID token did not verify ({e})")

    # ---- login / refresh ----
    async def authenticate(self, handler, data=None, **kwargs):
        await self.discover()
        return await super().authenticate(handler, data, **kwargs)

    async def build_auth_state_dict(self, token_info, user_info):
        auth_state = super().build_auth_state_dict(token_info, user_info)
        id_token = token_info.get("id_token")
        if id_token and self.verify_id_token and self.oidc_issuer:
            auth_state["id_token_claims"] = await self.verified_id_token_claims(id_token)
        elif id_token:
            try:
                auth_state["id_token_claims"] = jwt.decode(id_token, options={"verify_signature": False})
            except jwt.PyJWTError as e:
                raise Refusal(403, f"Sign-in refused: the ID token is malformed ({e})")
        return auth_state

    async def get_user_groups(self, auth_state: dict):
        """Groups from ``groups_claim`` (see its help); problems are logged and kept in
        ``auth_state["ptjaas_group_problems"]`` for the refusal page."""
        sources = {
            "userinfo": [auth_state.get(self.user_auth_state_key) or {}],
            "id_token": [auth_state.get("id_token_claims") or {}],
            "auto": [auth_state.get(self.user_auth_state_key) or {}, auth_state.get("id_token_claims") or {}],
        }[self.groups_claim_source]
        raw = None
        for src in sources:
            raw = claim_lookup(src, self.groups_claim)
            if not is_missing(raw):
                break
        groups, problems = normalize_groups(raw, self.groups_claim)
        groups = map_groups(groups, self.group_mapping, self.groups_pattern, self.groups_strip_prefix)
        name = (auth_state.get(self.user_auth_state_key) or {}).get(self.username_claim) if isinstance(
            self.username_claim, str
        ) else None
        for p in problems:
            self.log.warning("Groups of %s: %s", name or "user", p)
        auth_state["ptjaas_group_problems"] = problems
        return set(groups)

    def _refusal(self, username, auth_model) -> str | None:
        """None if allowed by groups; else the refusal text."""
        if not (self.manage_groups and self.allowed_groups):
            return None
        if auth_model.get("admin") or username in self.allowed_users:
            return None
        groups = set(auth_model.get("groups") or [])
        if groups & self.allowed_groups:
            return None
        return refusal_message(username, groups, self.refusal_message)

    async def check_allowed(self, username, auth_model):
        if await super().check_allowed(username, auth_model):
            return True
        reason = self._refusal(username, auth_model or {})
        if reason:
            self.log.warning("Refusing %s: in no allowed group (groups: %s)", username, (auth_model or {}).get("groups"))
            raise Refusal(403, reason, reason="Not in an allowed group")  # (the page's text: jupyterhub_message)
        return False

    async def refresh_user(self, user, handler=None, **kwargs):
        token = _refreshing.set(True)
        try:
            try:
                await self.discover()
            except web.HTTPError as e:
                self.log.warning("Not refreshing %s: %s", user.name, e.log_message % e.args)
                return True
            model = await super().refresh_user(user, handler, **kwargs)
        except (HTTPClientError, OSError) as e:
            self.log.warning("Auth refresh of %s failed (%s); keeping current groups", user.name, e)
            return True
        finally:
            _refreshing.reset(token)
        if isinstance(model, dict):
            reason = self._refusal(user.name, model)
            if reason:
                self.log.warning("%s is no longer in an allowed group; a new login is required", user.name)
                if handler is not None and not hasattr(handler, "_token_authenticated"):
                    # JupyterHub 6.1 reads this attribute, set only for token-authenticated
                    # requests, when a refresh asks for a new login (AttributeError otherwise)
                    handler._token_authenticated = False
                return False
        return model
