"""Watches that wake the starts they concern: the home claims, their events, the pods' events.

KubeSpawner's reflectors (``kubespawner.reflector.ResourceReflector``: list, then watch; one per
kind and namespace, shared by all spawners in ``KubeSpawner.reflectors``) keep a dict of objects
but tell nobody when it changes, so a start that waits for something had to poll. Here the same
reflectors (subclassed, their list-and-watch loop unchanged) keep their dict in a
``WatchedDict`` that wakes whoever waits for the changed key (``Wakeups``):

- ``ClaimReflector``: the namespace's claims labelled ``component=singleuser-storage`` (every
  home claim ptjaas or KubeSpawner made); a first start learns that its new claim is bound from
  it, with no read;
- ``ClaimEventReflector``: the events about claims (the provisioner's ``ProvisioningFailed``): a
  claim that cannot bind fails the start with those events, still with no read;
- ``PodEventReflector``: KubeSpawner's event reflector (events about pods), waking the start of
  the pod an event is about (``podwatch.watch_scheduling``) instead of a timer;
- ``PagedPodReflector``: KubeSpawner's pod reflector.

All of them list in pages (``PagedListMixin``): KubeSpawner parses a whole list in one
event-loop callback, which with thousands of servers blocks the hub for hundreds of ms at every
hub restart (and relist).

``WatchesMixin`` (on the spawner) starts them in the spawner's namespace, as KubeSpawner starts
its own (``_start_reflector``): ``_start_watching_claims(replace=False)`` and
``_start_watching_claim_events(replace=False)`` are what a watchdog calls with ``replace=True``
to restart them after an outage (``reflectors.restart_stopped`` does).
"""

from __future__ import annotations

import asyncio
import gc
import json

from kubespawner.reflector import ResourceReflector
from kubespawner.spawner import EventReflector, PodReflector
from traitlets import default, validate

from . import reflectors

CLAIM_LABELS = {"component": "singleuser-storage"}
CLAIMS = "persistentvolumeclaims"
CLAIM_EVENTS = "claim-events"
CLAIM_WATCH_SECONDS = 45  # the claim watches' relist period (KubeSpawner's reflectors: 10 s)


