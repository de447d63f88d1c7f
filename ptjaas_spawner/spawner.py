"""The ptjaas spawner: a KubeSpawner subclass.

Thin: the policy lives in pure modules (``catalog``, ``sizes``, ``homevolume``, ``objects``,
``form``, ``configcheck``); the spawn form is ``form_mixin``, the home volume ``home_mixin``
(its Kubernetes calls in ``homeclaim``), quotas ``quota``, teams ``teams_mixin``, the audit record
and snapshot views ``datamixin``. The mixins hold settings and steps; none of them wraps
``start`` or ``stop``: the start and the stop read top to bottom in ``start.py``
(``start_server``, ``stop_server``), which calls their steps with the start plan. Pods are still
made and started by KubeSpawner (its ``_start`` is one step of ``start_server``).

Private KubeSpawner members overridden or called (each says which versions it was checked
against and which public hook would replace it; the full list is docs/upstream.md):
``_start`` (called) and ``_make_create_pod_request`` (overridden); in ``watches`` (the
reflectors, and ``poll`` through an outage): ``_start_reflector``, ``_start_watching_pods``,
``_start_watching_events`` and ``ResourceReflector._list_and_update``.
"""

import asyncio
import functools

from jupyterhub.spawner import Spawner
from kubespawner import KubeSpawner
from sqlalchemy.orm import object_session
from traitlets import Float, TraitError, default, validate

from . import configcheck, connections, customimages, homevolume, objects, redact, sharing, start
from .accounting.mixin import AccountingMixin
from .culler.policy import kernel_culling_args
from .datamixin import DataAccessMixin
from .datasets import policy as datasets_policy
from .datasets.mixin import DatasetsMixin
from .form_mixin import SpawnFormMixin
from .home_mixin import HomeVolumeMixin
from .interfaces import collaboration_args
from .newserver import RefusedNewServerMixin
from .progress import start_progress
from .quota import QuotaMixin
from .snapshots.views import snapshot_view_volumes
from .teams_mixin import TeamsMixin
from .watches import WatchesMixin

STATE_KEY = "ptjaas"
# the settings check_config cross-checks, in configcheck.check_all's order (the start-up check
# of fragment 99 reads the same ones from the config)
CATALOG_SETTINGS = (
    "images", "sizes", "home_volume_size", "home_volume_size_by_group", "home_volume_access_modes",
    "home_mount_path", "shared_volumes", "custom_images", "data_connections",
)


def _applied_in_load_user_options(spawner, user_options):
    """JupyterHub's apply_user_options hook: nothing to do (see load_user_options)."""


