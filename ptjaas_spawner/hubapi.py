"""A small async client for the JupyterHub REST API, as ptjaas's hub-managed services (the
culler, the scheduled snapshots) use it.

- one keep-alive connection pool (aiohttp, which kubernetes-asyncio already brings), at most
  ``concurrency`` requests in flight;
- paginated listing (JupyterHub >= 2 ``application/jupyterhub-pagination+json``): the first page
  tells the total, the remaining pages are then fetched concurrently by offset;
- counts the requests it makes (``requests``), for logs and the benchmark.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, AsyncIterator
from urllib.parse import quote, urlencode

import aiohttp

PAGINATION = "application/jupyterhub-pagination+json"


class HubAPIError(RuntimeError):
    def __init__(self, method: str, url: str, status: int, body: str):
        super().__init__(f"{method} {url} -> {status}: {body[:300]}")
        self.status = status


class HubAPI:
    def __init__(self, url: str, token: str, *, concurrency: int = 10, timeout: float = 60,
                 log: logging.Logger | None = None):
        if not url:
            raise ValueError("the hub API URL is not set (--url or $JUPYTERHUB_API_URL)")
        if not token:
            raise ValueError("no API token ($JUPYTERHUB_API_TOKEN)")
        self.url = url.rstrip("/")
        self._token = token
        self.concurrency = max(1, int(concurrency or 1))
        self._sem = asyncio.Semaphore(self.concurrency)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        self.log = log or logging.getLogger("ptjaas.culler")

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def close(self):
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"token {self._token}"},
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self.concurrency),
            )
        return self._session

    async def request(self, method: str, path: str, *, params: dict | None = None,
                      body: Any = None, headers: dict | None = None) -> tuple[int, Any]:
        url = self.url + path
        if params:
            url += "?" + urlencode(params)
        data = None if body is None else json.dumps(body)
        async with self._sem:
            self.requests += 1
            async with self._get_session().request(method, url, data=data, headers=headers) as r:
                text = await r.text()
                if r.status >= 400:
                    raise HubAPIError(method, url, r.status, text)
                return r.status, (json.loads(text) if text else None)

    async def list_users(self, *, state: str | None = None, page_size: int = 0) -> AsyncIterator[list]:
        """Yield pages (lists of user models). ``page_size`` 0 asks for the hub's maximum."""
        params: dict = {}
        if state:
            params["state"] = state
        # the hub caps 'limit' at its api_page_max_limit; asking for more means "the maximum"
        params["limit"] = page_size if page_size > 0 else 10_000
        hdr = {"Accept": PAGINATION}
        _, first = await self.request("GET", "/users", params=dict(params, offset=0), headers=hdr)
        if isinstance(first, list):  # pre-2.0 hub: no pagination
            yield first
            return
        yield first["items"]
        pag = first["_pagination"]
        if not pag.get("next"):
            return
        limit, total = pag["limit"], pag["total"]
        offsets = range(pag["next"]["offset"], total, limit)
        tasks = [
            asyncio.ensure_future(
                self.request("GET", "/users", params=dict(params, offset=o, limit=limit), headers=hdr)
            )
            for o in offsets
        ]
        try:
            for t in asyncio.as_completed(tasks):
                _, page = await t
                yield page["items"]
        finally:
            for t in tasks:
                t.cancel()

    async def stop_server(self, user: str, server_name: str = "", *, remove: bool = False) -> int:
        """Stop (and with ``remove`` delete) a server; returns 204 (stopped) or 202 (stopping)."""
        if server_name:
            path = f"/users/{quote(user, safe='')}/servers/{quote(server_name, safe='')}"
            body = {"remove": True} if remove else None
        else:
            path, body = f"/users/{quote(user, safe='')}/server", None
        status, _ = await self.request("DELETE", path, body=body)
        return status

    async def delete_user(self, user: str) -> int:
        status, _ = await self.request("DELETE", f"/users/{quote(user, safe='')}")
        return status

    async def get_server(self, user: str, server_name: str = "") -> dict | None:
        """A single user's server model (used to confirm a 202 stop finished)."""
        _, model = await self.request("GET", f"/users/{quote(user, safe='')}")
        return (model.get("servers") or {}).get(server_name)
