"""Wait on a condition with a deadline: the only way tests synchronise (no bare sleeps)."""

import asyncio
import time


class Timeout(AssertionError):
    pass


class Fatal(AssertionError):
    """Raised by a predicate when waiting longer is pointless (the process waited on died)."""


def wait_for(predicate, timeout=30, interval=0.05, message="condition"):
    """Call ``predicate`` until it returns something truthy; return that, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Fatal:
            raise
        except Exception as e:   # the thing waited for may not exist yet
            last_error = e
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout}s waiting for {message}" + (f" (last error: {last_error!r})" if last_error else ""))
        time.sleep(interval)


async def async_wait_for(predicate, timeout=30, interval=0.05, message="condition"):
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            result = predicate()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
        except Fatal:
            raise
        except Exception as e:
            last_error = e
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout}s waiting for {message}" + (f" (last error: {last_error!r})" if last_error else ""))
        await asyncio.sleep(interval)
