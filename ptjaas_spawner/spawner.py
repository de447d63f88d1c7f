"""The ptjaas spawner: a KubeSpawner subclass.

Thin: the policy lives in pure modules (``catalog``, ``sizes``, ``homevolume``, ``objects``,
``form``, ``configcheck``); the spawn form is ``form_mixin``, the home volume ``home_mixin``
(its Kubernetes calls in ``homeclaim``), quotas ``quota``, teams ``teams_mixin``. Pods are still
made and started by KubeSpawner. A start is one path (``_start``, see ``startplan``): make the
start plan (choice, team namespace, home claim), then KubeSpawner's start beside the watches of
the home claim and the scheduling, then clean up or remember.

Private KubeSpawner members overridden (each says which versions it was checked against and
which public hook would replace it): ``_start`` and ``_make_create_pod_request``; in
``watches`` (the reflectors, and ``poll`` through an outage): ``_start_reflector``,
``_start_watching_pods``, ``_start_watching_events`` and ``ResourceReflector._list_and_update``
(docs/upstream.md).
"""

import asyncio

from jupyterhub.spawner import Spawner
from kubespawner import KubeSpawner
from tornado import web
from traitlets import Float, TraitError, default, validate

from . import configcheck, connections, customimages, homevolume, objects, redact, reflectors, startfailure
from .accounting.mixin import AccountingMixin
from .culler.policy import kernel_culling_args
from .datamixin import DataAccessMixin
from .form_mixin import SpawnFormMixin
from .home_mixin import HomeVolumeMixin
from .newserver import RefusedNewServerMixin
from .podwatch import watch_scheduling
from .progress import start_progress
from .quota import QuotaMixin
from .sizes import spawner_settings
from .startplan import STARTING, StartPlan, in_start, run_watched
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


