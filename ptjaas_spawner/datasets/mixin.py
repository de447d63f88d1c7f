"""``DatasetsMixin``: the site's dataset settings and the mount of datasets at a start.

The ``datasets`` server option (``{"name": "rw"|"ro"}``, or the form's checkboxes) is resolved
in the start plan after the team namespace is known (``start._plan_choice_and_home``): the
team's dataset claims in the server's namespace are listed (one read), each asked-for dataset
checked (``policy.may_mount``) and, for a ReadWriteOnce dataset, checked against the pods the
hub's pod reflector already holds (``policy.in_use_elsewhere``). A refusal is a 400/409 with the
reason, recorded (``refused-dataset``), and nothing is made.
"""

from __future__ import annotations

from traitlets import Dict, TraitError, validate
from traitlets.config import LoggingConfigurable

from .. import formtemplates
from ..errors import Refusal, SettingError
from ..kube import Kube
from ..snapshots.views import view_request
from . import policy, timetravel

OPTION = "datasets"
FORM_PREFIX = "dataset--"
DATASETS_FORM = "form/datasets.html"


class DatasetsMixin(LoggingConfigurable):
    """Mix into the KubeSpawner subclass."""

    # snapshots of datasets to open read-only at the next start (``timetravel.open_request``s,
    # from the datasets page or API): kept until a start that opened them succeeds
    dataset_views_pending: tuple | list = ()
    _dataset_views_opened: tuple | list = ()

    dataset_classes = Dict(
        config=True,
        help="""Access classes of team datasets (``/hub/ptjaas/datasets``): class name ->
        ``{display_name?, storage_class?: StorageClass name (None: the cluster's default),
        access_modes: ["ReadWriteMany"] or ["ReadWriteOnce"], ...}``. A ReadWriteMany class lets
        several servers (and pipelines) mount a dataset at once; with ReadWriteOnce a second
        server's start is refused, naming whose server has it. The first class is the default.
        Empty (the default): one class ``standard``, the cluster's default StorageClass,
        ReadWriteOnce. Which teams may have datasets, how many and how much storage:
        ``quota_groups.<team>.datasets: {count, storage}``.""",
    )

    @validate("dataset_classes")
    def _validate_dataset_classes(self, proposal):
        try:
            return policy.check_classes(proposal["value"])
        except SettingError as e:
            raise TraitError(str(e)) from None

    def dataset_namespace(self, team: str) -> str:
        """Where team ``team``'s datasets live: its team namespace, else the hub's."""
        return self.team_map().get(team) or self.hub_namespace

    def dataset_kube(self) -> Kube:
        return Kube(self.hub_namespace, self.api.api_client)

    def dataset_option(self, options):
        """The ``datasets`` option's checked shape (a 400 recorded if forged)."""
        try:
            return policy.chosen_mounts((options or {}).get(OPTION))
        except policy.DatasetRefused as e:
            self._dataset_refused(str(e), e.status, (options or {}).get(OPTION))

    def _dataset_refused(self, message, status, asked):
        self.audit_refused("refused-dataset", message, server=self.name,
                           options={OPTION: asked if isinstance(asked, dict) else str(asked)[:100]})
        raise Refusal(status, message, reason="Invalid server options")

    async def _team_datasets(self, groups) -> dict:
        found = {}
        for item in await self.dataset_kube().list_claims(policy.selector(), self.namespace):
            d = policy.describe(item)
            if d["team"] in groups and not d["deleting"]:
                found[d["name"]] = d
        return found

    async def repeat_last_datasets(self, options) -> dict:
        """"Same as last time" (``same_as_last`` without a ``datasets`` option): the datasets the
        last successful start mounted, with their modes, those still allowed; one no longer there,
        no longer writable by this user or in another server (ReadWriteOnce) is left out, with a
        note on the progress page."""
        options = options or {}
        last = (getattr(self, "_last", None) or {}).get(OPTION) or {}
        if not options.get("same_as_last") or OPTION in options or not isinstance(last, dict) or not last:
            return {}
        groups = self.user_group_names()
        found = await self._team_datasets(groups)
        pods = list(getattr(getattr(self, "pod_reflector", None), "pods", {}).values())
        admin = bool(getattr(self.user, "admin", False))
        out = {}
        for name, mode in list(last.items())[:policy.MAX_MOUNTS]:
            d = found.get(name)
            problem = (f"there is no dataset {name} of your teams here any more" if d is None else
                       policy.may_mount(d, self.user.name, groups, mode, admin=admin)
                       or policy.in_use_elsewhere(d, pods, self.pod_name))
            if problem:
                self.notes_extend([f"Dataset {name}, mounted last time, is not mounted now: {problem}"])
            else:
                out[name] = mode
        return out

    def dataset_views_started(self) -> None:
        """A start succeeded: the dataset snapshots it opened no longer wait for a start (one
        asked for while it was starting still does)."""
        opened = list(self._dataset_views_opened)
        self.dataset_views_pending = [p for p in self.dataset_views_pending or () if p not in opened]
        self._dataset_views_opened = ()

    def remember_datasets(self, mounted: list) -> None:
        """A start succeeded: "same as last time" repeats its mounts (kept in the last choice)."""
        if getattr(self, "_last", None):
            self._last[OPTION] = {d["name"]: mode for d, mode in mounted}

    async def resolve_datasets(self, asked: dict) -> list:
        """``[(dataset, mode)]`` for the asked ``{name: mode}``, each checked; else a refusal."""
        if not asked:
            return []
        groups = self.user_group_names()
        found = await self._team_datasets(groups)
        pods = list(getattr(getattr(self, "pod_reflector", None), "pods", {}).values())
        out = []
        for name, mode in asked.items():
            d = found.get(name)
            if d is None:
                self._dataset_refused(f"There is no dataset {name} of your teams where your server runs "
                                      f"(namespace {self.namespace}).", 400, asked)
            problem = policy.may_mount(d, self.user.name, groups, mode, admin=bool(getattr(self.user, "admin", False)))
            if problem:
                self._dataset_refused(problem, 403 if mode == "rw" and d["team"] in groups else 400, asked)
            busy = policy.in_use_elsewhere(d, pods, self.pod_name)
            if busy:
                self._dataset_refused(busy, 409, asked)
            out.append((d, mode))
        return out

    async def dataset_views_wanted(self) -> list:
        """The dataset snapshots waiting to be opened (``dataset_views_pending``) as
        ``view_request``s for ``snapshot_views_prepare``: each checked again (a member who may
        mount the dataset, a ready snapshot of it where the server runs); one that is not is
        dropped, recorded (``refused-dataset``) and said on the progress page, and the server
        starts without it."""
        pending = list(self.dataset_views_pending or ())
        self._dataset_views_opened = ()
        if not pending:
            return []
        groups = self.user_group_names()
        found = await self._team_datasets(groups)
        items = await self.dataset_kube().list_snapshots(policy.DATASET_LABEL, self.namespace) if found else []
        admin = bool(getattr(self.user, "admin", False))
        views, opened = [], []
        for request in pending:
            d, snap, problem = timetravel.view_problem(request, found, self.user.name, groups, admin, items)
            if problem:
                self.audit_refused("refused-dataset", problem, by=request.get("by"), server=self.name,
                                   dataset=request.get("dataset"), snapshot=request.get("snapshot"))
                self.notes_extend([f"Snapshot {request.get('snapshot')} of dataset {request.get('dataset')} "
                                   f"is not opened: {problem}"])
                continue
            opened.append(request)
            views.append(view_request(
                snap, timetravel.view_mount_path(self.home_mount_path, d, snap), by=request.get("by"), size=d["size"],
                storage_class=d["storage_class"], annotations={policy.DATASET_LABEL: d["name"], policy.TEAM_LABEL: d["team"]},
                audit={"dataset": d["name"], "team": d["team"]}))
        refused = [p for p in pending if p not in opened]  # not asked again
        self.dataset_views_pending = [p for p in self.dataset_views_pending or () if p not in refused]
        self._dataset_views_opened = opened
        return views

    def dataset_pod_parts(self, mounted: list) -> tuple[list, list]:
        return policy.mount_parts(mounted, self.home_mount_path)

    # ---- the spawn form ----
    async def dataset_form_html(self) -> str:
        """The form's datasets section: the datasets of the user's teams where the server runs."""
        groups = self.user_group_names()
        if not any(policy.team_limits(self.quota_groups, g) is not None for g in groups):
            return ""
        try:
            items = await self.dataset_kube().list_claims(policy.selector(), self._form_home_namespace())
        except Exception as e:  # noqa: BLE001 - the form still opens; the start checks again
            self.log.warning("Could not list datasets for the form of %s: %s", self._log_name, e)
            return ""
        pods = list(getattr(getattr(self, "pod_reflector", None), "pods", {}).values())
        selected = (self.user_options or {}).get(OPTION) if isinstance((self.user_options or {}).get(OPTION), dict) else {}
        shown = []
        for d in sorted((policy.describe(i) for i in items), key=lambda d: (d["team"], d["name"])):
            if d["team"] not in groups or d["deleting"]:
                continue
            shown.append(dict(d, id=f"ptjaas-dataset-{d['name']}", selected=selected.get(d["name"], ""),
                              writable=not policy.may_mount(d, self.user.name, groups, "rw",
                                                            admin=bool(getattr(self.user, "admin", False))),
                              busy=policy.in_use_elsewhere(d, pods, self.pod_name)))
        return formtemplates.render(DATASETS_FORM, {"datasets": shown}, self.form_template_paths)

    @staticmethod
    def datasets_from_form(formdata) -> tuple[dict, dict]:
        """``(the other fields, {name: mode})``: the form's ``dataset--<name>`` fields taken out
        (an empty one is not mounted); their shape is checked at the start (``dataset_option``)."""
        rest, chosen = {}, {}
        for key, values in (formdata or {}).items():
            if key.startswith(FORM_PREFIX):
                value = (values or [""])[0]
                if value:
                    chosen[key[len(FORM_PREFIX):][:100]] = value[:10]
            else:
                rest[key] = values
        return rest, chosen
