"""Who may look and who may change things.

- With neither a token nor a user configured, anyone who reaches the console may look,
  and nobody may change anything (the console says it runs read-only, and why).
- With a token (``--token`` / ``MICROHIVE_CONSOLE_TOKEN``) or a user (``--user
  name:password``), every page and API needs a login: a session cookie from ``api/login``
  (``HttpOnly``, ``SameSite=Strict``), or an ``Authorization: Bearer TOKEN`` / ``Basic``
  header for scripts.
- A change (a POST) needs a login, a console not started ``--read-only``, and, for a
  cookie session, the session's CSRF token in the ``X-CSRF-Token`` header (a page of
  another site can neither read it nor set the header). A POST whose ``Origin`` is another
  site is refused whatever it carries.

The console never asks the browser for Basic credentials (no ``WWW-Authenticate: Basic``),
so the browser never sends them by itself: only cookies need CSRF protection.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..errors import ConfigurationError

COOKIE = "microhive_console"
SESSION_SECONDS = 12 * 3600.0
FAILED_LOGIN_PAUSE = 0.5
"""Seconds a wrong token or password waits before its answer (slows guessing down)."""


def parse_user(text: str) -> tuple[str, str]:
    """``name:password`` → (name, password)."""
    name, sep, password = text.partition(":")
    if not sep or not name or not password:
        raise ConfigurationError("--user must be name:password (both non-empty)")
    return name, password


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass
class Session:
    who: str
    csrf: str
    expires: float


@dataclass
class Viewer:
    """Who is asking: ``who`` is None for an anonymous look at an open console."""

    who: str | None
    session: Session | None = None
    header: bool = False


@dataclass
class Auth:
    """The console's credentials, its mode and its sessions."""

    token: str | None = None
    user: tuple[str, str] | None = None
    read_only: bool = False
    sessions: dict[str, Session] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < 8:
            raise ConfigurationError("the console token must be at least 8 characters")

    @property
    def open(self) -> bool:
        """No credentials configured: anyone may look, nobody may change."""
        return self.token is None and self.user is None

    @property
    def writable(self) -> bool:
        return not self.open and not self.read_only

    def mode(self) -> dict[str, object]:
        why = None
        if self.open:
            why = "read-only: no --token or --user was given, so nobody can log in to change"
        elif self.read_only:
            why = "read-only: started with --read-only"
        return {
            "open": self.open,
            "read_only": not self.writable,
            "why": why,
            "token": self.token is not None,
            "user": self.user is not None,
        }

    # -- checking credentials -----------------------------------------------------------

    def check(
        self, token: str | None = None, user: str | None = None, password: str | None = None
    ) -> str | None:
        """The name of whoever these credentials are, or None."""
        if token and self.token is not None and _same(token, self.token):
            return "token"
        if user and password and self.user is not None:
            name, expected = self.user
            if _same(user, name) & _same(password, expected):
                return name
        return None

    def from_header(self, value: str) -> str | None:
        scheme, _, rest = value.partition(" ")
        if scheme.lower() == "bearer":
            return self.check(token=rest.strip())
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(rest.strip(), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                return None
            name, _, password = decoded.partition(":")
            return self.check(user=name, password=password)
        return None

    # -- sessions -------------------------------------------------------------------------

    def login(self, who: str) -> tuple[str, Session]:
        """A new session for ``who``: its cookie value and the session."""
        now = time.time()
        for key in [k for k, s in self.sessions.items() if s.expires < now]:
            del self.sessions[key]
        session = Session(who, secrets.token_urlsafe(24), now + SESSION_SECONDS)
        key = secrets.token_urlsafe(32)
        self.sessions[key] = session
        return key, session

    def set_cookie(self, key: str, request: Request, response: Response) -> None:
        response.set_cookie(
            COOKIE,
            key,
            max_age=int(SESSION_SECONDS),
            path=cookie_path(request),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    def logout(self, request: Request, response: Response) -> None:
        self.sessions.pop(request.cookies.get(COOKIE, ""), None)
        response.delete_cookie(COOKIE, path=cookie_path(request))

    def viewer(self, request: Request) -> Viewer | None:
        """Who asks, or None when a login is needed and missing (or wrong)."""
        header = request.headers.get("authorization")
        if header and not self.open:
            who = self.from_header(header)
            return Viewer(who, header=True) if who is not None else None
        session = self.sessions.get(request.cookies.get(COOKIE, ""))
        if session is not None and session.expires >= time.time():
            return Viewer(session.who, session)
        return Viewer(None) if self.open else None

    def require_viewer(self, request: Request) -> Viewer:
        viewer = self.viewer(request)
        if viewer is None:
            raise HTTPException(
                401, "log in first", {"WWW-Authenticate": 'Bearer realm="microhive console"'}
            )
        return viewer

    def same_site(self, request: Request) -> None:
        """A POST from a page of another site is refused, whatever it carries."""
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.url.netloc:
            raise HTTPException(403, "a change from another site is refused")

    def check_csrf(self, request: Request, viewer: Viewer) -> None:
        if viewer.session is not None and not _same(
            request.headers.get("x-csrf-token", ""), viewer.session.csrf
        ):
            raise HTTPException(403, "missing or wrong X-CSRF-Token header")

    def require_writer(self, request: Request) -> Viewer:
        """A change may go ahead: logged in, not read-only, same site, CSRF token shown."""
        self.same_site(request)
        viewer = self.require_viewer(request)
        if not self.writable:
            raise HTTPException(403, str(self.mode()["why"]))
        if viewer.who is None:
            raise HTTPException(401, "log in first")
        self.check_csrf(request, viewer)
        return viewer

    async def refused(self) -> None:
        """A wrong login answers a little later."""
        await asyncio.sleep(FAILED_LOGIN_PAUSE)


def cookie_path(request: Request) -> str:
    """The console's own path (where it is mounted), so its cookie goes nowhere else."""
    root = request.scope.get("root_path", "") or ""
    return root.rstrip("/") + "/"