class PtjaasSpawner(DataAccessMixin, RefusedNewServerMixin, TeamsMixin, SpawnFormMixin, HomeVolumeMixin, AccountingMixin,
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

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        redact.install(self.log)
        self.check_config()
        self._configured_image = self.image
        # what a choice may set for one start (a catalog interface, a custom image's pull secret)
        self._configured_opening = (self.default_url, list(self.image_pull_secrets or []))
        self._last = {}  # last successful choice (persisted in state)
        self._home = {}  # {"claim": name, "size": requested size, "bound"?: a pod ran on it}
        self._notes = []  # what the progress page tells the user at this start
        self._form_refused = None  # a refused form post, shown again with its error
        self.start_plan = None  # the current (or last) start's StartPlan

    # ---- state ---------------------------------------------------------------------------

    def get_state(self):
        state = super().get_state()
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
        ours = state.get(STATE_KEY) or {}
        self._last = dict(ours.get("last") or {})
        self._home = dict(ours.get("home") or {})
        if self._home.get("claim") and self.remember_pvc_name:
            self.pvc_name = self._home["claim"]

    # ---- the user's groups -----------------------------------------------------------------

    def user_group_names(self):
        return sorted(g.name for g in (getattr(self.user, "groups", None) or []))

    # ---- start ---------------------------------------------------------------------------

    async def _start(self):
        """One start: the plan (no pod yet), then KubeSpawner's start beside the watches of the
        home claim and the scheduling (either may fail it with a reason for the user), then
        clean up what a failed start made, or remember what a successful one chose."""
        # Private override, checked against kubespawner 7.1.0 (the newest, with jupyterhub 6.1,
        # and z2jh's, with jupyterhub 5.5): KubeSpawner.start() runs _start() as the future its
        # progress() follows, so the plan and the watches run inside it. Would be replaced by a
        # public hook run before and beside KubeSpawner's start (or by overriding the public
        # start() if progress() followed JupyterHub's own spawn future).
        starting = STARTING.set(True)  # KubeSpawner's stop() of a leftover pod is no stop
        self.quota_start_began()  # a pod list without this server's pod says nothing of it yet
        try:
            return await self._start_steps()
        finally:
            self.quota_start_ended()
            STARTING.reset(starting)

    async def _start_steps(self):
        self._notes = []  # before any await: the progress page of this start reads these
        redact.remember(self.api_token, owner=id(self))
        reflectors.Watchdog.ensure(self, self.reflector_check_interval)
        self.start_plan = plan = None
        try:
            await reflectors.ensure_running(self)  # a watch that gave up during an outage restarts
            plan = self.start_plan = await self.plan_start()
            self.accounting_check_start(plan)  # accounting: over a time budget, refused before the pod
            await self.wait_for_new_home_volume(plan.home)
            url = await run_watched(super()._start(), [self.watch_home_claim(plan.home), watch_scheduling(self)])
        except asyncio.CancelledError:
            self.quota_release()
            raise
        except Exception as e:
            self.quota_release()
            if plan is not None:
                await self._cleanup_failed_start(plan)
            if reflectors.is_unreachable(e):
                self.log.error("Start of %s failed, Kubernetes API unreachable: %s", self._log_name, e)
                raise startfailure.StartFailed(startfailure.API_UNREACHABLE, 503) from None
            raise
        self._record_started(plan)
        self.accounting_started(plan)  # accounting: the run begins (its end: AccountingMixin.stop/poll)
        return url

    async def plan_start(self) -> StartPlan:
        """Everything before the pod, resolved once: the team namespace, the user's choice
        (checked against the quota's verdict per size, applied to KubeSpawner's traits), the
        home claim, the snapshots to open. A refused choice changes nothing (the last valid
        options stay the server's defaults)."""
        self._notes = []
        self.take_snapshot_request()  # the 'snapshots' option: opened read-only at this start
        placement = self.team_placement()
        try:
            plan = await self._plan_choice_and_home()
        except BaseException:
            if not self._home.get("claim"):
                self.restore_team_placement(placement)  # no home was made: nothing is placed
            raise
        try:
            await self.snapshot_views_prepare()
        except BaseException:
            await self.delete_home_of_failed_start(plan.home, pod_sent=False)
            raise
        return plan

    async def _plan_choice_and_home(self) -> StartPlan:
        try:
            await self.place_in_team_namespace()  # the team's namespace (TeamsMixin)
        except web.HTTPError:
            self._save_user_options(self._last_options())
            raise
        plan = StartPlan()
        if not self.images and not self.sizes:
            # no catalog: KubeSpawner's own settings (and profile_list, if any) apply as they are
            await super().load_user_options()
        else:
            decisions, plan.availability = await self.quota_verdicts()
            try:
                plan.choice = self.resolve_choice(self.user_options or {}, plan.availability)
            except web.HTTPError:
                self.count_choice_refusal(decisions, (self.user_options or {}).get("size"))
                # JupyterHub saved the refused options as the server's defaults: put back the
                # last valid ones so a refused request changes nothing
                self._save_user_options(self._last_options())
                raise
            self._apply_choice(plan.choice)
        plan.home = await self.ensure_home_claim()
        return plan

    def _apply_choice(self, choice):
        # record the resolved choice (the culler and quota read it from the server model)
        custom = {"custom_image": choice.image_ref} if choice.custom else {}
        if choice.connections:
            custom["connections"] = list(choice.connections)
        self._save_user_options({"image": choice.image, "version": choice.version, "size": choice.size, **custom,
                                 **self.team_user_options()})
        self.notes_extend(choice.notes)
        for note in choice.notes:
            self.log.info("%s: %s", self._log_name, note)
        self.image = choice.image_ref
        default_url, pull_secrets = self._configured_opening
        self.default_url = choice.default_url or default_url  # the interface it opens (interfaces.py)
        self.image_pull_secrets = pull_secrets + ([choice.pull_secret] if choice.pull_secret else [])
        if self.sizes:
            for name, value in spawner_settings(self.sizes[choice.size]).items():
                setattr(self, name, value)

    async def load_user_options(self):
        """KubeSpawner's first step of its start. The start made its plan already (``_start``);
        called on its own (a tool, a test) it makes the plan: validates the user's options, sets
        KubeSpawner's traits and ensures the home claim."""
        if self.start_plan is None:
            self.start_plan = await self.plan_start()

    def _last_options(self):
        options = {k: self._last[k] for k in ("image", "version", "size") if k in self._last}
        if self._last.get("image") == customimages.CUSTOM and self._last.get("image_ref"):
            options["custom_image"] = self._last["image_ref"]
        if self._last.get("connections"):
            options["connections"] = list(self._last["connections"])
        return options

    def _save_user_options(self, options):
        self.user_options = dict(options)
        orm_spawner = getattr(self, "orm_spawner", None)
        if orm_spawner is not None:
            orm_spawner.user_options = dict(options)

    def notes_extend(self, notes):
        self._notes.extend(notes)

    @property
    def choice(self):
        """The current (or last) start's ``catalog.Choice``; None without a catalog."""
        return self.start_plan.choice if self.start_plan is not None else None

    async def get_pod_manifest(self):
        pod = await super().get_pod_manifest()
        groups = self.user_group_names()
        vol, mount = homevolume.home_volume(self.pvc_name, self.home_mount_path)
        shared_vols, shared_mounts = homevolume.shared_volumes_for(self.shared_volumes, groups)
        pod.spec.volumes = list(pod.spec.volumes or []) + [vol] + shared_vols
        container = pod.spec.containers[0]
        container.volume_mounts = list(container.volume_mounts or []) + [mount] + shared_mounts
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
        return args

    async def _make_create_pod_request(self, pod, request_timeout):
        """Charge the quota on the final pod manifest, then create the pod; turn the API
        server's quota 403 into a readable refusal."""
        # Private override, checked against kubespawner 7.1.0 (with jupyterhub 6.1 and 5.5):
        # KubeSpawner._start calls it with the final manifest (after get_pod_manifest and the
        # admin's modify_pod_hook), once per retry. Would be replaced by a public "pod about to
        # be created" hook (modify_pod_hook is the admin's setting).
        plan = self.start_plan
        plan.charge = await self.quota_charge_pod(pod)
        plan.pod_sent = True  # from here on a failed start deletes its pod
        try:
            return await super()._make_create_pod_request(pod, request_timeout)
        except Exception as e:
            status = getattr(e, "status", None) or getattr(e, "status_code", None)
            if isinstance(status, int) and 400 <= status < 500 and status != 409:
                plan.pod_sent = False  # refused (quota, forbidden, invalid): no pod was made
            refused = self.quota_refusal_of(e)
            if refused is not None:
                raise refused from None
            raise

    async def _cleanup_failed_start(self, plan):
        """Leave nothing behind that a failed start made: its pod, and a home claim it created."""
        if plan.pod_sent:
            try:
                await self.stop(now=True)
            except Exception as e:
                self.log.error("Could not delete pod of %s after failed start (%s); retrying in the background",
                               self._log_name, e)
                reflectors.delete_pod_later(self)
        await self.delete_home_of_failed_start(plan.home, plan.pod_sent)

    def _record_started(self, plan):
        pod = self.pod_reflector.pods.get(f"{self.namespace}/{self.pod_name}") or {}
        digest = ""
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") == "notebook" or not digest:
                digest = status.get("imageID") or digest
        if plan.choice is not None:
            self._last = dict(plan.choice.as_state(), image_digest=digest)
        if plan.home is not None and self._home.get("claim") == plan.home.name and pod:
            plan.home.bound = True  # a running pod mounts it: later starts need not read it
            self._home = plan.home.state()

    async def progress(self):
        # Public Spawner hook; replaces KubeSpawner's (kubespawner 7.1.0), which would show the
        # previous pod's events while the plan runs (see ``progress``)
        async for event in start_progress(self):
            yield event

    async def stop(self, now=False):
        try:
            return await super().stop(now=now)
        finally:
            if not in_start():  # JupyterHub revokes the server's token at a stop
                redact.forget(id(self))

    async def delete_forever(self):
        self.delete_pvc = bool(self.delete_home_volume)
        await super().delete_forever()

