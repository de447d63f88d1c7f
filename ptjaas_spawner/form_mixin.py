"""``SpawnFormMixin``: the spawn form and the user's choice, for ``PtjaasSpawner``.

The form is rendered by ``form.render_form`` and read by ``form.options_from_formdata`` (pure);
the choice is resolved by ``catalog.resolve_choice`` (pure) against the quota's verdict per size
(``QuotaMixin.size_decisions``). Without a catalog KubeSpawner's own form (its profile_list) or
none is shown.
"""

from __future__ import annotations

from kubespawner import KubeSpawner
from tornado import web
from traitlets import Dict, List, Unicode
from traitlets.config import LoggingConfigurable

from . import catalog, form, homevolume, teams
from .errors import Refusal
from .homeclaim import HomeClaims
from .quota.budget import form_verdict


def refusal(e):
    """A ChoiceError as the hub's 400, its message shown as is in the page and the API."""
    return Refusal(400, str(e), reason="Invalid server options")


class SpawnFormMixin(LoggingConfigurable):
    """The catalog (``images``, ``sizes``) as the user sees it and chooses from it."""

    images = Dict(
        config=True,
        help="""The image-version catalog: image key -> image.

        Each image is a dict with ``display_name``, ``description``, ``versions`` and optionally
        ``sizes`` (list of size keys the image may run on, e.g. GPU sizes for a CUDA image),
        ``groups`` (only members of these groups may use it) and the culling keys
        ``cull_idle_timeout``, ``cull_max_age``, ``kernel_idle_timeout`` (seconds).
        ``versions`` is a dict version key -> ``{image: tag or digest reference, label?, notes?,
        default?: bool (at most one), deprecated?: message}``. Deprecated versions stay
        selectable with their message shown; removing a version makes it unselectable.

        Empty (the default): KubeSpawner's ``image`` is used and no form is shown.
        """,
    )
    sizes = Dict(
        config=True,
        help="""CPU/GPU sizes: size key -> size.

        Each size is a dict with ``display_name``, ``description?``, ``cpu_guarantee``,
        ``cpu_limit`` (cores, e.g. 0.5 or "500m"), ``mem_guarantee``, ``mem_limit`` (Kubernetes
        quantities, e.g. "4Gi"), ``gpu?`` (count, default 0), ``gpu_resource?`` (default
        "nvidia.com/gpu"), ``node_selector?``, ``tolerations?``, ``groups?`` (only members of
        these groups may pick the size) and the culling keys ``cull_idle_timeout``,
        ``cull_max_age``, ``kernel_idle_timeout`` (seconds). The pod gets exactly these requests
        and limits.

        Empty (the default): KubeSpawner's cpu/mem settings are used unchanged.
        """,
    )

    custom_images = Dict(
        config=True,
        help="""Images of a user's own, for the groups an admin permits (``customimages``)::

            {"groups": ["ml-platform"], "allowed": ["registry.example.com/team/*"],
             "sizes": ["small"], "pull_secret": "team-registry"}

        ``groups``: who may ([]: everyone; absent: nobody); ``allowed``: glob patterns of the
        image references allowed (required); ``sizes``: only these sizes (absent: the user's);
        ``pull_secret``: an image pull Secret in the server's namespace. Members post
        ``{"custom_image": "registry.example.com/team/x:1"}`` (the form has a field for it); any
        other reference is refused with the allowed patterns named, and the audit record of the
        start carries the reference. Empty (the default): only the catalog's images.
        """,
    )

    data_connections = Dict(
        config=True,
        help="""Data connections: credentials by reference, never read by the hub
        (``connections``): connection key -> ``{display_name?, description?, groups?, secret,
        env_from?: bool, env?: {VARIABLE: key}, files_at?: directory}``. ``secret`` names a
        Secret in the server's namespace that the pod gets through ``envFrom``,
        ``secretKeyRef`` or a read-only ``secret`` volume; the hub only names it (its Role needs
        no access to Secrets). Users tick connections in the form (``"connections": [keys]``),
        each limited to its ``groups``; a Secret that does not exist fails the start at once
        with a plain message. Each connection mounted is on the audit record, by name.
        """,
    )

    spawn_form_template = Unicode(
        "",
        config=True,
        help="""Jinja template text of the spawn form, replacing ptjaas's ``form/spawn_form.html``
        (as KubeSpawner's ``profile_form_template`` replaces its profile form).

        Empty (the default): ptjaas's own. The template gets plain data (``images``, ``sizes``,
        ``last``, ``summary``, ``shown``, ...: see ``ptjaas_spawner/templates/form/spawn_form.html``)
        and may ``{% include %}`` ptjaas's parts (``form/images.html``, ``form/sizes.html``,
        ``form/last_choice.html``, ``form/script.html``). Every ``{{ value }}`` is HTML-escaped.
        Keep the field names (``choice``, ``image``, ``version--<image>``, ``size``,
        ``shown-*``): the posted form is read strictly.
        """,
    )
    form_template_paths = List(
        Unicode(),
        config=True,
        help="""Directories searched before ptjaas's own templates for the spawn form's
        templates: a site's ``form/spawn_form.html``, ``form/team_section.html`` (the team
        choice) or one of the parts they include (``form/images.html``, ``form/sizes.html``,
        ``form/last_choice.html``, ``form/script.html``) replaces ptjaas's file of that name.
        """,
    )

    def effective_catalog(self):
        """(images, sizes): the configured catalog, or a one-entry stand-in when unset."""
        images = self.images or {
            "default": {
                "display_name": "Default image",
                "versions": {"default": {"image": self._configured_image}},
            }
        }
        sizes = self.sizes or {
            "default": {
                "display_name": "Default",
                "cpu_guarantee": self.cpu_guarantee or 0,
                "cpu_limit": self.cpu_limit or 0,
                "mem_guarantee": self.mem_guarantee or 0,
                "mem_limit": self.mem_limit or 0,
            }
        }
        return images, sizes

    async def quota_verdicts(self):
        """(decisions, availability): the quota's decision per size and as the form shows it
        (``{size: (allowed, note)}``); both empty without quotas."""
        decisions = await self.size_decisions(self.effective_catalog()[1]) or {}
        return decisions, {key: form_verdict(d) for key, d in decisions.items()}

    def resolve_choice(self, options, availability=None):
        """The user's options as a ``catalog.Choice``, or the hub's 400 (recorded in the audit)."""
        images, sizes = self.effective_catalog()
        if self.team_namespaces:
            options = teams.without_team(options)  # the team is checked by TeamsMixin
        # the datasets are checked by DatasetsMixin, in the start plan
        options = {k: v for k, v in (options or {}).items() if k != "datasets"}
        # without team namespaces a 'team' key is an unknown option like any other (refused)
        try:
            return catalog.resolve_choice(
                images, sizes, self.user_group_names(), options, last=self._last, availability=availability,
                custom_images=self.custom_images, connections=self.data_connections)
        except catalog.ChoiceError as e:
            self.audit_choice_refused(options, availability, str(e))
            raise refusal(e) from None

    async def _render_options_form_async(self):
        if not self.images and not self.sizes:
            # no catalog: KubeSpawner's own form (its profile_list), or none
            # (kubespawner 7.1.0: its options_form default, called, not overridden; no public way)
            kube_form = KubeSpawner._options_form_default(self)
            if callable(kube_form):
                kube_form = await kube_form(self)
            return kube_form
        await self.apply_group_overrides()
        images, sizes = self.effective_catalog()
        _, availability = await self.quota_verdicts()
        selected = {}
        opts = self.user_options or {}
        if self._form_refused is not None:  # shown again with its error: keep the user's choices
            selected, self._form_refused = self._form_refused, None
        elif opts and not opts.get("same_as_last"):
            try:
                catalog.resolve_choice(images, sizes, self.user_group_names(), teams.without_team(opts),
                                       custom_images=self.custom_images, connections=self.data_connections)
                selected = opts
            except catalog.ChoiceError:
                selected = {}
        return (await self.team_form_html()) + form.render_form(
            images,
            sizes,
            self.user_group_names(),
            last=self._last,
            availability=availability,
            selected=selected,
            summary=await self.quota_summary(),
            budget=self.time_budget_line(),  # accounting: GPU-/CPU-hours left
            template_paths=self.form_template_paths,
            template_text=self.spawn_form_template,
            custom_images=self.custom_images,
            connections=self.data_connections,
            home=await self.home_for_form(),
        ) + (await self.dataset_form_html())

    def _form_home_namespace(self) -> str:
        """The namespace the next start's home lives in (``TeamsMixin``: the chosen team's, or
        the hub's for a home made there before team namespaces)."""
        if not self.team_namespaces:
            return self._home_namespace or self.hub_namespace
        try:
            team = teams.resolve_team(self.team_map(), self._team_groups(), teams.team_from_options(self.user_options),
                                      self.hub_namespace, self._team)
        except teams.TeamChoiceError:
            team = teams.Team(None, self.hub_namespace)
        # _home_namespace: from the state, or a home made before teams that team_form_html found
        return teams.placement(team, self.hub_namespace, self._home_namespace).namespace

    async def home_for_form(self) -> dict:
        """Where the user's home volume lives, for the form (``form.home_text``), from the
        spawner's state; a home the state does not know is looked for once (one claim read, its
        answer kept on the spawner until a start remembers the home)."""
        namespace = self._form_home_namespace()
        wanted = homevolume.home_size_for(self.user_group_names(), self.home_volume_size,
                                          self.home_volume_size_by_group)
        remembered = self._remembered_claim()
        if remembered and self._home_namespace in (None, namespace):
            return {"claim": remembered, "namespace": namespace, "size": self._home.get("size"), "wanted": wanted,
                    "exists": True}
        claim = self._expand_user_properties(self.pvc_name_template)
        seen = getattr(self, "_form_home_seen", None)
        if seen is None or seen[0] != (namespace, claim):
            claims = HomeClaims(self)
            claims.namespace = namespace
            try:
                pvc = await claims.read(claim)
                seen = ((namespace, claim), pvc is not None, homevolume.claim_requested(pvc))
            except Exception as e:  # noqa: BLE001 - the form shows the home without saying whether it exists
                self.log.warning("Could not read home claim %s/%s for the form of %s: %s", namespace, claim,
                                 self._log_name, e)
                seen = ((namespace, claim), None, None)
            if seen[1] is not None:
                self._form_home_seen = seen
        return {"claim": claim, "namespace": namespace, "size": seen[2], "wanted": wanted, "exists": seen[1]}

    async def _ptjaas_options_from_form(self, formdata):
        if not self.images and not self.sizes:
            # KubeSpawner's profile form (kubespawner 7.1.0: options_from_form's default, called)
            return self._options_from_form(formdata)
        await self.apply_group_overrides()
        try:
            # the team field is TeamsMixin's (when team namespaces are on); every other field is
            # the catalog form's (strict: a version field only for an image the user may use)
            teams_on = bool(self.team_namespaces)
            formdata, mounts = self.datasets_from_form(formdata)  # dataset--<name> fields (datasets/)
            fields = {k: v for k, v in (formdata or {}).items() if k != teams.TEAM_OPTION or not teams_on}
            images, sizes = self.effective_catalog()
            offered = catalog.visible_images(images, sizes, self.user_group_names())
            options = form.options_from_formdata(fields, offered)
        except catalog.ChoiceError as e:
            self.audit_refused("refused-option", str(e), server=self.name, options=form.posted_summary(formdata))
            self._forget_new_named_server()
            raise refusal(e) from None
        if mounts:
            options["datasets"] = mounts
        try:
            options = self.add_team_from_form(options, formdata)
        except web.HTTPError:
            self._forget_new_named_server()
            raise
        try:
            self.resolve_choice(options, (await self.quota_verdicts())[1])  # refuse before anything
        except web.HTTPError:
            self._form_refused = dict(options, refused=True, choice="new")
            self._forget_new_named_server()
            raise
        return options
