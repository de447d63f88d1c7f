"""Team namespaces: which namespace a user's server and home live in. Pure: no I/O.

``c.PtjaasSpawner.team_namespaces`` maps a JupyterHub group (a team) to a Kubernetes namespace,
or to a template in which ``{group}`` is replaced by the group's name
(``{"vision": "jhub-team-{group}"}`` -> ``jhub-team-vision``).

- A member of one team runs in that team's namespace.
- A member of several teams chooses (form field / ``user_options`` key ``team``), limited to
  their own teams; without a choice the last team used (or the first, alphabetically) applies.
- A user in no team runs in the hub's namespace, as without teams.
- A home claim cannot move between namespaces: a user whose home is in the hub's namespace keeps
  running there until an admin has copied it into the team namespace and marked the copy with
  the ``ptjaas.io/migrated-from`` annotation (``ptjaas migrate-home``, docs/teams.md).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from . import formtemplates
from .configcheck import ConfigError

TEAM_OPTION = "team"
SETTING = "c.PtjaasSpawner.team_namespaces"
MIGRATED_FROM = "ptjaas.io/migrated-from"
TEAM_LABEL = "ptjaas.io/team"

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_MAX_SHOWN = 64
MAX_TEAM_LENGTH = 256  # as every server option (catalog.MAX_OPTION_LENGTH)


class TeamConfigError(ConfigError):
    """``team_namespaces`` is invalid; the message names the setting and the key."""


class TeamChoiceError(ValueError):
    """A posted team is not one of the user's teams (or not a string): a 400 for the user."""


def _show(value) -> str:
    """A bounded repr of untrusted input for messages."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def namespace_problem(name) -> str:
    """'' if ``name`` is a valid namespace name (an RFC 1123 label), else why not."""
    if not isinstance(name, str) or not name:
        return "a namespace name must be a non-empty string"
    if len(name) > 63:
        return f"{name!r} is longer than 63 characters"
    if not _NAMESPACE.match(name):
        return (
            f"{name!r} is not a valid namespace name (lowercase letters, digits and '-', "
            "starting and ending with a letter or digit)"
        )
    return ""


def expand_team_namespaces(value, where: str = SETTING) -> dict:
    """Validate ``team_namespaces`` and return ``{group: namespace}`` with templates expanded.

    Raises TeamConfigError naming ``where[group]`` and what is wrong."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TeamConfigError(
            f"{where} must be a dict of group -> namespace (or template such as "
            f"'jhub-team-{{group}}'), got {_show(value)}"
        )
    out = {}
    for group, template in value.items():
        key = f"{where}[{group!r}]"
        if not isinstance(group, str) or not group.strip():
            raise TeamConfigError(f"{where}: group names must be non-empty strings, got {_show(group)}")
        if not isinstance(template, str):
            raise TeamConfigError(f"{key} must be a namespace name or template string, got {_show(template)}")
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
            if fields - {"group"}:
                raise TeamConfigError(
                    f"{key}: {template!r} uses {sorted(fields - {'group'})}; only {{group}} may be used"
                )
            namespace = template.format(group=group)
        except (ValueError, IndexError, KeyError) as e:
            if isinstance(e, TeamConfigError):
                raise
            raise TeamConfigError(f"{key}: {template!r} is not a valid template: {e}") from None
        problem = namespace_problem(namespace)
        if problem:
            hint = " (the group's name does not fit a namespace name: give the namespace explicitly)" if (
                "{group}" in template) else ""
            raise TeamConfigError(f"{key}: {problem}{hint}")
        out[group] = namespace
    return out


def check_team_config(team_namespaces, enable_user_namespaces: bool = False) -> dict:
    """Start-up check of the team settings together; returns the expanded map."""
    expanded = expand_team_namespaces(team_namespaces)
    if expanded and enable_user_namespaces:
        raise TeamConfigError(
            f"{SETTING} cannot be combined with c.KubeSpawner.enable_user_namespaces "
            "(that puts every user in a namespace of their own and watches pods cluster-wide); "
            "turn one of them off"
        )
    return expanded


def user_teams(namespaces: dict, user_groups) -> list:
    """The user's teams (groups that have a team namespace), sorted."""
    return sorted(g for g in set(user_groups or ()) if g in namespaces)


@dataclass(frozen=True)
class Team:
    """The team a server runs for (``group`` None: no team, the hub's namespace)."""

    group: str | None
    namespace: str


