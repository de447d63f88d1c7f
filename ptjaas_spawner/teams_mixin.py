"""``TeamsMixin``: run each member's server and home in the team's namespace (see ``teams``)."""

import asyncio
import dataclasses

from traitlets import Dict, TraitError, validate
from traitlets.config import LoggingConfigurable

from . import teams
from .errors import Refusal
from .homeclaim import HomeClaims

STATE_KEY = "ptjaas_team"


class TeamsMixin(LoggingConfigurable):
    """Mix into the KubeSpawner subclass (before KubeSpawner in the bases)."""

    team_namespaces = Dict(
        config=True,
        help="""Team namespaces: JupyterHub group -> Kubernetes namespace, or a template in which
        ``{group}`` is the group's name: ``{"vision": "jhub-team-{group}"}`` puts the servers
        and home volumes of team vision's members in namespace ``jhub-team-vision``.

        A member of several teams picks the team in the spawn form (``user_options`` key
        ``team``), limited to their own teams; a user in no team runs in the hub's namespace
        (``c.KubeSpawner.namespace``) as without this setting. A home volume that already exists
        in the hub's namespace keeps being used (the server then runs there too) until an
        admin moves it (docs/teams.md). The namespaces, the hub's Role in them, their
        ResourceQuota and NetworkPolicy come from ``ptjaas team-manifests``; ptjaas never creates
        namespaces and watches only the namespaces it uses, never the whole cluster.
        Cannot be combined with ``c.KubeSpawner.enable_user_namespaces``.

        Empty (the default): every server runs in the hub's namespace.
        """,
    )

    @validate("team_namespaces")
    def _validate_team_namespaces(self, proposal):
        try:
            teams.expand_team_namespaces(proposal["value"])
        except teams.TeamConfigError as e:
            raise TraitError(str(e)) from None
        return proposal["value"]

    def check_team_config(self):
        """Start-up check; raises TeamConfigError naming the setting."""
        teams.check_team_config(self.team_namespaces, getattr(self, "enable_user_namespaces", False))

    # ---- state -------------------------------------------------------------------------

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # c.KubeSpawner.namespace, before load_state: the hub's namespace
        self.hub_namespace = self.namespace
        self._team = None  # the team of the last start (state)
        self._home_namespace = None  # where the remembered home claim lives (state)
        self._team_options = {}
        self._started_team = None  # the team of the start under way (what a refusal names)
        self._forget_saved_team()

    def _forget_saved_team(self):
        """Without team namespaces a ``team`` option is unknown (refused): one the hub saved as
        the server's options while teams were on is dropped, so an option-less start (which
        JupyterHub gives the saved ones) still starts."""
        orm_spawner = getattr(self, "orm_spawner", None)
        saved = getattr(orm_spawner, "user_options", None)
        if self.team_namespaces or not isinstance(saved, dict) or teams.TEAM_OPTION not in saved:
            return
        orm_spawner.user_options = teams.without_team(saved)
        if isinstance(self.user_options, dict):
            self.user_options = teams.without_team(self.user_options)

    def team_state(self) -> dict:
        """What the server's state keeps of its team (``PtjaasSpawner.get_state``)."""
        ours = {}
        if self._team:
            ours["team"] = self._team
        if self._home_known():
            ours["home_namespace"] = self._home_namespace
        return {STATE_KEY: ours} if ours else {}

    def load_team_state(self, state):
        """The team and the home's namespace from the server's state (``PtjaasSpawner.load_state``)."""
        ours = state.get(STATE_KEY) or {}
        self._team = ours.get("team")
        self._home_namespace = ours.get("home_namespace")
        if self._home_namespace is None and ((state.get("ptjaas") or {}).get("home") or state.get("pvc_name")):
            # a home remembered before team namespaces: it lives where the server ran then
            self._home_namespace = state.get("namespace") or self.namespace

    # ---- the team of a start -----------------------------------------------------------

    def _home_known(self) -> bool:
        """Is a home claim known to live in ``_home_namespace``? (A placement whose start made no
        home, or whose new home was deleted by its failed start, is no placement.)"""
        return bool(self._home_namespace and self.home_claim_known())

    def team_placement(self) -> dict:
        """What ``place_in_team_namespace`` may change, to put back when a start is refused
        before its home claim exists (a refused start saves no placement). The namespace the
        start tried is not put back (a refusal names it); the next start places anew."""
        return {"team": self._team, "home_namespace": self._home_namespace,
                "team_options": dict(self._team_options), "home": self.home_memory()}

    def restore_team_placement(self, placement: dict):
        self._team = placement["team"]
        self._home_namespace = placement["home_namespace"]
        self._team_options = placement["team_options"]
        self.restore_home_memory(placement["home"])

    def team_map(self) -> dict:
        return teams.expand_team_namespaces(self.team_namespaces)

    def _team_groups(self):
        return sorted(g.name for g in (getattr(self.user, "groups", None) or []))

    def resolve_user_team(self, options) -> teams.Team:
        """The team for ``options`` (user_options); a 400 naming the user's teams if forged."""
        try:
            return teams.resolve_team(
                self.team_map(), self._team_groups(), teams.team_from_options(options), self.hub_namespace, self._team
            )
        except teams.TeamChoiceError as e:
            self.audit_refused("refused-option", str(e), server=self.name,
                               options={teams.TEAM_OPTION: teams.team_from_options(options)})
            raise Refusal(400, str(e), reason="Invalid server options") from None

    def team_user_options(self) -> dict:
        """The ``team`` entry recorded in the server's user_options ({} without teams)."""
        return dict(self._team_options)

    def add_team_from_form(self, options, formdata):
        team = teams.team_from_formdata(formdata)
        if team is not None:
            options = dict(options, **{teams.TEAM_OPTION: team})
        self.resolve_user_team(options)  # refuse a forged team before anything
        return options

    async def _claim_in(self, namespace, names):
        """(name, claim dict) of the first existing claim of ``names`` in ``namespace``."""
        claims = HomeClaims(self)
        claims.namespace = namespace
        return await claims.find(names)

    def _home_claim_names(self):
        remembered = self._home.get("claim")
        names = [remembered] if remembered else []
        names += [n for n in self.claim_candidates() if n not in names]
        return names

    async def place_in_team_namespace(self):
        """Choose the team (a 400 if forged) and set the namespace the server and its home
        live in; returns that placement (``teams.Placement``; None without team namespaces).
        API requests: none for a user in no team or with a remembered home; for a
        first start in a team, a read of the hub's namespace for a home made before teams; for
        a user with such a legacy home, a read of the team namespace for a migrated copy."""
        self._team_options = {}
        if not self.team_namespaces:
            return None
        team = self.resolve_user_team(self.user_options or {})
        if not self._home_known():
            self._home_namespace = None  # no home anywhere yet: it is made in the team's namespace
        names = self._home_claim_names()
        if self._home_namespace is None and team.namespace != self.hub_namespace:
            name, _ = await self._claim_in(self.hub_namespace, names)
            if name is not None:
                self.log.info("%s has a home claim %s in the hub's namespace %s (made before team namespaces)",
                              self._log_name, name, self.hub_namespace)
                self._home_namespace = self.hub_namespace
        migrated = False
        if self._home_namespace == self.hub_namespace and team.namespace != self.hub_namespace:
            name, pvc = await self._claim_in(team.namespace, names)
            source = ((pvc or {}).get("metadata") or {}).get("annotations", {}).get(teams.MIGRATED_FROM)
            migrated = bool(source)
            if migrated:
                self.log.info("Home of %s was migrated from %s to %s/%s", self._log_name, source, team.namespace, name)
        place = teams.placement(team, self.hub_namespace, self._home_namespace, migrated)
        if place.note:
            self.notes_extend([place.note])
        self._team = self._started_team = team.group  # (_started_team: what a refusal names, kept or not)
        if team.group is not None:
            self._team_options = {teams.TEAM_OPTION: team.group}
        if place.namespace != self._home_namespace:
            # a claim cannot move between namespaces: the home there is found or made anew
            # (any home elsewhere stays untouched)
            self.forget_home()
            self._home_namespace = place.namespace
        if place.namespace != self.namespace:
            self.log.info("Server %s runs in namespace %s (team %s)", self._log_name, place.namespace, team.group)
            self.namespace = place.namespace
            self.dns_name = self.dns_name_template.format(namespace=self.namespace, name=self.pod_name)
        return place

    async def team_form_html(self) -> str:
        """The form's team section (a choice for members of several teams; where the home lives)."""
        if not self.team_namespaces:
            return ""
        names = self._home_claim_names()
        home_ns = self._home_namespace
        member = teams.user_teams(self.team_map(), self._team_groups())
        if home_ns is None and any(self.team_map()[g] != self.hub_namespace for g in member):
            name, _ = await self._claim_in(self.hub_namespace, names)
            if name is not None:
                home_ns = self._home_namespace = self.hub_namespace
        selected = teams.team_from_options(self.user_options) or self._team
        return teams.render_team_section(
            self.team_map(), self._team_groups(), self.hub_namespace, selected, names[0], home_ns,
            template_paths=self.form_template_paths,
        )

    # ---- quota: a team's servers are charged to the team's pool; usage from every namespace

    @property
    def quota_policy(self):
        policy = super().quota_policy
        if not self._team or not self.team_namespaces:
            return policy
        # a start reads it ~10 times: made again only when the policy, team or teams change
        made = getattr(self, "_team_quota_policy", None)
        if made is not None and made[0] is policy and made[1] == self._team and made[2] is self.team_namespaces:
            return made[3]
        pools = teams.team_pools(policy.pools, self.team_map(), self._team)
        ours = policy if pools == policy.pools else dataclasses.replace(policy, pools=pools)
        self._team_quota_policy = (policy, self._team, self.team_namespaces, ours)
        return ours

    async def quota_ready(self):
        """Rebuild the usage ledger from every namespace ptjaas runs servers in (the hub's and
        each team's), each once per process, before the first quota decision. Nothing without
        quotas."""
        if not (self.quota_rebuild_from_cluster and self.quota_policy.enabled):
            return
        namespaces = teams.team_namespaces_in_use(self.team_map(), self.hub_namespace)
        await asyncio.gather(*(self._quota_ready_in(ns) for ns in namespaces))

    async def _quota_ready_in(self, ns):
        rebuild = self._quota_rebuild if ns == self.hub_namespace else self._quota_rebuild_team
        await self._rebuild_once(ns, rebuild)

    async def _quota_rebuild_team(self, ns):
        """A team namespace the hub may not list (not created yet, or its RoleBinding missing)
        holds no server the hub started: count none there, and say what is missing."""
        from kubernetes_asyncio.client.rest import ApiException

        try:
            await self._quota_rebuild(ns)
        except ApiException as e:
            if e.status not in (403, 404):
                raise
            self.log.error(
                "Team namespace %s cannot be used by the hub (%s %s): create it and the hub's Role there "
                "with `ptjaas team-manifests ... | kubectl apply -f -` (docs/teams.md); "
                "servers of its team cannot start until then", ns, e.status, e.reason)


def team_namespace_not_ready(spawner, error):
    """The error a user reads when a start failed because the team's namespace is missing or the
    hub has no rights there (an ``ApiException`` 404/403 naming it); None for any other error.
    The hub's log says what the admin must do."""
    from kubernetes_asyncio.client.rest import ApiException

    if not isinstance(error, ApiException):
        return None
    ns = spawner.namespace
    text = f"{error.reason} {error.body!r}"
    missing = error.status == 404 and "namespaces" in text and ns in text
    forbidden = error.status == 403 and ns in text and "exceeded quota" not in text
    if ns == spawner.hub_namespace or not (missing or forbidden):
        return None
    spawner.log.error(
        "Team namespace %s (team %s) cannot be used by the hub (%s): create it and the hub's Role there "
        "with `ptjaas team-manifests ... | kubectl apply -f -` (docs/teams.md)",
        ns, spawner._started_team, "it does not exist" if missing else "forbidden")
    message = (f"Team {spawner._started_team!r}'s namespace {ns!r} is not ready for servers yet, so your "
               "server was not started. Ask your administrator to set it up (ptjaas team-manifests).")
    return Refusal(503, message, reason="Team namespace not ready")
