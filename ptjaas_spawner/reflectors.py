"""Keep KubeSpawner's pod and event reflectors alive across API server outages.

KubeSpawner's reflectors retry a failing watch with exponential backoff and give up for good
after about 50 seconds of errors (``Watching resources never recovered, giving up``): with
namespaced reflectors nothing restarts them, and every later start waits ``start_timeout`` for
a pod the hub no longer sees. Here:

- ``ensure_running(spawner)`` (called at each start) restarts a stopped reflector; while the API
  server is unreachable it raises ``StartFailed`` with a readable message at once;
- ``Watchdog`` (one per hub process) checks every ``interval`` seconds and restarts stopped
  reflectors, so polls and stops see the cluster again soon after an outage ends;
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
    """A reflector that no longer watches (gave up, failed to start, or never started)."""
    if reflector is None:
        return True
    task = getattr(reflector, "watch_task", None)
    return task is None or task.done()


def _reflectors(spawner):
    """(kind, reflector, restart coroutine function) for the reflectors this spawner uses."""
    found = [("pods", spawner.pod_reflector, spawner._start_watching_pods)]
    if spawner.events_enabled:
        found.append(("events", spawner.event_reflector, spawner._start_watching_events))
    if getattr(spawner, "claim_reflector", None) is not None:  # watches.WatchesMixin, once a first start made them
        found.append(("claims", spawner.claim_reflector, spawner._start_watching_claims))
        found.append(("claim events", spawner.claim_event_reflector, spawner._start_watching_claim_events))
    return found


async def restart_stopped(spawner, log=None) -> list:
    """Restart the stopped reflectors of the spawner's namespace; the kinds restarted.

    A reflector that was never started is left to KubeSpawner. Raises what the restart raised
    (the new reflector then counts as stopped, and the next call tries again)."""
    log = log or spawner.log
    restarted = []
    async with _restart_lock():  # the watchdog and starts never restart the same watch twice
        for kind, _, start in _reflectors(spawner):
            reflector = dict((k, r) for k, r, _ in _reflectors(spawner))[kind]
            if reflector is None or not stopped(reflector):
                continue
            log.warning("The %s watch of namespace %s had stopped; restarting it", kind, spawner.namespace)
            await start(replace=True)
            log.info("Restarted the %s watch of namespace %s", kind, spawner.namespace)
            restarted.append(kind)
    return restarted


_LOCKS = {}


def _restart_lock():
    loop = asyncio.get_running_loop()
    lock = _LOCKS.get(loop)
    if lock is None:
        lock = _LOCKS[loop] = asyncio.Lock()
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
    """One background task per hub process restarting stopped reflectors."""

    _task = None
    _spawner = None

    @classmethod
    def ensure(cls, spawner, interval):
        if interval <= 0:
            return
        cls._spawner = spawner  # a spawner of this hub: the restarted reflectors' parent
        if cls._task is None or cls._task.done():
            cls._task = asyncio.ensure_future(cls._run(interval))

    @classmethod
    async def _run(cls, interval):
        failing = False
        while True:
            await asyncio.sleep(interval)
            spawner = cls._spawner
            if spawner is None:
                continue
            try:
                await restart_stopped(spawner)
                if failing:
                    spawner.log.info("Kubernetes API reachable again")
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not failing:
                    spawner.log.warning("Restarting the Kubernetes watches failed (retrying every %ss): %s",
                                        interval, e)
                failing = True


def delete_pod_later(spawner, interval=5.0, give_up_after=3600.0):
    """Delete the pod of a failed start once the API server answers again (a start that failed
    because the API became unreachable must not leave its pod running). Stops when the spawner
    starts again (its own start replaces any leftover pod) or after ``give_up_after`` seconds."""

    async def run():
        loop = asyncio.get_running_loop()
        deadline = loop.time() + give_up_after
        while loop.time() < deadline:
            await asyncio.sleep(interval)
            if spawner._start_pending or spawner._spawn_pending or spawner.server is not None:
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
