"""Start-up checks for JupyterHub config fragments and Helm ``hub.config`` values.

JupyterHub only *warns* about a misspelt setting, and a value of the wrong type is noticed
when the class is first instantiated: for a spawner that is at the first spawn, hours after
the hub started. The checks here let a config fragment (``jupyterhub_config.d/*.py``) or the
Helm values stop the hub at start-up instead, with a message that names the file and the
setting.

Pure module: it reads no files. The fragments in ``jupyterhub_config.d/`` use it, both when
z2jh's hub loads them from ``/usr/local/etc/jupyterhub/jupyterhub_config.d/`` and when an admin
runs ``jupyterhub -f jupyterhub_config.d/00-ptjaas.py``. An admin's own fragment uses it as::

    from ptjaas_spawner.fragmentcheck import checked_fragment
    with checked_fragment(c):
        c.PtjaasSpawner.home_volume_size = "20Gi"
"""

from __future__ import annotations

import copy
import difflib
import importlib
import sys
from collections.abc import Mapping
from contextlib import contextmanager

from traitlets import HasTraits, TraitError
from traitlets.config import Configurable

from .errors import ConfigError
from .helmvalues import fragment_path

# Configurable classes a fragment or hub.config commonly sets, by section name. A section
# not listed here is checked only if its class is already imported; a ``Ptjaas*`` section
# whose class cannot be found is an error (a typo in our own namespace is never harmless).
KNOWN_CLASSES = {
    "PtjaasSpawner": "ptjaas_spawner.spawner:PtjaasSpawner",
    "PtjaasAuthenticator": "ptjaas_spawner.auth:PtjaasAuthenticator",
    "PtjaasSharing": "ptjaas_spawner.sharing:PtjaasSharing",
    "KeycloakAuthenticator": "ptjaas_spawner.auth.keycloak:KeycloakAuthenticator",
    "AzureAdAuthenticator": "ptjaas_spawner.auth.azuread:AzureAdAuthenticator",
    "KubeSpawner": "kubespawner:KubeSpawner",
    "Spawner": "jupyterhub.spawner:Spawner",
    "Authenticator": "jupyterhub.auth:Authenticator",
    "JupyterHub": "jupyterhub.app:JupyterHub",
    "OAuthenticator": "oauthenticator.oauth2:OAuthenticator",
    "GenericOAuthenticator": "oauthenticator.generic:GenericOAuthenticator",
    "ConfigurableHTTPProxy": "jupyterhub.proxy:ConfigurableHTTPProxy",
}

class PtjaasConfigError(ConfigError):
    """A setting in a config fragment or in the Helm values is wrong; the hub must not start."""


def apply_hub_config(c, hub_config):
    """Apply a Helm ``hub.config`` mapping to a traitlets config, as z2jh's hub does.

    z2jh's ``jupyterhub_config.py`` runs ``c[Class].update(values)`` for every class in
    ``hub.config``; this does the same so that a plain ``jupyterhub -f`` reads the very same
    values files as the Helm chart.
    """
    for section, values in (hub_config or {}).items():
        if not isinstance(values, Mapping):
            raise PtjaasConfigError(
                f"hub.config.{section} must be a mapping of settings, not {type(values).__name__}"
            )
        c[section].update(copy.deepcopy(dict(values)))


def _all_subclasses(cls):
    seen = []
    stack = [cls]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in seen:
                seen.append(sub)
                stack.append(sub)
    return seen


def resolve_class(section):
    """The Configurable class a config section names, or None when it cannot be known.

    Raises PtjaasConfigError for a ``Ptjaas*`` section whose class cannot be imported.
    """
    target = KNOWN_CLASSES.get(section)
    if target:
        module_name, _, attr = target.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            if section.startswith("Ptjaas"):
                raise PtjaasConfigError(
                    f"{section} is configured but {target} cannot be imported: {e}"
                ) from e
            return None
    for sub in _all_subclasses(Configurable):
        if sub.__name__ == section:
            return sub
    if section.startswith("Ptjaas"):
        known = [name for name in KNOWN_CLASSES if name.startswith("Ptjaas")]
        hint = difflib.get_close_matches(section, known, n=1)
        raise PtjaasConfigError(
            f"{section} is not a ptjaas class"
            + (f" (did you mean {hint[0]}?)" if hint else f"; ptjaas classes are {', '.join(known)}")
        )
    return None


