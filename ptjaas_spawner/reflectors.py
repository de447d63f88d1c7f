"""Keep KubeSpawner's pod and event reflectors alive across API server outages of any length.

KubeSpawner's reflectors retry a failing watch with exponential backoff and give up for good
after about 50 seconds of errors (``Watching resources never recovered, giving up``): with
namespaced reflectors nothing restarts them, and every later start waits ``start_timeout`` for
a pod the hub no longer sees. Worse, restarting one while the API server is still down (KubeSpawner's
``_start_reflector(replace=True)``) puts a new reflector that holds *no* pods in the shared registry
before its first list fails, and KubeSpawner's ``poll`` reads "no pod" as "server stopped": the hub
would mark every running server stopped and remove its route while its pod runs on. Here:

- ``keep_last_good(registry, key, previous)`` (called by the spawner when a reflector start
  fails) puts the reflector that held the last good list back: a server is only ever declared
  stopped on evidence, a list or watch that succeeded;
- ``ensure_running(spawner)`` (called at each start) restarts a stopped reflector; while the API
  server is unreachable it raises ``StartFailed`` with a readable message at once;
- ``Watchdog`` (one per hub process) restarts stopped reflectors in *every* namespace ptjaas
  watches (the hub's and each team's), each namespace with its own backoff, so polls and stops
  see the cluster again soon after an outage ends;
- ``is_unreachable(exc)`` tells connection failures (refused, reset, read timeouts, 502/503/504)
  from other errors.
"""

import asyncio

from .startfailure import API_UNREACHABLE, StartFailed


def is_unreachable(exc) -> bool:
    """Is ``exc`` the API server being unreachable (not an answer from it)?"""
    try:
        import aiohttp
        client_errors = (aiohttp.ClientConnectionError, aiohttp.ServerTimeoutError)
    except ImportError:  # pragma: no cover
        client_errors = ()
    from tornado import web

    if isinstance(exc, web.HTTPError):  # an answer already made for the user
        return False
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        # (not any TimeoutError: KubeSpawner raises one when a pod does not start in time)
        if isinstance(exc, client_errors + (ConnectionError,)):
            return True
        if isinstance(exc, OSError) and exc.errno is not None:
            return True
        status = getattr(exc, "status", None)
        if type(exc).__name__ == "ApiException" and status in (0, 502, 503, 504):
            return True
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return False


def stopped(reflector) -> bool:
    """A reflector that no longer watches (gave up, failed to start, or was stopped); not one
    whose first list is still under way (another start made it: KubeSpawner registers a
    reflector before its first list and makes its watch task only after it). Restarting that
    one would stop it under the start waiting for it (KubeSpawner's ``stop()`` of a running
    watch raises ``CancelledError`` into the caller)."""
    if reflector is None:
        return True
    task = getattr(reflector, "watch_task", None)
    if task is not None:
        return task.done()
    first_load = getattr(reflector, "first_load_future", None)
    starting = first_load is not None and not first_load.done() and not getattr(reflector, "_stopping", False)
    return not starting


def watching(reflector) -> bool:
    """A reflector whose first list succeeded and whose watch still runs: what it holds is
    evidence of what the cluster has (a reflector that gave up holds its last good list, one
    whose list failed holds nothing)."""
    if reflector is None or stopped(reflector):
        return False
    future = reflector.first_load_future
    return future.done() and not future.cancelled() and future.exception() is None


def _reflectors(spawner):
    """(kind, reflector, restart coroutine function) for the reflectors this spawner uses."""
    found = [("pods", spawner.pod_reflector, spawner._start_watching_pods)]
    if spawner.events_enabled:
        found.append(("events", spawner.event_reflector, spawner._start_watching_events))
    if getattr(spawner, "claim_reflector", None) is not None:  # watches.WatchesMixin, once a first start made them
        found.append(("claims", spawner.claim_reflector, spawner._start_watching_claims))
        found.append(("claim events", spawner.claim_event_reflector, spawner._start_watching_claim_events))
    return found


def keep_last_good(registry: dict, key, previous) -> None:
    """After a reflector start under ``key`` that made a new reflector failed: put ``previous``
    (the reflector that held the last good list, stopped or not) back in KubeSpawner's shared
    ``registry``, or forget the failed one when there was none (the next poll or start lists
    again). Only the call that made the new reflector may call this: a call that merely waited
    for it would take the failed one for the last good one."""
    failed = registry.get(key)
    if failed is None or failed is previous:
        return
    future = getattr(failed, "first_load_future", None)
    if future is not None and future.done() and not future.cancelled():
        future.exception()  # retrieved: its failure was logged and raised already
    if previous is not None:
        registry[key] = previous
    else:
        registry.pop(key, None)