class Wakeups:
    """Futures waiting for a key to change; ``wake(key)`` resolves that key's."""

    def __init__(self):
        self._waiting = {}

    def future(self, key):
        """A future resolved at the next change of ``key``, registered at once (a change
        between this call and the await is not missed); ``discard`` it after the wait."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, set()).add(future)
        return future

    def discard(self, key, future):
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.discard(future)
            if not waiting:
                del self._waiting[key]

    async def wait(self, key, timeout):
        """Return when ``key`` changes (True) or after ``timeout`` seconds (False)."""
        if timeout is not None and timeout <= 0:
            return False
        future = self.future(key)
        try:
            done, _ = await asyncio.wait((future,), timeout=timeout)
            return bool(done)
        finally:
            self.discard(key, future)

    def wake(self, key):
        for future in self._waiting.pop(key, ()):
            if not future.done():
                future.set_result(None)

    def wake_all(self):
        for key in list(self._waiting):
            self.wake(key)


class ListedDict(dict):
    """A reflector's ``resources``, equal only to itself: traitlets compares the old and the new
    value of a trait at each assignment, which for a relist of thousands of unchanged objects is
    a deep comparison of all of them in one event-loop callback (nobody observes the trait)."""

    __slots__ = ()
    __hash__ = None

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other


class WatchedDict(ListedDict):
    """A reflector's ``resources``: the reflector's loop sets and pops items; each change
    calls ``on_change(key, value or None)``."""

    __slots__ = ("on_change",)

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.on_change(key, value)

    def __delitem__(self, key):
        value = self[key]
        super().__delitem__(key)
        self.on_change(key, value)

    def pop(self, key, *default):
        value = super().pop(key, *default)
        self.on_change(key, value)
        return value


def keep_out_of_collections():
    """``gc.freeze()``: everything alive now leaves the cyclic garbage collector's generations.

    A hub that restarts with thousands of servers allocates their pods' objects in a few
    seconds; that allocation triggers full (generation 2) collections, each of which walks the
    whole heap, pods included: 160-190 ms for 2,000 pods, the hub answering nobody meanwhile
    (docs/performance.md). Called after each page of a reflector's *first* list (once per
    reflector, at hub start or after an outage), the listed objects and the hub's start-up heap
    are out of every later collection. Listed objects hold no reference cycles: reference
    counting still frees them when a relist or the watch replaces them. The price, process-wide
    and bounded: a cycle alive at one of these moments and dropped later is never collected."""
    gc.freeze()


class PagedListMixin:
    """KubeSpawner's list step (``ResourceReflector._list_and_update``, kubespawner 7.1.0) in
    pages of ``LIST_PAGE_SIZE`` objects (``limit`` and ``continue``): KubeSpawner parses the
    whole list in one event-loop callback (2,000 pods: ~11 MB, 150-200 ms during which the hub
    answers nobody); a page is parsed in a few milliseconds and the loop runs between pages.
    The dict is still replaced at once, when the last page is in. A paged list is a consistent
    read (no ``resourceVersion``: the server's current state, which is "not older than" any
    version KubeSpawner would ask for). A relist (KubeSpawner's loop relists at every watch
    restart, ``timeout_seconds``) keeps the object it already holds where the resourceVersion is
    the same, so what a relist allocates dies with its page; after each page of a first list
    ``keep_out_of_collections``."""

    LIST_PAGE_SIZE = 250

    async def _list_and_update(self, resource_version=None):
        from kubernetes_asyncio import client

        kwargs = dict(label_selector=self.label_selector, field_selector=self.field_selector,
                      _request_timeout=self.request_timeout, _preload_content=False, limit=self.LIST_PAGE_SIZE)
        if not self.omit_namespace:
            kwargs["namespace"] = self.namespace
        list_method = getattr(self.api, self.list_method_name)
        resources = ListedDict()
        previous = self.resources or {}
        first = not self.first_load_future.done()
        while True:
            response = await list_method(**kwargs)
            body = await response.read()
            if not response.ok:
                self.log.error("Listing %s failed: %s %s: %s", self.kind, response.status, response.reason,
                               body[:300])
                raise client.ApiException(status=response.status, reason=response.reason)
            page = json.loads(body)
            del body
            for item in page.get("items") or ():
                meta = item["metadata"]
                key = f"{meta['namespace']}/{meta['name']}"
                known = previous.get(key)
                if known is not None and known["metadata"].get("resourceVersion") == meta.get("resourceVersion"):
                    item = known  # unchanged: the listed copy dies with the page (see below)
                resources[key] = item
            meta = page.get("metadata") or {}
            del page
            if first:
                # the collector no longer walks what is listed: see keep_out_of_collections
                keep_out_of_collections()
            if not meta.get("continue"):
                break
            kwargs["_continue"] = meta["continue"]
            await asyncio.sleep(0)  # the loop runs between two pages
        self.resources = resources
        if not self.first_load_future.done():
            self.first_load_future.set_result(None)
        return meta["resourceVersion"]


class WakingReflector(PagedListMixin, ResourceReflector):
    """A KubeSpawner reflector that wakes the waiters of what changed (``wake_key``)."""

    @property
    def wakeups(self):
        w = self.__dict__.get("_wakeups")
        if w is None:
            w = self.__dict__["_wakeups"] = Wakeups()
        return w

    def wake_key(self, key, value):
        return key

    def _changed(self, key, value):
        if value is not None:
            self.wakeups.wake(self.wake_key(key, value))

    @validate("resources")
    def _watched_resources(self, proposal):
        # a new list (first list, relist after a restart or an outage) may change anything
        resources = WatchedDict(proposal["value"])
        resources.on_change = self._changed
        self.wakeups.wake_all()
        return resources

    def waiting_for(self, key, timeout):
        return self.wakeups.wait(key, timeout)

    @property
    def running(self):
        task = getattr(self, "watch_task", None)
        return task is not None and not task.done()


def involved_key(key, event):
    """(namespace, kind, name) of the object an event is about."""
    io = event.get("involvedObject") or event.get("regarding") or {}
    namespace = io.get("namespace") or (event.get("metadata") or {}).get("namespace") or key.split("/", 1)[0]
    return namespace, io.get("kind"), io.get("name")


class SlowRelistMixin(ResourceReflector):
    """A watch that relists every ``CLAIM_WATCH_SECONDS`` instead of KubeSpawner's 10 s.

    KubeSpawner's loop lists the whole collection again at every watch restart (the API
    server ends a watch after ``timeout_seconds``); for the two claim watches those relists were
    most of the lists a hub made beyond KubeSpawner's (a start learns of its claim from the
    watch's events, not from a relist). The watch still ends before the client's
    ``request_timeout`` (60 s, a total time for the request), so it ends as a time-out the loop
    expects, not as an error; an error still relists at once. Both stay settable
    (``c.ResourceReflector.timeout_seconds``)."""

    @default("timeout_seconds")
    def _claim_watch_seconds(self):
        return CLAIM_WATCH_SECONDS

    @default("restart_seconds")
    def _claim_watch_restart(self):
        return CLAIM_WATCH_SECONDS


class ClaimReflector(SlowRelistMixin, WakingReflector):
    kind = CLAIMS

    @default("list_method_name")
    def _list_method(self):
        if self.omit_namespace:
            return "list_persistent_volume_claim_for_all_namespaces"
        return "list_namespaced_persistent_volume_claim"


class ClaimEventReflector(SlowRelistMixin, WakingReflector):
    kind = "events"

    def wake_key(self, key, value):
        return involved_key(key, value)


class PodEventReflector(WakingReflector, EventReflector):
    """KubeSpawner's ``EventReflector`` (same ``events`` property), waking per pod."""

    def wake_key(self, key, value):
        return involved_key(key, value)


class PagedPodReflector(PagedListMixin, PodReflector):
    """KubeSpawner's ``PodReflector``, listing in pages."""


