"""``TeamsMixin``: run each member's server and home in the team's namespace (see ``teams``)."""

from traitlets import Dict, TraitError, validate
from traitlets.config import LoggingConfigurable

from . import teams


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