def resolve_team(namespaces: dict, user_groups, requested, hub_namespace: str, last: str | None = None) -> Team:
    """The team for a start. ``requested``: the posted ``team`` option (None: not given).

    Raises TeamChoiceError when the user asks for a team that is not one of theirs."""
    teams = user_teams(namespaces, user_groups)
    if requested is not None:
        if not isinstance(requested, str):
            raise TeamChoiceError(f"Server option 'team' must be a string, not {_show(requested)}.")
        if len(requested) > MAX_TEAM_LENGTH:
            raise TeamChoiceError(f"Server option 'team' is too long ({len(requested)} characters, at most "
                                  f"{MAX_TEAM_LENGTH}): {_show(requested)}.")
        if requested not in teams:
            if teams:
                raise TeamChoiceError(
                    f"You are not a member of team {_show(requested)}. Your teams: {', '.join(teams)}."
                )
            raise TeamChoiceError(
                f"You are not a member of team {_show(requested)}, nor of any team: "
                "leave the team option out (your server runs in the hub's namespace)."
            )
        return Team(requested, namespaces[requested])
    if not teams:
        return Team(None, hub_namespace)
    group = last if last in teams else teams[0]
    return Team(group, namespaces[group])


@dataclass(frozen=True)
class Placement:
    """Where a server runs: its namespace, and a note for the user when its home is kept
    elsewhere than its team namespace (a legacy home in the hub's namespace)."""

    namespace: str
    legacy_home: bool = False
    note: str = ""


def placement(team: Team, hub_namespace: str, home_namespace: str | None, migrated: bool = False) -> Placement:
    """Where the server of ``team`` runs, given where the user's home claim is known to live
    (``home_namespace``; None: no home yet) and whether an admin has moved a legacy home into
    the team namespace (``migrated``: a claim there carries ``ptjaas.io/migrated-from``).

    A pod can only mount claims of its own namespace, so a home in the hub's namespace keeps
    the server in the hub's namespace until it has been migrated."""
    if (
        team.group is not None
        and team.namespace != hub_namespace
        and home_namespace == hub_namespace
        and not migrated
    ):
        return Placement(
            hub_namespace,
            True,
            f"Your home volume is in the hub's namespace {hub_namespace!r}, so your server runs there "
            f"too, until an administrator moves your home to team {team.group!r}'s namespace "
            f"{team.namespace!r}. Nothing is lost in the meantime.",
        )
    return Placement(team.namespace)


def team_from_options(options) -> object:
    """The raw ``team`` value of ``user_options`` (None when absent)."""
    if isinstance(options, dict):
        return options.get(TEAM_OPTION)
    return None


def without_team(options):
    """``user_options`` without the ``team`` key (for the image/size catalog check)."""
    if isinstance(options, dict) and TEAM_OPTION in options:
        return {k: v for k, v in options.items() if k != TEAM_OPTION}
    return options


def team_from_formdata(formdata):
    """The posted ``team`` field (None when absent)."""
    values = (formdata or {}).get(TEAM_OPTION) or [None]
    return values[0]


def render_team_section(namespaces: dict, user_groups, hub_namespace: str, selected: str | None,
                        home_claim: str, home_namespace: str | None, template_paths=(), template_text="") -> str:
    """The form's team part: a choice when the user is in several teams, and where the home
    volume lives. '' when no team namespace is configured. Rendered from
    ``templates/form/team_section.html`` (or a site's: see ``formtemplates``)."""
    if not namespaces:
        return ""
    teams = user_teams(namespaces, user_groups)

    def where(team: Team) -> str:
        p = placement(team, hub_namespace, home_namespace)
        ns = p.namespace
        return f"server and home volume {home_claim} in namespace {ns}" + (" (the hub's)" if p.legacy_home else "")

    chosen = selected if selected in teams else (teams[0] if teams else None)
    entries = [{"group": group, "checked": group == chosen, "where": where(Team(group, namespaces[group])),
                "id": "ptjaas-team-" + "".join(c if c.isalnum() or c in "-_" else f"_{ord(c):x}" for c in group)}
               for group in teams]
    legacy = [g for g in teams if placement(Team(g, namespaces[g]), hub_namespace, home_namespace).legacy_home]
    context = {"teams": entries, "single": entries[0] if len(entries) == 1 else None, "home_claim": home_claim,
               "hub_namespace": hub_namespace, "legacy_note": ""}
    if legacy:
        context["legacy_note"] = placement(Team(legacy[0], namespaces[legacy[0]]), hub_namespace, home_namespace).note
    return formtemplates.render(formtemplates.TEAM_SECTION, context, template_paths, template_text)


def team_namespaces_in_use(namespaces: dict, hub_namespace: str) -> list:
    """Every namespace ptjaas may run servers in: the hub's and each team's (sorted, unique)."""
    return sorted({hub_namespace, *namespaces.values()})


def team_pools(pools: dict, namespaces: dict, team: str | None) -> dict:
    """The quota pools a server of ``team`` may be charged to: the team's own, and those of
    groups that are not teams; never another team's (its namespace quota would not count it)."""
    if team is None:
        return dict(pools)
    return {g: limits for g, limits in pools.items() if g == team or g not in namespaces}
