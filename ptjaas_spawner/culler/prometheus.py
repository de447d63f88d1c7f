"""The culler's GPU-utilisation reader: one Prometheus ``/api/v1/query`` per GPU server the idle
rules keep, via aiohttp (already a dependency, through kubernetes_asyncio).

Missing data never culls: Prometheus unreachable, an error answer, or no pod name for a server
gives no decision. Such a failure is logged once (and once again when Prometheus answers again),
not per server per pass; after the first failure of a pass the rest of that pass asks no more.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Mapping

import aiohttp

from .gpuidle import PrometheusAnswerError, build_query, max_utilisation

PodNames = Callable[[], Awaitable[Mapping[tuple[str, str], tuple[str, str]]]]


def pod_names(pods) -> dict[tuple[str, str], tuple[str, str]]:
    """{(username, servername): (namespace, pod name)} of single-user pods (plain JSON)."""
    out = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        user = (meta.get("annotations") or {}).get("hub.jupyter.org/username")
        if user and meta.get("name"):
            server = meta["annotations"].get("hub.jupyter.org/servername", "")
            out[(user, server)] = (meta.get("namespace") or "", meta["name"])
    return out


class PrometheusGpuProbe:
    """``await probe(user, server, window)`` -> the highest GPU utilisation (percent) of the
    server's pod over the last ``window`` seconds, or None (no data / no decision)."""

    def __init__(self, url: str, query: str, threshold: float, pods: PodNames, *,
                 log: logging.Logger, timeout: float = 10.0):
        self.threshold = threshold  # percent: under it over the whole window = idle
        self.endpoint = url.rstrip("/") + "/api/v1/query"
        self.url = url
        self.query = query
        self.pods = pods
        self.log = log
        self.timeout = timeout
        self._failing: str | None = None  # what went wrong, while it keeps going wrong
        self._pass_failed = False
        self._pods: asyncio.Future | None = None  # this pass's pod list, shared by its servers
        self._session: aiohttp.ClientSession | None = None

    def new_pass(self) -> None:
        """Forget the pod list and this pass's failure (called at the start of each pass)."""
        self._pods = None
        self._pass_failed = False

    def _failed(self, what: str) -> None:
        self._pass_failed = True
        if self._failing is None:
            self.log.warning("GPU utilisation unknown (%s): GPU servers are judged by their "
                             "activity alone until it answers again", what)
        self._failing = what

    def _answered(self) -> None:
        if self._failing is not None:
            self.log.info("Prometheus at %s answers again; GPU-idle culling resumes", self.url)
        self._failing = None

    async def __call__(self, user: str, server: str, window: int) -> float | None:
        if self._pass_failed:
            return None
        if self._pods is None:  # one list per pass, however many servers ask at once
            self._pods = asyncio.ensure_future(self.pods())
        try:
            pods = await asyncio.shield(self._pods)
        except Exception as e:  # noqa: BLE001 - no pod names: no decision
            self._failed(f"could not list the server pods: {str(e)[:200] or type(e).__name__}")
            return None
        found = pods.get((user, server))
        if not found:
            return None  # no pod (yet): no decision for this server
        namespace, pod = found
        query = build_query(self.query, pod=pod, namespace=namespace, timeout=window, user=user, server=server)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            async with self._session.get(self.endpoint, params={"query": query}) as r:
                try:
                    answer = await r.json(content_type=None)
                except ValueError:
                    raise PrometheusAnswerError(f"HTTP {r.status}, not JSON") from None
            value = max_utilisation(answer)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            self._failed(f"Prometheus at {self.url} unreachable: {str(e)[:200] or type(e).__name__}")
            return None
        except PrometheusAnswerError as e:
            self._failed(f"Prometheus at {self.url} answered {e}")
            return None
        self._answered()
        self.log.debug("GPU utilisation of %s over %ss: %s", pod, window, value)
        return value

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
