"""ptjaas's exceptions: the base of every configuration error, and the one way a user request
is refused.

- ``ConfigError``: an admin's configuration is wrong (a traitlets setting, a Helm value, a
  values file); the message names the setting and says what is wrong. Each part's own error
  (``configcheck.ConfigError``, ``QuotaConfigError``, ``CullerValuesError``, ``PolicyError``,
  ``ScheduleError``, ``TimeBudgetError``, ``WindowError``, ``teammanifests.ValuesError``, ``helmvalues.ValuesFileError``,
  ``fragmentcheck.PtjaasConfigError``, ``teams.TeamConfigError``) is a subclass, so a caller may
  catch them all. ``SettingError``: one setting's value is invalid (also a ``ValueError``, as the
  validators' callers expect); ``PtjaasConfigError``, the hub's refusal to start, is not.
- ``Refusal``: a user's request (a start, a form post, a page or API call) refused with an HTTP
  status and a message the user reads as is: JupyterHub shows ``jupyterhub_message`` on the spawn
  page and in the API's answer. ``StartFailed``, ``QuotaExceeded``, ``ClaimOwnerError``, the sign-in refusals
  (``auth.oidc``) and ``IdentityProviderUnavailable`` are refusals. The message is passed to tornado as an argument, never as a format string.
"""

from __future__ import annotations

from tornado import web


class ConfigError(Exception):
    """An admin's configuration is wrong; the message names the setting."""


class SettingError(ConfigError, ValueError):
    """One setting's value is invalid; the message names the setting and says what is wrong."""


class Refusal(web.HTTPError):
    """A user request refused: ``status`` and ``message``, the words the user reads (the hub's
    page and API answer, through ``jupyterhub_message``); ``reason``: the HTTP reason phrase."""

    def __init__(self, status: int, message: str, reason: str | None = None):
        super().__init__(status, "%s", message, reason=reason)
        self.message = message
        self.jupyterhub_message = message
