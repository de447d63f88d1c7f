"""The ptjaas spawner: a KubeSpawner subclass.

Thin: the policy lives in pure modules (``catalog``, ``sizes``, ``homevolume``, ``objects``,
``form``, ``configcheck``); Kubernetes calls for the home claim are in ``homeclaim``. Pods are
still made and started by KubeSpawner: ``load_user_options`` validates the user's choice and sets
KubeSpawner's traits (image, resources, node selector, ...), ``get_pod_manifest`` adds the home
and shared volumes, labels and security defaults.
"""

import asyncio

from jupyterhub.spawner import Spawner
from kubespawner import KubeSpawner
from tornado import web
from traitlets import Bool, Dict, Float, List, TraitError, Unicode, default, validate

from . import catalog, configcheck, form, homevolume, objects, redact, reflectors, startfailure, teams
from .culler.policy import kernel_culling_args
from .datamixin import DataAccessMixin
from .homeclaim import ClaimBindError, HomeClaims
from .newserver import RefusedNewServerMixin
from .podwatch import wait_for_home_volume, watch_scheduling
from .quota import QuotaMixin
from .sizes import spawner_settings
from .teams_mixin import TeamsMixin

STATE_KEY = "ptjaas"
# the settings check_config cross-checks, in configcheck.check_all's order (the start-up check
# of fragment 99 reads the same ones from the config)
CATALOG_SETTINGS = (
    "images", "sizes", "home_volume_size", "home_volume_size_by_group", "home_volume_access_modes",
    "home_mount_path", "shared_volumes",
)


def _applied_in_load_user_options(spawner, user_options):
    """JupyterHub's apply_user_options hook: nothing to do (see load_user_options)."""