class WatchesMixin:
    """For ``PtjaasSpawner`` (a KubeSpawner): the claim watches, a waking event watch, paged
    lists, and what keeps the watches and ``poll`` right through an API server outage (the
    last good list kept, a server declared stopped only on a watch that runs, ``reflectors``'
    watchdog registered for every namespace polled)."""

    def _reflector(self, kind):
        return self.__class__.reflectors.get(self._get_reflector_key(kind))

    @property
    def claim_reflector(self):
        return self._reflector(CLAIMS)

    @property
    def claim_event_reflector(self):
        return self._reflector(CLAIM_EVENTS)

    async def _start_watching_claims(self, replace=False):
        """Start (or, with ``replace``, restart) the home-claim watch of this namespace."""
        return await self._start_reflector(
            kind=CLAIMS, reflector_class=ClaimReflector, labels=dict(CLAIM_LABELS),
            omit_namespace=self.enable_user_namespaces, replace=replace)

    async def _start_watching_claim_events(self, replace=False):
        """Start (or restart) the watch of this namespace's claim events."""
        return await self._start_reflector(
            kind=CLAIM_EVENTS, reflector_class=ClaimEventReflector,
            fields={"involvedObject.kind": "PersistentVolumeClaim"},
            omit_namespace=self.enable_user_namespaces, replace=replace)

    async def start_claim_watches(self):
        """Both claim watches of this namespace, started once (later calls return at once)."""
        claims, events = self.claim_reflector, self.claim_event_reflector
        if claims is not None and events is not None and claims.first_load_future.done() \
                and events.first_load_future.done():
            return claims, events
        return await asyncio.gather(self._start_watching_claims(), self._start_watching_claim_events())

    async def _start_watching_pods(self, replace=False):
        # KubeSpawner's (kubespawner 7.1.0: the old ``component`` label, see its note), listing
        # in pages (PagedListMixin): a hub restart with thousands of servers does not stop the
        # event loop while the pod list is parsed
        return await self._start_reflector(
            kind="pods", reflector_class=PagedPodReflector, labels={"component": self.component_label},
            omit_namespace=self.enable_user_namespaces, replace=replace)

    async def _start_watching_events(self, replace=False):
        # KubeSpawner's (kubespawner 7.1.0), with PodEventReflector: the same events, and
        # the start of the pod an event is about is woken (podwatch.watch_scheduling)
        return await self._start_reflector(
            kind="events", reflector_class=PodEventReflector, fields={"involvedObject.kind": "Pod"},
            omit_namespace=self.enable_user_namespaces, replace=replace)

    # ---- a server is declared stopped only on evidence (issue 19) ----------------------------

    async def poll_on_evidence(self, kube_poll):
        """KubeSpawner's poll (``kube_poll``), except while the Kubernetes API server cannot be reached and no
        list of this namespace's pods has succeeded yet (a hub restarted during an outage): the
        server is then taken as running, its last known state. A reflector that gave up keeps
        its last good list (``_start_reflector``), so an outage of any length marks no server
        stopped; a pod deleted meanwhile is noticed once a list succeeds again."""
        reflectors.Watchdog.ensure(self, self.reflector_check_interval)  # this namespace's watches
        try:
            await self._start_watching_pods()
        except Exception as e:
            if not reflectors.is_unreachable(e):
                raise
            self.log.warning("Polling %s: Kubernetes API unreachable (%s); taken as running until a list "
                             "of its pods succeeds", self._log_name, e)
            return None
        status = await kube_poll()
        if status is not None and not reflectors.watching(self.pod_reflector):
            # what KubeSpawner read comes from no list or watch that is running now (a watch that
            # gave up, or a restart whose list failed): no evidence that the server stopped
            self.log.warning("Polling %s: the pods watch of namespace %s is down; taken as running until it "
                             "runs again", self._log_name, self.namespace)
            return None
        return status

    async def _start_reflector(self, kind, reflector_class, replace=False, **kwargs):
        # Private override, checked against kubespawner 7.1.0 (with jupyterhub 6.1 and 5.5):
        # KubeSpawner registers the new reflector in the class-level ``reflectors`` before its
        # first list; when that list fails (API server down) the registry would hold a reflector
        # with no pods and poll() would report every server there stopped. Put the reflector
        # with the last good list back instead. Would be replaced upstream by registering the
        # new reflector only once its first list succeeded (docs/upstream.md).
        key = self._get_reflector_key(kind)
        previous = self.__class__.reflectors.get(key)
        try:
            return await super()._start_reflector(kind, reflector_class, replace=replace, **kwargs)
        except BaseException:
            if replace or previous is None:  # this call made the reflector that failed
                reflectors.keep_last_good(self.__class__.reflectors, key, previous)
            # else: it waited for another call's new reflector, which that call puts back
            raise

    async def watches_restarted(self, kinds):
        """Called once stopped watches of this spawner's namespace run again (``kinds``): the
        quota usage there is re-derived from the pod list that just succeeded."""
        if "pods" in kinds:
            try:
                await self.quota_reconcile()
            except Exception as e:
                self.log.warning("Re-deriving quota usage in namespace %s failed: %s", self.namespace, e)
