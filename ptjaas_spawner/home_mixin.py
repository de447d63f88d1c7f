"""``HomeVolumeMixin``: the spawner's home volume settings and the home claim at a start.

Three steps of a start (``startplan``), each returning what it made:

- ``ensure_home_claim``: find (legacy names too) or create the user's home claim, grow it when
  the user's groups give more; returns a ``startplan.Home``. A remembered claim that is big
  enough costs no request (the state proves it; a pod that ran on it proves it bound);
- ``watch_home_claim``: while the server starts, fail fast when the claim cannot bind (raises
  ``ClaimBindError``), recreate it when it was deleted behind ptjaas's back; it reads the claim
  only when the pod reports a problem (``HomeClaims.watch``);
- ``delete_home_of_failed_start``: a claim the failed start created and no data reached.

The decisions are in ``homevolume`` (pure), the Kubernetes requests in ``homeclaim``.
"""

from __future__ import annotations

from traitlets import Bool, Dict, Float, List, Unicode
from traitlets.config import LoggingConfigurable

from . import homevolume, objects
from .eventindex import pod_events
from .homeclaim import HomeClaims
from .podwatch import wait_for_home_volume
from .startplan import Home


class HomeVolumeMixin(LoggingConfigurable):
    """For ``PtjaasSpawner`` (a KubeSpawner: ``pvc_name``, ``_pvc_exists``, ``api``; and
    ``watches.WatchesMixin``: ``start_claim_watches``)."""

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

    # ---- what the spawner remembers of its home claim (between starts; during a start the
    # claim is the plan's ``Home``) -------------------------------------------------------------

    def _set_home_memory(self, home: dict, pvc_name: str, exists: bool):
        """The one writer of the home claim's name on the spawner: ``_home`` (ptjaas's state:
        claim, size, bound) and KubeSpawner's ``pvc_name`` / ``_pvc_exists`` (KubeSpawner's own
        state, ``{pvc_name}`` in its templates, ``delete_forever``) kept equal to it."""
        # _pvc_exists is KubeSpawner's private flag (kubespawner 7.1.0: get_state saves pvc_name
        # only when it is True, load_state sets it); no public way to say "this claim exists"
        self._home = dict(home)
        self.pvc_name = pvc_name
        self._pvc_exists = exists

    def remember_home(self, home: Home):
        """``home`` (a start's claim, found or created) is the server's home from now on."""
        self._set_home_memory(home.state(), home.name, True)

    def forget_home(self):
        """No home claim is known (none yet, or it is to be found or made anew elsewhere)."""
        self._set_home_memory({}, self._expand_user_properties(self.pvc_name_template), False)

    def home_replaced(self, name: str, size: str):
        """The home is now claim ``name`` (a restore made it from a snapshot)."""
        self._set_home_memory({"claim": name, "size": size}, name, True)

    def home_mounted(self, home: Home):
        """A started server's pod mounts ``home``: proven bound, later starts need not read it
        (unless the home was replaced meanwhile)."""
        if self._home.get("claim") == home.name:
            home.bound = True
            self.remember_home(home)

    def load_home_state(self, home: dict | None):
        """ptjaas's state of the home (after KubeSpawner's load_state read its own)."""
        home = dict(home or {})
        name = home["claim"] if home.get("claim") and self.remember_pvc_name else self.pvc_name
        self._set_home_memory(home, name, self._pvc_exists)

    def home_memory(self) -> tuple:
        """What ``restore_home_memory`` puts back (a refused start changes nothing)."""
        return dict(self._home), self.pvc_name, self._pvc_exists

    def restore_home_memory(self, memory: tuple):
        self._set_home_memory(*memory)

    def home_claim_remembered(self) -> bool:
        """Does the spawner's state name a home claim (ptjaas's)?"""
        return bool(self._home.get("claim"))

    def home_claim_known(self) -> bool:
        """Is a home claim known, from ptjaas's state or KubeSpawner's?"""
        return self._remembered_claim() is not None

    def claim_candidates(self):
        """Home claim names to look for, in order: the remembered one, a named server's
        legacy per-server claim (KubeSpawner's default template), the current template, and
        the same templates in KubeSpawner's legacy 'escape' naming scheme."""
        # KubeSpawner's private template expansion (kubespawner 7.1.0, with its slug schemes), so
        # that the names are exactly those KubeSpawner gives; a public expand_user_properties
        # would replace it (docs/upstream.md)
        expand = self._expand_user_properties
        per_server = []
        if self.name:
            per_server = [expand("claim-{user_server}", slug_scheme=s) for s in ("safe", "escape")]
        current = expand(self.pvc_name_template)
        legacy = [expand(self.pvc_name_template, slug_scheme=s) for s in ("safe", "escape")]
        return homevolume.claim_candidates(self._remembered_claim(), None, per_server + [current] + legacy)

    def _remembered_claim(self):
        return self._home.get("claim") or (self.pvc_name if self._pvc_exists else None)

    def home_claim_manifest(self, name, size):
        # KubeSpawner's private label and annotation builders (kubespawner 7.1.0), so the claim
        # carries exactly the labels KubeSpawner's own get_pvc_manifest gives it (z2jh's network
        # policies and the admin's storage_extra_labels); docs/upstream.md
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

    async def ensure_home_claim(self) -> Home:
        """Find (or create) the home claim and grow it if its group size grew.

        API requests: a remembered claim that is big enough costs none (it is looked at only if
        the pod reports a problem); a first start costs one create (a legacy name one read
        each); a claim to grow one read, one StorageClass read and one patch."""
        wanted = homevolume.home_size_for(
            self.user_group_names(), self.home_volume_size, self.home_volume_size_by_group
        )
        remembered = self._remembered_claim()
        known = self._home.get("size")
        if remembered and known and homevolume.growth_decision(known, wanted, False)[0] == "keep":
            # the state proves it: a claim this user had, big enough; bound if a pod ran on it
            home = Home(remembered, known, wanted, bound=bool(self._home.get("bound")))
        else:
            home = await self._find_or_create_home(HomeClaims(self), remembered, known, wanted)
        self.remember_home(home)
        return home

    async def _find_or_create_home(self, claims, remembered, known, wanted) -> Home:
        # a claim is mounted only if it is proven to be this user's (ClaimOwnerError else)
        user = self.user.name
        current = self._expand_user_properties(self.pvc_name_template)
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
        else:
            if name not in (remembered, current):
                self.log.warning("Using existing claim %s (legacy name) as home of %s", name, self._log_name)
            message = await claims.grow_if_needed(name, pvc, wanted)
            if message:
                self.notes_extend([message])
                if "stays at" not in message:
                    pvc = await claims.read(name) or pvc
        return Home(
            name, homevolume.claim_requested(pvc) or known or wanted, wanted,
            bound=homevolume.claim_phase(pvc) == "Bound", created=created,
            created_uid=((pvc or {}).get("metadata") or {}).get("uid") if created else None,
        )

    def _log_recreated(self, name):
        self.log.warning(
            "Home claim %s of %s was deleted outside ptjaas; creating a new, empty one", name, self._log_name
        )
        self.notes_extend([f"Your home volume {name} was missing and has been recreated (empty)."])

    async def wait_for_new_home_volume(self, home: Home | None):
        """A claim this start just made gets its volume before the pod is made (see
        ``podwatch.wait_for_home_volume``), learnt from the namespace's claim watches (no
        request once they run); a known or bound claim costs nothing."""
        if home is not None and home.created and not home.bound:
            try:
                claims, events = await self.start_claim_watches()
            except Exception as e:
                from .reflectors import is_unreachable
                if is_unreachable(e):
                    raise
                self.log.warning("Cannot watch home claims in %s (%s): making the pod of %s without waiting "
                                 "for its volume", self.namespace, e, self._log_name)
                return
            await wait_for_home_volume(self, claims, events, home.name, home.created_uid, self.home_bind_timeout,
                                       storage_class=self.home_volume_storage_class)

    async def watch_home_claim(self, home: Home):
        """Fail the start early when the home claim cannot bind; recreate it if it is gone
        (``HomeClaims.watch``: no request unless the pod waits for its volume).

        A claim proven bound (a pod ran on it, or this start read it Bound) is looked at only
        after the pod's volume warnings."""
        from .startfailure import is_volume_wait

        known_bound = home.bound
        pod_key = f"{self.namespace}/{self.pod_name}"

        def pod():
            return (self.pod_reflector.pods.get(pod_key) if self.pod_reflector else None) or {}

        def warnings():
            return {(e.get("metadata") or {}).get("uid") for e in pod_events(self) if e.get("type") == "Warning"
                    and (not known_bound or is_volume_wait(e.get("message") or ""))}

        earlier = warnings()  # a previous pod of this name (its events stay an hour) does not count
        earlier_pod = (pod().get("metadata") or {}).get("uid")  # a leftover pod KubeSpawner replaces

        def scheduled():
            p = pod()
            meta = p.get("metadata") or {}
            return bool((p.get("spec") or {}).get("nodeName")) and meta.get("uid") != earlier_pod \
                and not meta.get("deletionTimestamp")

        async def recreate():
            self._log_recreated(home.name)
            _, created = await claims.create(self.home_claim_manifest(home.name, home.wanted))
            if created:
                home.created, home.created_uid = True, None

        claims = HomeClaims(self)
        try:
            await claims.watch(home.name, lambda: len(warnings() - earlier), scheduled, recreate,
                               self.home_bind_timeout, storage_class=self.home_volume_storage_class,
                               known_bound=known_bound)
        except Exception as e:
            if getattr(e, "jupyterhub_message", None):  # ClaimBindError: the start fails with it
                self.log.error("Start of %s failed: %s", self._log_name, e)
                raise
            self.log.exception("Watching home claim %s failed", home.name)

    async def delete_home_of_failed_start(self, home: Home | None, pod_sent: bool):
        """Delete the home claim a failed start created: at once if no pod was ever made to use
        it, else only if it never bound (it holds no data either way)."""
        if home is None or not home.created:
            return
        claims = HomeClaims(self)
        try:
            if not pod_sent and home.created_uid:
                deleted = await claims.delete_created(home.name, home.created_uid)
            else:
                deleted = await claims.delete_unbound(home.name)
        except Exception as e:
            self.log.error("Could not delete claim %s after failed start of %s: %s", home.name, self._log_name, e)
            return
        if deleted:
            self.log.info("Deleted claim %s that the failed start of %s created (it held no data)",
                          home.name, self._log_name)
            self.forget_home()