def _probe_value(trait, name, value):
    """Validate ``value`` against a copy of ``trait``; return an error message or None."""
    probe_trait = copy.deepcopy(trait)
    probe_cls = type("ConfigProbe", (HasTraits,), {name: probe_trait})
    probe = probe_cls()
    try:
        setattr(probe, name, value)
    except TraitError as e:
        return str(e).replace("ConfigProbe", "setting").replace(" instance", "")
    except Exception as e:  # a custom validate() raising something else is still a bad value
        return f"{type(e).__name__}: {e}"
    return None


def check_section(cls, section, values):
    """Problems with ``values`` (a mapping of setting -> value) for the class ``cls``.

    Returns a list of ``(setting, message)``; an empty list when all is well.
    """
    problems = []
    traits = cls.class_traits(config=True)
    for key, value in values.items():
        if key not in traits:
            hint = difflib.get_close_matches(key, list(traits), n=1)
            problems.append(
                (
                    f"{section}.{key}",
                    f"{cls.__name__} has no setting {key!r}"
                    + (f" (did you mean {hint[0]!r}?)" if hint else ""),
                )
            )
            continue
        # values that traitlets resolves lazily (c.X.y.append(...)) are checked when applied
        if type(value).__name__ == "LazyConfigValue":
            continue
        error = _probe_value(traits[key], key, value)
        if error:
            problems.append((f"{section}.{key}", error))
    return problems


def check_config(config, sections=None):
    """Check every (or the given) section of a traitlets config; return [(setting, message)]."""
    problems = []
    for section in sorted(sections if sections is not None else config.keys()):
        if not section[:1].isupper() or section not in config:
            continue
        values = config[section]
        if not isinstance(values, Mapping):
            continue
        try:
            cls = resolve_class(section)
        except PtjaasConfigError as e:
            problems.append((section, str(e)))
            continue
        if cls is not None:
            problems.extend(check_section(cls, section, values))
    return problems


def _changed(before, after):
    """{section: {key: value}} for settings that ``after`` adds or changes relative to ``before``."""
    changed = {}
    for section, values in after.items():
        if not section[:1].isupper() or not isinstance(values, Mapping):
            continue
        old = before.get(section, {})
        for key, value in values.items():
            if key not in old or old[key] != value:
                changed.setdefault(section, {})[key] = value
    return changed


def format_problems(where, problems):
    lines = [f"ptjaas: bad setting in {where}; the hub will not start:"]
    lines += [f"  {setting}: {message}" for setting, message in problems]
    return "\n".join(lines)


@contextmanager
def checked_fragment(c, filename=None):
    """Check the settings a fragment makes inside the ``with`` block when it ends.

    Raises PtjaasConfigError naming the fragment file and each bad setting, which stops
    JupyterHub during start-up (it loads config files with ``raise_config_file_errors``).
    """
    if filename is None:
        filename = sys._getframe(2).f_code.co_filename
    before = copy.deepcopy(dict(c))
    yield c
    changed = _changed(before, c)
    problems = check_config(changed)
    if problems:
        raise PtjaasConfigError(format_problems(fragment_path(filename), problems))


def check_storage_not_fighting(config):
    """Problems if z2jh's own ``singleuser.storage`` would manage a home claim besides ptjaas.

    z2jh's ``singleuser.storage.type: dynamic`` sets ``KubeSpawner.storage_pvc_ensure`` and
    mounts a ``{pvc_name}`` claim at the home path; with ptjaas managing the home volume the
    two would create and mount different claims. ptjaas needs ``singleuser.storage.type: none``.
    """
    problems = []
    spawner_class = str(config.get("JupyterHub", {}).get("spawner_class", ""))
    if "ptjaas" not in spawner_class.lower() and not config.get("PtjaasSpawner"):
        return problems
    kube = config.get("KubeSpawner", {})
    ptjaas = config.get("PtjaasSpawner", {})
    if kube.get("storage_pvc_ensure") or ptjaas.get("storage_pvc_ensure"):
        problems.append(
            (
                "singleuser.storage.type",
                "must be 'none' with ptjaas: z2jh's dynamic storage makes KubeSpawner create its "
                "own claim (storage_pvc_ensure) next to ptjaas's home volume",
            )
        )
        return problems
    home = ptjaas.get("home_mount_path", "/home/jovyan")
    for section_name, section in (("KubeSpawner", kube), ("PtjaasSpawner", ptjaas)):
        mounts = section.get("volume_mounts") or []
        if isinstance(mounts, Mapping):  # z2jh >= 4.3 also allows a dict of mounts
            mounts = list(mounts.values())
        for mount in mounts:
            if isinstance(mount, Mapping) and str(mount.get("mountPath", "")).rstrip("/") == home.rstrip("/"):
                problems.append(
                    (
                        "singleuser.storage.type",
                        f"must be 'none' with ptjaas: {section_name}.volume_mounts mounts "
                        f"{mount.get('name')!r} at {home}, over ptjaas's home volume "
                        "(z2jh's static storage, or singleuser.storage.extraVolumeMounts)",
                    )
                )
    return problems


