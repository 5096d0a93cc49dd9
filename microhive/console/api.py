"""The console's pages and HTTP API (docs/operations.md, Console: HTTP API).

Every endpoint asks :class:`~microhive.console.auth.Auth` first: looking needs a viewer,
changing a writer (logged in, not read-only, same site, CSRF token).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response

from ..errors import ConfigurationError, MicroHiveError
from .auth import Auth
from .letters import NoSuchLetter, letter_data, listing, operate, selection_from
from .monitor import Monitor

STATIC = Path(__file__).parent / "static"


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, allow_nan=False)


class JSON(JSONResponse):
    """JSON of anything the hive holds: what JSON cannot say is given as text."""

    def render(self, content: Any) -> bytes:
        return dumps(content).encode()


class Endpoints:
    """The request handlers; :class:`~microhive.console.app.Console` routes to them."""

    auth: Auth

    @property
    def monitor(self) -> Monitor:
        raise NotImplementedError

    def _handlers(self) -> dict[Any, Any]:
        async def http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, HTTPException)
            return JSON({"error": exc.detail}, exc.status_code, headers=exc.headers)

        async def bad_input(request: Request, exc: Exception) -> Response:
            return JSON({"error": str(exc)}, 400)

        async def not_found(request: Request, exc: Exception) -> Response:
            return JSON({"error": str(exc.args[0] if exc.args else exc)}, 404)

        async def engine_error(request: Request, exc: Exception) -> Response:
            return JSON({"error": str(exc) or type(exc).__name__}, 502)

        return {
            HTTPException: http_error,
            ConfigurationError: bad_input,
            NoSuchLetter: not_found,
            MicroHiveError: engine_error,
            OSError: engine_error,
        }

    async def index(self, request: Request) -> Response:
        if self.auth.viewer(request) is None:
            return RedirectResponse("login", 303)
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"})

    async def login_page(self, request: Request) -> Response:
        return FileResponse(STATIC / "login.html", headers={"cache-control": "no-store"})

    async def session(self, request: Request) -> Response:
        viewer = self.auth.viewer(request)
        return JSON(
            {
                "logged_in": viewer is not None and viewer.who is not None,
                "may_view": viewer is not None,
                "who": viewer.who if viewer is not None else None,
                "csrf": viewer.session.csrf if viewer and viewer.session else None,
                **self.auth.mode(),
            }
        )

    async def login(self, request: Request) -> Response:
        self.auth.same_site(request)
        body = await _body(request)
        fields = {k: body.get(k) for k in ("token", "user", "password")}
        if not all(v is None or isinstance(v, str) for v in fields.values()):
            raise ConfigurationError("token, user and password must be strings")
        who = None if self.auth.open else self.auth.check(**fields)
        if who is None:
            await self.auth.refused()
            why = "nothing to log in to: no --token or --user" if self.auth.open else "wrong"
            raise HTTPException(401, f"login refused ({why})")
        key, session = self.auth.login(who)
        response = JSON({"logged_in": True, "who": who, "csrf": session.csrf})
        self.auth.set_cookie(key, request, response)
        return response

    async def logout(self, request: Request) -> Response:
        self.auth.same_site(request)
        viewer = self.auth.require_viewer(request)
        self.auth.check_csrf(request, viewer)
        response = JSON({"logged_in": False})
        self.auth.logout(request, response)
        return response

    async def overview(self, request: Request) -> Response:
        self.auth.require_viewer(request)
        return JSON(self.monitor.snapshot())

    async def events(self, request: Request) -> Response:
        self.auth.require_viewer(request)
        monitor = self.monitor

        async def stream() -> AsyncIterator[dict[str, str]]:
            async with monitor.hub.stream() as queue:
                yield {"event": "snapshot", "data": dumps(monitor.snapshot())}
                while True:
                    yield {"event": "tick", "data": dumps(await queue.get())}

        return EventSourceResponse(stream(), ping=15, headers={"cache-control": "no-store"})

    async def queues(self, request: Request) -> Response:
        self.auth.require_viewer(request)
        return JSON([series.last() for series in self.monitor.sampler.series.values()])

    async def jobs(self, request: Request) -> Response:
        self.auth.require_viewer(request)
        feed = self.monitor.jobs
        if feed is None:
            raise HTTPException(404, "no result store: give --results (a Redis or NATS URL)")
        query = request.query_params
        try:
            limit = int(query.get("limit") or 100)
            listed = await feed.listing(query.get("queue"), query.get("state"), limit)
        except ValueError as exc:
            raise ConfigurationError(f"bad jobs query: {exc}") from None
        return JSON({"jobs": listed})

    def _queue(self, request: Request) -> str:
        name = str(request.path_params["queue"])
        if name not in self.monitor.queue_names():
            raise HTTPException(404, f"the console does not watch a queue {name!r}")
        return name

    async def dead_letters(self, request: Request) -> Response:
        self.auth.require_viewer(request)
        queue = self._queue(request)
        query = request.query_params
        body: dict[str, Any] = {"reason": query.get("reason") or None}
        for field, kind in (("older_than", float), ("limit", int)):
            if query.get(field):
                try:
                    body[field] = kind(query[field])
                except ValueError:
                    raise ConfigurationError(f"{field} must be a number") from None
        letters = await listing(self.monitor.broker, queue, selection_from(body))
        return JSON({"queue": queue, "letters": [letter_data(letter) for letter in letters]})

    async def change(self, request: Request) -> Response:
        self.auth.require_writer(request)
        verb = request.path_params["verb"]
        if verb not in ("requeue", "purge"):
            raise HTTPException(404, f"no dead-letter operation {verb!r} (requeue or purge)")
        queue = self._queue(request)
        done = await operate(self.monitor.broker, verb, queue, await _body(request))
        self.monitor.sampler.dead_changed(queue)
        return JSON(done)


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ConfigurationError("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ConfigurationError("the request body must be a JSON object")
    return body