async def restart_stopped(spawner, log=None) -> list:
    """Restart the stopped reflectors of the spawner's namespace; the kinds restarted.

    A reflector that was never started is left to KubeSpawner. Raises what the restart raised
    (the stopped reflector stays in place, holding its last good list, and the next call tries
    again)."""
    log = log or spawner.log
    restarted = []
    async with _restart_lock(spawner.namespace):  # the watchdog and starts never restart one watch twice
        for kind, _, start in _reflectors(spawner):
            reflector = dict((k, r) for k, r, _ in _reflectors(spawner))[kind]
            if reflector is None or not stopped(reflector):
                continue
            log.warning("The %s watch of namespace %s had stopped; restarting it", kind, spawner.namespace)
            await start(replace=True)
            log.info("Restarted the %s watch of namespace %s", kind, spawner.namespace)
            restarted.append(kind)
    if restarted:
        await spawner.watches_restarted(restarted)  # e.g. the quota usage re-derived from the new list
    return restarted


_LOCKS = {}


def _restart_lock(namespace):
    key = (asyncio.get_running_loop(), namespace)
    lock = _LOCKS.get(key)
    if lock is None:
        lock = _LOCKS[key] = asyncio.Lock()
    return lock


async def ensure_running(spawner):
    """Before a start: restart stopped reflectors; fail fast and readably if the API is down."""
    try:
        await restart_stopped(spawner)
    except Exception as e:
        if is_unreachable(e):
            spawner.log.error("Start of %s refused: Kubernetes API unreachable (%s)", spawner._log_name, e)
            raise StartFailed(API_UNREACHABLE, 503) from None
        raise


class Watchdog:
    """One background task per hub process restarting stopped reflectors, in every namespace a
    spawner of this hub has used (registered at each start and poll), each namespace with its
    own backoff: ``interval`` seconds while its watches run, doubling up to ``MAX_BACKOFF``
    while their restart keeps failing."""

    MAX_BACKOFF = 30.0

    _task = None
    _interval = None
    _namespaces: dict = {}  # namespace -> _Watched

    @classmethod
    def ensure(cls, spawner, interval):
        if interval <= 0:
            return
        watched = cls._namespaces.get(spawner.namespace)
        if watched is None:
            cls._namespaces[spawner.namespace] = _Watched(spawner)
        else:
            watched.spawner = spawner  # a spawner of this hub there: the restarted reflectors' parent
        cls._interval = interval
        if cls._task is None or cls._task.done():
            cls._task = asyncio.ensure_future(cls._run())

    @classmethod
    async def _run(cls):
        while True:
            await asyncio.sleep(cls._interval)
            now = asyncio.get_running_loop().time()
            due = [w for w in cls._namespaces.values() if w.next_try <= now]
            await asyncio.gather(*(w.check(cls._interval, cls.MAX_BACKOFF) for w in due))


class _Watched:
    """One namespace's watches, as the watchdog checks them."""

    def __init__(self, spawner):
        self.spawner = spawner
        self.namespace = spawner.namespace
        self.failures = 0
        self.next_try = 0.0

    async def check(self, interval, max_backoff):
        spawner = self.spawner
        if spawner.namespace != self.namespace:
            return  # that spawner moved to another team's namespace: the next start or poll here registers one
        try:
            await restart_stopped(spawner)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.failures += 1
            delay = min(interval * 2 ** (self.failures - 1), max(interval, max_backoff))
            self.next_try = asyncio.get_running_loop().time() + delay
            if self.failures == 1:
                spawner.log.warning("Restarting the Kubernetes watches of namespace %s failed (retrying, "
                                    "backing off up to %.0f s): %s", spawner.namespace, max_backoff, e)
            return
        if self.failures:
            spawner.log.info("Kubernetes API reachable again from namespace %s: its watches run", spawner.namespace)
        self.failures = 0
        self.next_try = 0.0


def delete_pod_later(spawner, interval=5.0, give_up_after=3600.0):
    """Delete the pod of a failed start once the API server answers again (a start that failed
    because the API became unreachable must not leave its pod running). Stops when the spawner
    starts again (its own start replaces any leftover pod) or after ``give_up_after`` seconds."""

    async def run():
        loop = asyncio.get_running_loop()
        deadline = loop.time() + give_up_after
        while loop.time() < deadline:
            await asyncio.sleep(interval)
            if spawner.pending == "spawn" or spawner.server is not None:  # JupyterHub's public state
                return
            try:
                await spawner.api.delete_namespaced_pod(
                    name=spawner.pod_name, namespace=spawner.namespace, grace_period_seconds=0)
            except Exception as e:
                if getattr(e, "status", None) == 404:
                    return
                if is_unreachable(e):
                    continue
                spawner.log.error("Deleting pod %s of a failed start failed: %s", spawner.pod_name, e)
                return
            spawner.log.info("Deleted pod %s left by a failed start", spawner.pod_name)
            return

    return asyncio.ensure_future(run())