def check_spawner_selected(config):
    """Problems if ptjaas settings are present but another spawner/authenticator is selected."""
    problems = []
    hub = config.get("JupyterHub", {})
    if config.get("PtjaasSpawner") and "ptjaas" not in str(hub.get("spawner_class", "")).lower():
        problems.append(
            (
                "JupyterHub.spawner_class",
                f"is {hub.get('spawner_class', 'the default')!s} but PtjaasSpawner is configured; "
                "set hub.config.JupyterHub.spawner_class: ptjaas",
            )
        )
    if config.get("PtjaasAuthenticator") and "ptjaas" not in str(
        hub.get("authenticator_class", "")
    ).lower():
        problems.append(
            (
                "JupyterHub.authenticator_class",
                f"is {hub.get('authenticator_class', 'the default')!s} but PtjaasAuthenticator "
                "is configured; set hub.config.JupyterHub.authenticator_class: ptjaas",
            )
        )
    return problems


def check_spawner_catalog(config):
    """The spawner's own catalog/sizes/home/team checks (what ``PtjaasSpawner.check_config``
    runs), on the config at hub start-up instead of at the first spawn. Returns
    [(setting, message)]."""
    section = config.get("PtjaasSpawner") or {}
    if not section:
        return []
    from ptjaas_spawner import configcheck, teams
    from ptjaas_spawner.spawner import CATALOG_SETTINGS, PtjaasSpawner

    traits = PtjaasSpawner.class_traits()

    def setting(name):
        return section[name] if name in section else traits[name].default()

    user_namespaces = section.get("enable_user_namespaces",
                                  (config.get("KubeSpawner") or {}).get("enable_user_namespaces", False))
    try:
        configcheck.check_all(*(setting(name) for name in CATALOG_SETTINGS))
        teams.check_team_config(setting("team_namespaces"), bool(user_namespaces))
    except configcheck.ConfigError as e:
        setting_name, sep, problem = str(e).partition(": ")
        if not sep:
            return [("PtjaasSpawner", str(e))]
        return [(setting_name[2:] if setting_name.startswith("c.") else setting_name, problem)]
    except (TypeError, ValueError, AttributeError, KeyError) as e:
        return [("PtjaasSpawner", f"{type(e).__name__}: {e}")]
    return []


def check_spawner_quotas(config):
    """The quota budgets as the spawner parses them (``quota_default``, ``quota_users``,
    ``quota_groups``). Returns [(setting, message)]."""
    section = config.get("PtjaasSpawner") or {}
    if not any(k in section for k in ("quota_default", "quota_users", "quota_groups")):
        return []
    from ptjaas_spawner.quota.budget import QuotaConfigError, QuotaPolicy

    try:
        QuotaPolicy.from_config(section.get("quota_default"), section.get("quota_users"),
                                section.get("quota_groups"))
    except QuotaConfigError as e:
        return [("PtjaasSpawner", str(e))]
    return []


def startup_problems(config):
    """Every problem fragment 99 stops the hub for: [(setting, message)]."""
    return (
        check_config(config)
        + check_spawner_selected(config)
        + check_storage_not_fighting(config)
        + check_spawner_catalog(config)
        + check_spawner_quotas(config)
        + _dataset_problems(config)
    )


def _dataset_problems(config):
    from ptjaas_spawner.datasets.policy import startup_problems as dataset_problems

    return dataset_problems(config.get("PtjaasSpawner") or {})


def check_startup(config, where="jupyterhub_config.py"):
    """Stop the hub (PtjaasConfigError) when the config has a problem, naming each setting.

    The last statement of a single-file ``jupyterhub_config.py`` (fragment 99 does the same for
    ``jupyterhub_config.d/``)::

        from ptjaas_spawner.fragmentcheck import check_startup; check_startup(c)
    """
    problems = startup_problems(config)
    if problems:
        raise PtjaasConfigError(format_problems(where, problems))