class PtjaasSpawner(DataAccessMixin, DatasetsMixin, RefusedNewServerMixin, TeamsMixin, SpawnFormMixin, HomeVolumeMixin, AccountingMixin,
                    QuotaMixin, WatchesMixin, KubeSpawner):
    """KubeSpawner with ptjaas home volumes, an image-version catalog and CPU/GPU sizes."""

    unschedulable_timeout = Float(
        30,
        config=True,
        help="""Seconds a new pod may stay unschedulable (the scheduler's FailedScheduling event,
        e.g. "Insufficient nvidia.com/gpu": no node has a free GPU) before the start fails with
        that reason in plain words, the pod is deleted and the quota share freed. Waiting for
        the home volume to be provisioned does not count. 0 waits for ``start_timeout``.""",
    )
    reflector_check_interval = Float(
        10,
        config=True,
        help="""Seconds between checks that KubeSpawner's pod and event watches still run; a watch
        that gave up (after about a minute of API server outage) is restarted. 0 turns the
        background check off (a start still restarts a stopped watch first).""",
    )

    # ---- defaults that differ from KubeSpawner -------------------------------------------

    @default("pvc_name_template")
    def _default_pvc_name_template(self):
        return homevolume.HOME_CLAIM_TEMPLATE

    @default("cmd")
    def _default_cmd(self):
        # z2jh's default (singleuser.cmd): with KubeSpawner's None (the image's CMD) the arguments
        # ptjaas adds, a size's kernel culling, would be dropped ("Ignoring arguments when using
        # implicit command from image") under a plain `jupyterhub -f`
        return ["jupyterhub-singleuser"]

    @default("uid")
    def _default_uid(self):
        return 1000

    @default("fs_gid")
    def _default_fs_gid(self):
        return 100

    @default("allow_privilege_escalation")
    def _default_ape(self):
        return False

    @default("automount_service_account_token")
    def _default_automount(self):
        return False

    @default("container_security_context")
    def _default_csc(self):
        return objects.container_security_context()

    @default("pod_security_context")
    def _default_psc(self):
        return {"seccompProfile": {"type": "RuntimeDefault"}, "runAsNonRoot": True}

    @default("delete_pvc")
    def _default_delete_pvc(self):
        return self.delete_home_volume

    @default("options_form")
    def _default_options_form(self):
        return PtjaasSpawner._render_options_form_async

    @default("options_from_form")
    def _default_options_from_form(self):
        return self._ptjaas_options_from_form

    if "apply_user_options" in Spawner.class_trait_names():  # JupyterHub >= 5.3

        @default("apply_user_options")
        def _default_apply_user_options(self):
            # ptjaas validates and applies user_options itself, in its start plan (plan_start)
            return _applied_in_load_user_options

    # ---- config validation ---------------------------------------------------------------

    _CONFIG_CHECKS = {
        "sizes": configcheck.check_sizes,
        "images": configcheck.check_images,
        "shared_volumes": configcheck.check_shared_volumes,
    }

    @validate(*_CONFIG_CHECKS)
    def _validate_catalog_setting(self, proposal):
        try:
            self._CONFIG_CHECKS[proposal["trait"].name](proposal["value"])
        except configcheck.ConfigError as e:
            raise TraitError(str(e)) from None
        return proposal["value"]

    def check_config(self):
        """Check the whole catalog (cross references too); raise ConfigError naming the key.

        Also run at hub start-up, on the config, by ``jupyterhub_config.d/99-ptjaas-check.py``
        (``fragmentcheck.check_spawner_catalog``): JupyterHub makes spawners lazily and has no
        start-up hook for spawner classes. A config that does not run that check gets these checks
        at each user's first start (the start fails with the message in the page and the log)."""
        configcheck.check_all(*(getattr(self, name) for name in CATALOG_SETTINGS))
        self.check_team_config()
        datasets_policy.check_team_limits(self.quota_groups)  # quota_groups.<team>.datasets

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        redact.install(self.log)
        self.check_config()
        self._configured_image = self.image
        # what a choice may set for one start (a catalog interface, a custom image's pull secret)
        self.configured_opening = (self.default_url, list(self.image_pull_secrets or []))
        self._last = {}  # last successful choice (persisted in state)
        self.forget_home()  # _home: {"claim": name, "size": requested size, "bound"?: a pod ran on it}
        self._notes = []  # what the progress page tells the user at this start
        self._form_refused = None  # a refused form post, shown again with its error
        self.start_plan = None  # the current (or last) start's StartPlan
        self.start_future = None  # the current (or last) start, as the progress page follows it

    # ---- state ---------------------------------------------------------------------------

    def get_state(self):
        """KubeSpawner's state, and ptjaas's: the last choice and the home (here), the team
        (``teams_mixin``), the opened snapshots' claims (``snapshots.views``)."""
        state = super().get_state()
        state.update(self.team_state())
        state.update(self.snapshot_views_state())
        ours = {}
        if self._last:
            ours["last"] = dict(self._last)
        if self._home:
            ours["home"] = dict(self._home)
        if ours:
            state[STATE_KEY] = ours
        return state

    def load_state(self, state):
        super().load_state(state)
        self.load_snapshot_views_state(state)
        self.load_team_state(state)
        ours = state.get(STATE_KEY) or {}
        self._last = dict(ours.get("last") or {})
        self.load_home_state(ours.get("home"))

    def clear_state(self):
        super().clear_state()
        self.forget_snapshot_views()

    # ---- the user's groups -----------------------------------------------------------------

    def user_group_names(self):
        return sorted(g.name for g in (getattr(self.user, "groups", None) or []))

    # ---- start and stop: the pipeline is ptjaas_spawner/start.py ---------------------------

    def start(self):
        """Public ``Spawner.start``: the whole start (``start.start_server``), with KubeSpawner's
        start of the pod as one of its steps. ``start_future`` is what the progress page follows."""
        # KubeSpawner._start is called, not overridden (kubespawner 7.1.0, the newest and z2jh's:
        # load_user_options, the pod watches, get_pod_manifest, modify_pod_hook, the pod create,
        # the wait for the pod); KubeSpawner.start() is not called, so its _start_future (read
        # only by its progress(), which ptjaas replaces) stays None. Would be replaced by a public
        # "start the pod" method (docs/upstream.md).
        self.start_future = asyncio.ensure_future(start.start_server(self, super()._start))
        return self.start_future

    async def stop(self, now=False):
        """Public ``Spawner.stop``: KubeSpawner's stop of the pod, then ptjaas's (``start.stop_server``)."""
        return await start.stop_server(self, super().stop, now=now)

    async def poll(self):
        """Public ``Spawner.poll``: KubeSpawner's poll of the pod, read by ptjaas's (``start.poll_server``)."""
        return await start.poll_server(self, super().poll)

    async def plan_start(self):
        """The start's plan (``start.plan_start``): choice, team namespace, home claim, snapshots."""
        return await start.plan_start(self)

    def _apply_choice(self, choice):
        start.apply_choice(self, choice)

    async def load_user_options(self):
        """KubeSpawner's first step of its start. The start made its plan already (``start.py``);
        called on its own (a tool, a test) it makes the plan: validates the user's options, sets
        KubeSpawner's traits and ensures the home claim."""
        if self.start_plan is None:
            self.start_plan = await start.plan_start(self)

    async def load_kubespawner_options(self):
        """KubeSpawner's own ``load_user_options`` (profile_list), for a start without a catalog."""
        await super().load_user_options()

    def last_options(self):
        options = {k: self._last[k] for k in ("image", "version", "size") if k in self._last}
        if self._last.get("image") == customimages.CUSTOM and self._last.get("image_ref"):
            options["custom_image"] = self._last["image_ref"]
        if self._last.get("connections"):
            options["connections"] = list(self._last["connections"])
        return options

    def save_user_options(self, options):
        """The server's options as the hub keeps them (a refused request's put back), committed
        at once: an uncommitted change would be rolled back by the next hub request that ends
        meanwhile (JupyterHub's handlers roll back a dirty session), which also expires every
        user and server the hub holds, each then read again from the database. Unchanged
        options are not written."""
        self.user_options = dict(options)
        orm_spawner = getattr(self, "orm_spawner", None)
        if orm_spawner is None or orm_spawner.user_options == self.user_options:
            return
        orm_spawner.user_options = dict(options)
        session = object_session(orm_spawner)
        if session is not None:
            session.commit()

    def notes_extend(self, notes):
        self._notes.extend(notes)

    @property
    def choice(self):
        """The current (or last) start's ``catalog.Choice``; None without a catalog."""
        return self.start_plan.choice if self.start_plan is not None else None

    async def get_pod_manifest(self):
        pod = await super().get_pod_manifest()
        groups = self.user_group_names()
        plan = self.start_plan
        claim = plan.home.name if plan is not None and plan.home is not None else self.pvc_name
        vol, mount = homevolume.home_volume(claim, self.home_mount_path)
        shared_vols, shared_mounts = homevolume.shared_volumes_for(self.shared_volumes, groups)
        view_vols, view_mounts = snapshot_view_volumes(plan.snapshot_views if plan is not None else [])
        data_vols, data_mounts = self.dataset_pod_parts(plan.datasets if plan is not None else [])
        pod.spec.volumes = list(pod.spec.volumes or []) + [vol] + shared_vols + view_vols + data_vols
        container = pod.spec.containers[0]
        # (the snapshots' and datasets' mounts are inside the home's: after it)
        container.volume_mounts = (list(container.volume_mounts or []) + [mount] + shared_mounts + view_mounts
                                   + data_mounts)
        choice = self.choice
        if choice is not None and choice.connections:  # credentials by name only (connections.py)
            parts = connections.pod_parts(self.data_connections, choice.connections)
            pod.spec.volumes += parts["volumes"]
            container.volume_mounts += parts["volume_mounts"]
            container.env_from = list(container.env_from or []) + parts["env_from"]
            container.env = list(container.env or []) + parts["env"]
        if choice is not None:
            pod.metadata.labels.update(objects.choice_labels(choice.image, choice.version, choice.size))
            pod.metadata.annotations.update(objects.choice_annotations(choice.image_ref))
        pod.metadata.labels.update(objects.user_labels(self.user.name))
        return pod

    def get_args(self):
        """Spawner args plus, when the chosen size/image set ``kernel_idle_timeout``, the
        single-user server's own kernel culling (see ``culler.policy.kernel_culling_args``)."""
        args = list(super().get_args())
        choice = self.choice
        if choice is not None:
            images, sizes = self.effective_catalog()
            args += kernel_culling_args(sizes.get(choice.size), images.get(choice.image))
            args += collaboration_args(choice.collaboration)  # jupyter-collaboration (interfaces.py)
        custom = bool(choice is not None and choice.custom)
        return args + sharing.server_args(sharing.sharing_policy(self.config), custom)

    async def _make_create_pod_request(self, pod, request_timeout):
        """The pod create, with the quota charged on the final manifest (``start.create_pod``)."""
        # Private override, checked against kubespawner 7.1.0 (with jupyterhub 6.1 and 5.5):
        # KubeSpawner._start calls it with the final manifest (after get_pod_manifest and the
        # admin's modify_pod_hook), once per retry. Would be replaced by a public "pod about to
        # be created" hook (modify_pod_hook is the admin's setting).
        create = functools.partial(super()._make_create_pod_request, request_timeout=request_timeout)
        return await start.create_pod(self, pod, create)

    def remember_choice(self, choice, pod):
        """A start of ``choice`` succeeded (``pod``: its pod as the watch holds it): the next
        form offers it as "same as last time", with the image digest that ran."""
        digest = ""
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") == "notebook" or not digest:
                digest = status.get("imageID") or digest
        self._last = dict(choice.as_state(), image_digest=digest)

    async def progress(self):
        # Public Spawner hook; replaces KubeSpawner's (kubespawner 7.1.0), which would show the
        # previous pod's events while the plan runs (see ``progress``)
        async for event in start_progress(self):
            yield event

    async def delete_forever(self):
        self.delete_pvc = bool(self.delete_home_volume)
        await super().delete_forever()