class PtjaasSpawner(DataAccessMixin, RefusedNewServerMixin, TeamsMixin, QuotaMixin, KubeSpawner):
    """KubeSpawner with ptjaas home volumes, an image-version catalog and CPU/GPU sizes."""

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
    home_volume_storage_class = Unicode(
        None,
        allow_none=True,
        config=True,
        help="StorageClass of new home volume claims (None: the cluster's default class).",
    )
    home_volume_size = Unicode(
        "10Gi",
        config=True,
        help="Requested size of a home volume claim (Kubernetes quantity).",
    )
    home_volume_size_by_group = Dict(
        config=True,
        help="""Bigger homes for some groups: group name -> size. A user gets the biggest size of
        their groups. Existing claims grow at their next start when their StorageClass allows
        expansion; claims never shrink.""",
    )
    home_volume_access_modes = List(
        ["ReadWriteOnce"],
        config=True,
        help="Access modes of new home volume claims.",
    )
    home_mount_path = Unicode(
        "/home/jovyan",
        config=True,
        help="Where the home volume is mounted in the notebook container.",
    )
    delete_home_volume = Bool(
        False,
        config=True,
        help="""Delete a user's home volume claim when the user is deleted from the hub.

        False (the default): ptjaas never deletes a home volume. (KubeSpawner's own
        ``delete_pvc`` defaults to True; ptjaas ignores it and follows this setting.)""",
    )
    shared_volumes = List(
        config=True,
        help="""Existing claims (e.g. ReadWriteMany team data, datasets) to mount:
        a list of ``{claim, mount_path, groups?, read_only?}``. With ``groups`` only members of
        those groups get the volume.""",
    )
    home_bind_timeout = Float(
        60,
        config=True,
        help="""Seconds to watch a Pending home claim for warning events while the server
        starts. A claim with warning events (e.g. ProvisioningFailed) fails the start at once
        with those events' messages.""",
    )

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
        return "claim-{username}"

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
            # ptjaas validates and applies user_options itself, in load_user_options
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
        self._last = {}  # last successful choice (persisted in state)
        self._home = {}  # {"claim": name, "size": requested size}
        self._choice = None
        self._notes = []
        self._created_claim = None
        self._created_claim_uid = None
        self._pod_attempted = False
        self._claim_watch = None
        self._bind_error = None
        self._start_task = None
        self._form_refused = None  # a refused form post, shown again with its error

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

    # ---- the user's groups, effective catalog ---------------------------------------------

    def user_group_names(self):
        return sorted(g.name for g in (getattr(self.user, "groups", None) or []))

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

    def size_availability(self):
        """Per-size verdicts ``{size_key: (allowed, note)}`` from the quota layer
        (``QuotaMixin.size_availability``, a coroutine); every size fits without quotas."""
        return super().size_availability(self.effective_catalog()[1])

    async def _availability(self):
        result = self.size_availability()
        if asyncio.iscoroutine(result):
            result = await result
        return result or {}

    def resolve_choice(self, options, availability=None):
        images, sizes = self.effective_catalog()
        options = teams.without_team(options)  # the team is checked by TeamsMixin
        try:
            return catalog.resolve_choice(
                images, sizes, self.user_group_names(), options, last=self._last, availability=availability
            )
        except catalog.ChoiceError as e:
            self.audit_choice_refused(options, availability, str(e))
            raise _refusal(e) from None

    # ---- the form ------------------------------------------------------------------------

    async def _render_options_form_async(self):
        if not self.images and not self.sizes:
            # no catalog: KubeSpawner's own form (its profile_list), or none
            kube_form = KubeSpawner._options_form_default(self)
            if callable(kube_form):
                kube_form = await kube_form(self)
            return kube_form
        await self.apply_group_overrides()
        images, sizes = self.effective_catalog()
        availability = await self._availability()
        selected = {}
        opts = self.user_options or {}
        if self._form_refused is not None:  # shown again with its error: keep the user's choices
            selected, self._form_refused = self._form_refused, None
        elif opts and not opts.get("same_as_last"):
            try:
                catalog.resolve_choice(images, sizes, self.user_group_names(), teams.without_team(opts))
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
        )

    async def _ptjaas_options_from_form(self, formdata):
        if not self.images and not self.sizes:
            return self._options_from_form(formdata)  # KubeSpawner's profile form
        try:
            # the team field is TeamsMixin's; every other field is the catalog form's (strict)
            fields = {k: v for k, v in (formdata or {}).items() if k != teams.TEAM_OPTION}
            options = self.add_team_from_form(form.options_from_formdata(fields), formdata)
        except catalog.ChoiceError as e:
            self._forget_new_named_server()
            raise _refusal(e) from None
        await self.apply_group_overrides()
        try:
            self.resolve_choice(options, await self._availability())  # refuse before anything
        except web.HTTPError:
            self._form_refused = dict(options, refused=True, choice="new")
            self._forget_new_named_server()
            raise
        return options

    # ---- start ---------------------------------------------------------------------------

    async def load_user_options(self):
        """Validate the user's options and set KubeSpawner's traits; ensure the home claim."""
        self._notes = []
        self.take_snapshot_request()  # the 'snapshots' option: opened read-only at this start
        try:
            await self.place_in_team_namespace()  # the team's namespace (TeamsMixin)
        except web.HTTPError:
            self._save_user_options(self._last_options())
            raise
        if not self.images and not self.sizes:
            # no catalog: KubeSpawner's own settings (and profile_list, if any) apply as they are
            self._choice = None
            await super().load_user_options()
            await self.ensure_home_claim()
            await self.snapshot_views_prepare()
            return
        try:
            choice = self.resolve_choice(self.user_options or {}, await self._availability())
        except web.HTTPError:
            # JupyterHub saved the refused options as the server's defaults: put back the last
            # valid ones so a refused request changes nothing
            self._save_user_options(self._last_options())
            raise
        self._choice = choice
        # record the resolved choice (the culler and quota read it from the server model)
        self._save_user_options(
            {"image": choice.image, "version": choice.version, "size": choice.size, **self.team_user_options()})
        self.notes_extend(choice.notes)
        for note in choice.notes:
            self.log.info("%s: %s", self._log_name, note)
        self.image = choice.image_ref
        if self.sizes:
            for name, value in spawner_settings(self.sizes[choice.size]).items():
                setattr(self, name, value)
        await self.ensure_home_claim()
        await self.snapshot_views_prepare()

    def _last_options(self):
        return {k: self._last[k] for k in ("image", "version", "size") if k in self._last}

    def _save_user_options(self, options):
        self.user_options = dict(options)
        orm_spawner = getattr(self, "orm_spawner", None)
        if orm_spawner is not None:
            orm_spawner.user_options = dict(options)

    def notes_extend(self, notes):
        self._notes.extend(notes)

    def claim_candidates(self):
        """Home claim names to look for, in order: the remembered one, a named server's
        legacy per-server claim (KubeSpawner's default template), the current template, and
        the same templates in KubeSpawner's legacy 'escape' naming scheme."""
        expand = self._expand_user_properties
        remembered = self._home.get("claim") or (self.pvc_name if self._pvc_exists else None)
        per_server = []
        if self.name:
            per_server = [expand("claim-{user_server}", slug_scheme=s) for s in ("safe", "escape")]
        current = expand(self.pvc_name_template)
        legacy = [expand(self.pvc_name_template, slug_scheme=s) for s in ("safe", "escape")]
        return homevolume.claim_candidates(remembered, None, per_server + [current] + legacy)

    def home_claim_manifest(self, name, size):
        labels = self._build_common_labels(self._expand_all(self.storage_extra_labels))
        labels.update(objects.user_labels(self.user.name))
        labels.update(
            {"app.kubernetes.io/component": "singleuser-storage", "component": "singleuser-storage"}
        )
        annotations = self._build_common_annotations(self._expand_all(self.storage_extra_annotations))
        annotations.update(objects.user_annotations(self.user.name))
        spec = {
            "accessModes": list(self.home_volume_access_modes),
            "resources": {"requests": {"storage": size}},
        }
        if self.home_volume_storage_class:
            spec["storageClassName"] = self.home_volume_storage_class
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": spec,
        }

    async def ensure_home_claim(self):
        """Find (or create) the home claim and grow it if its group size grew; then, during the
        start, watch it (``_watch_claim``).

        API requests: a remembered claim that is big enough costs none here (it is checked only
        if the pod reports a problem); a first start costs one create (a legacy name one read
        each); a claim to grow one read, one StorageClass read and one patch."""
        claims = HomeClaims(self)
        wanted = homevolume.home_size_for(
            self.user_group_names(), self.home_volume_size, self.home_volume_size_by_group
        )
        remembered = self._home.get("claim") or (self.pvc_name if self._pvc_exists else None)
        current = self._expand_user_properties(self.pvc_name_template)
        known = self._home.get("size")
        self._created_claim = self._created_claim_uid = None
        pvc = None
        if remembered and known and homevolume.growth_decision(known, wanted, False)[0] == "keep":
            name = remembered
        else:
            # a claim is mounted only if it is proven to be this user's (ClaimOwnerError else)
            user = self.user.name
            candidates = self.claim_candidates()
            if candidates == [current]:
                name = current
                pvc, created = await claims.create(self.home_claim_manifest(name, wanted))
            else:
                name, pvc = await claims.find_home(candidates, user, remembered, current)
                created = False
                if pvc is None:
                    name = remembered or current
                    if remembered:
                        self._log_recreated(name)
                    pvc, created = await claims.create(self.home_claim_manifest(name, wanted))
            claims.check_created_or_found(name, pvc, created, user, remembered)
            if created:
                self.log.info("Created home claim %s for %s (%s)", name, self._log_name, wanted)
                self._created_claim = name
                self._created_claim_uid = ((pvc or {}).get("metadata") or {}).get("uid")
            else:
                if name not in (remembered, current):
                    self.log.warning(
                        "Using existing claim %s (legacy name) as home of %s", name, self._log_name
                    )
                message = await claims.grow_if_needed(name, pvc, wanted)
                if message:
                    self.notes_extend([message])
                    if "stays at" not in message:
                        pvc = await claims.read(name) or pvc
        self.pvc_name = name
        self._pvc_exists = True
        # a claim a running pod mounted is bound: later starts need not read it (see _record_started)
        bound = bool(self._home.get("bound")) and pvc is None and name == remembered
        self._home = {"claim": name, "size": homevolume.claim_requested(pvc) or known or wanted}
        if bound:
            self._home["bound"] = True
        if self._start_task is not None and (pvc is None or homevolume.claim_phase(pvc) != "Bound"):
            self._claim_watch = asyncio.ensure_future(self._watch_claim(name, wanted, bound))
        if self._created_claim and self._start_task is not None:  # the pod is made once its volume is
            await wait_for_home_volume(self, claims, name, self.home_bind_timeout)

    def _log_recreated(self, name):
        self.log.warning(
            "Home claim %s of %s was deleted outside ptjaas; creating a new, empty one", name, self._log_name
        )
        self.notes_extend([f"Your home volume {name} was missing and has been recreated (empty)."])

    async def get_pod_manifest(self):
        pod = await super().get_pod_manifest()
        groups = self.user_group_names()
        vol, mount = homevolume.home_volume(self.pvc_name, self.home_mount_path)
        shared_vols, shared_mounts = homevolume.shared_volumes_for(self.shared_volumes, groups)
        pod.spec.volumes = list(pod.spec.volumes or []) + [vol] + shared_vols
        container = pod.spec.containers[0]
        container.volume_mounts = list(container.volume_mounts or []) + [mount] + shared_mounts
        if self._choice is not None:
            pod.metadata.labels.update(
                objects.choice_labels(self._choice.image, self._choice.version, self._choice.size)
            )
            pod.metadata.annotations.update(objects.choice_annotations(self._choice.image_ref))
        pod.metadata.labels.update(objects.user_labels(self.user.name))
        return pod

    def get_args(self):
        """Spawner args plus, when the chosen size/image set ``kernel_idle_timeout``, the
        single-user server's own kernel culling (see ``culler.policy.kernel_culling_args``)."""
        args = list(super().get_args())
        if self._choice is not None:
            images, sizes = self.effective_catalog()
            args += kernel_culling_args(sizes.get(self._choice.size), images.get(self._choice.image))
        return args

    async def _start(self):
        self._claim_watch = None
        self._bind_error = None
        self._pod_attempted = False
        redact.remember(self.api_token, owner=id(self))
        reflectors.Watchdog.ensure(self, self.reflector_check_interval)
        self._start_task = start = asyncio.ensure_future(self._start_watched())
        pod_watch = asyncio.ensure_future(watch_scheduling(self, start))
        try:
            url = await start
        except asyncio.CancelledError:
            if self._bind_error is None:
                raise
            await self._cleanup_failed_start()
            raise self._bind_error from None
        except Exception as e:
            await self._cleanup_failed_start()
            if reflectors.is_unreachable(e):
                self.log.error("Start of %s failed, Kubernetes API unreachable: %s", self._log_name, e)
                raise startfailure.StartFailed(startfailure.API_UNREACHABLE, 503) from None
            raise
        finally:
            for task in (self._claim_watch, pod_watch):
                if task is not None and not task.done():
                    task.cancel()
        self._record_started()
        return url

    async def _start_watched(self):
        await reflectors.ensure_running(self)  # a watch that gave up during an outage restarts
        return await super()._start()

    async def _make_create_pod_request(self, pod, request_timeout):
        self._pod_attempted = True  # from here on a failed start deletes its pod
        try:
            return await super()._make_create_pod_request(pod, request_timeout)
        except Exception as e:
            status = getattr(e, "status", None) or getattr(e, "status_code", None)
            if isinstance(status, int) and 400 <= status < 500 and status != 409:
                self._pod_attempted = False  # refused (quota, forbidden, invalid): no pod was made
            raise

    def fail_start(self, error):
        """Fail the running start with ``error`` (a StartFailed); cleanup follows in ``_start``."""
        if self._bind_error is None and self._start_task is not None and not self._start_task.done():
            self.log.error("Start of %s failed: %s", self._log_name, error)
            self._bind_error = error
            self._start_task.cancel()

    async def _watch_claim(self, name, wanted, known_bound=False):
        """Fail the start early when the home claim cannot bind; recreate it if it is gone."""
        start = self._start_task
        claims = HomeClaims(self)

        def warnings():  # a claim known bound is looked at only if the pod says it is missing
            return {(e.get("metadata") or {}).get("uid") for e in self.events if e.get("type") == "Warning"
                    and (not known_bound or startfailure.is_volume_wait(e.get("message") or ""))}

        earlier = warnings()  # a previous pod of this name (its events stay an hour) does not count

        def pod_warnings():
            return len(warnings() - earlier)

        async def recreate():
            self._log_recreated(name)
            _, created = await claims.create(self.home_claim_manifest(name, wanted))
            if created:
                self._created_claim = name

        try:
            await claims.watch(name, start.done, pod_warnings, recreate, self.home_bind_timeout,
                               storage_class=self.home_volume_storage_class, known_bound=known_bound)
        except ClaimBindError as e:
            self.fail_start(e)
        except Exception:
            self.log.exception("Watching home claim %s failed", name)

    async def _cleanup_failed_start(self):
        """Leave nothing behind that a failed start made: its pod, and a home claim it created
        (deleted at once if no pod was ever made to use it, else only if it never bound)."""
        if self._pod_attempted:
            try:
                await self.stop(now=True)
            except Exception as e:
                self.log.error("Could not delete pod of %s after failed start (%s); retrying in the background",
                               self._log_name, e)
                reflectors.delete_pod_later(self)
        name = self._created_claim
        if not name:
            return
        claims = HomeClaims(self)
        try:
            if not self._pod_attempted and self._created_claim_uid:
                deleted = await claims.delete_created(name, self._created_claim_uid)
            else:
                deleted = await claims.delete_unbound(name)
        except Exception as e:
            self.log.error("Could not delete claim %s after failed start of %s: %s", name, self._log_name, e)
            return
        if deleted:
            self.log.info("Deleted claim %s that the failed start of %s created (it held no data)",
                          name, self._log_name)
            self._home = {}
            self._pvc_exists = False

    def _record_started(self):
        ref_key = f"{self.namespace}/{self.pod_name}"
        pod = self.pod_reflector.pods.get(ref_key) or {}
        digest = ""
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") == "notebook" or not digest:
                digest = status.get("imageID") or digest
        if self._choice is not None:
            self._last = dict(self._choice.as_state(), image_digest=digest)
        if self._home.get("claim") and pod:
            self._home["bound"] = True  # a running pod mounts it: later starts need not read it

    async def progress(self):
        sent = 0
        said = set()
        async for event in super().progress():
            while sent < len(self._notes):
                yield {"message": self._notes[sent]}
                sent += 1
            plain = startfailure.progress_message(event.get("raw_event") or {})
            if plain:  # e.g. the scheduler's "unbound immediate PersistentVolumeClaims"
                if plain in said or plain in self._notes:
                    continue
                said.add(plain)
                event = dict(event, message=plain)
            yield event
        while sent < len(self._notes):
            yield {"message": self._notes[sent]}
            sent += 1

    async def delete_forever(self):
        self.delete_pvc = bool(self.delete_home_volume)
        await super().delete_forever()


def _refusal(e):
    """A ChoiceError as the hub's 400, its message shown as is in the page and the API."""
    err = web.HTTPError(400, "%s", str(e), reason="Invalid server options")
    err.jupyterhub_message = str(e)
    return err
