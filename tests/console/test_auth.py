"""Who may look and who may change: no login → 401 or the login page; a wrong token or
password is refused; read-only refuses changes; without credentials the console is
read-only and says so; a session's changes need its CSRF token; the console mounted in a
program's own ASGI application."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Mount

from microhive import Queue, QueueBroker
from microhive.console import console_app
from microhive.console.auth import parse_user
from microhive.errors import ConfigurationError
from tests.console.server import serving

TOKEN = "auth-test-token"
QUEUE = Queue("console_auth_jobs")
CHANGE = f"/api/queues/{QUEUE.name}/dead/purge"


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_no_login_no_look() -> None:
    app = console_app(transport="memory://auth1", queues=[QUEUE.name], token=TOKEN)
    async with serving(app) as client:
        for path in (
            "/api/overview",
            "/api/queues",
            "/api/events",
            f"/api/queues/{QUEUE.name}/dead",
        ):
            answer = await client.get(path)
            assert answer.status_code == 401, path
            assert answer.json() == {"error": "log in first"}
        page = await client.get("/", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "login"
        assert (await client.post(CHANGE, json={})).status_code == 401
        login_page = await client.get("/login")
        assert login_page.status_code == 200 and "Log in" in login_page.text
        assert "default-src 'self'" in login_page.headers["content-security-policy"]


async def test_wrong_credentials_are_refused() -> None:
    app = console_app(
        transport="memory://auth2", queues=[QUEUE.name], token=TOKEN, user="ops:s3cret"
    )
    async with serving(app) as client:
        for body in (
            {"token": "wrong-token!"},
            {"user": "ops", "password": "nope"},
            {},
            {"token": ""},
        ):
            answer = await client.post("/api/login", json=body)
            assert answer.status_code == 401, body
            assert "set-cookie" not in answer.headers
        assert (await client.post("/api/login", json={"token": 5})).status_code == 400
        assert (await client.post("/api/login", content=b"not json")).status_code == 400
        assert (await client.get("/api/queues", headers=basic("ops", "nope"))).status_code == 401
        assert (await client.get("/api/queues", headers=basic("ops", "s3cret"))).status_code == 200
        ok = await client.post("/api/login", json={"user": "ops", "password": "s3cret"})
        assert ok.status_code == 200 and ok.json()["who"] == "ops"
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert (await client.get("/api/queues")).status_code == 200  # the session cookie
        out = await client.post("/api/logout", json={}, headers={"x-csrf-token": ok.json()["csrf"]})
        assert out.status_code == 200
        assert (await client.get("/api/queues")).status_code == 401


async def test_read_only_refuses_changes() -> None:
    app = console_app(transport="memory://auth3", queues=[QUEUE.name], token=TOKEN, read_only=True)
    async with serving(app) as client:
        login = await client.post("/api/login", json={"token": TOKEN})
        session = (await client.get("/api/session")).json()
        assert session["read_only"] and session["why"] == "read-only: started with --read-only"
        answer = await client.post(CHANGE, json={}, headers={"x-csrf-token": login.json()["csrf"]})
        assert answer.status_code == 403 and "read-only" in answer.json()["error"]
        bearer = {"authorization": f"Bearer {TOKEN}"}
        assert (await client.post(CHANGE, json={}, headers=bearer)).status_code == 403


async def test_without_credentials_it_is_read_only_and_says_so() -> None:
    async with QueueBroker.from_url("memory://auth4") as broker:
        await broker.queue(QUEUE.name).send({"n": 1})
        app = console_app(transport="memory://auth4", queues=[QUEUE.name])
        async with serving(app) as client:
            session = (await client.get("/api/session")).json()
            assert session["may_view"] and session["open"] and session["read_only"]
            assert "no --token or --user" in session["why"]
            rows = (await client.get("/api/queues")).json()  # looking needs no login here
            assert rows == [{**rows[0], "queue": QUEUE.name, "length": 1}]
            assert (await client.post(CHANGE, json={})).status_code == 403
            assert (await client.post("/api/login", json={"token": "anything"})).status_code == 401


async def test_a_session_change_needs_its_csrf_token() -> None:
    app = console_app(transport="memory://auth5", queues=[QUEUE.name], token=TOKEN)
    async with serving(app) as client:
        csrf = (await client.post("/api/login", json={"token": TOKEN})).json()["csrf"]
        assert (await client.post(CHANGE, json={})).status_code == 403
        assert (
            await client.post(CHANGE, json={}, headers={"x-csrf-token": "guess"})
        ).status_code == 403
        done = await client.post(CHANGE, json={}, headers={"x-csrf-token": csrf})
        assert done.json() == {"queue": QUEUE.name, "purged": 0}
        foreign = {"x-csrf-token": csrf, "origin": "https://attacker.example"}
        assert (await client.post(CHANGE, json={}, headers=foreign)).status_code == 403
        unknown = await client.post(
            f"/api/queues/{QUEUE.name}/dead/explode", json={}, headers={"x-csrf-token": csrf}
        )
        assert unknown.status_code == 404
        bad = await client.post(CHANGE, json={"older_than": "soon"}, headers={"x-csrf-token": csrf})
        assert bad.status_code == 400 and "older_than" in bad.json()["error"]


async def test_mounted_in_a_program_application() -> None:
    console = console_app(transport="memory://auth6", queues=[QUEUE.name], token=TOKEN)
    host = Starlette(routes=[Mount("/console", console)])
    async with console.running(), serving(host) as client:  # type: ignore[arg-type]
        moved = await client.get("/console", follow_redirects=False)
        assert moved.status_code in (307, 308) and moved.headers["location"].endswith("/console/")
        page = await client.get("/console/", follow_redirects=False)
        assert page.headers["location"] == "login"
        login = await client.post("/console/api/login", json={"token": TOKEN})
        assert "path=/console/" in login.headers["set-cookie"].lower()
        assert (await client.get("/console/api/queues")).status_code == 200
        index = await client.get("/console/")
        assert index.status_code == 200 and 'src="static/console.js"' in index.text
        assert (await client.get("/console/static/console.js")).status_code == 200


def test_bad_settings_are_named() -> None:
    with pytest.raises(ConfigurationError, match="at least 8"):
        console_app(transport="memory://", token="short")
    with pytest.raises(ConfigurationError, match="name:password"):
        console_app(transport="memory://", user="nopassword")
    with pytest.raises(ConfigurationError, match="broker="):
        console_app()


@settings(deadline=None)  # a loaded machine is slow, not wrong
@given(st.text(min_size=1).filter(lambda s: ":" not in s), st.text(min_size=1))
def test_parse_user_splits_at_the_first_colon(name: str, password: str) -> None:
    assert parse_user(f"{name}:{password}") == (name, password)


@settings(deadline=None)  # a loaded machine is slow, not wrong
@given(st.text().filter(lambda s: ":" not in s))
def test_parse_user_refuses_text_without_a_password(text: Any) -> None:
    with pytest.raises(ConfigurationError):
        parse_user(text)


async def test_engine_down_is_a_clear_503() -> None:
    app = console_app(
        bus="memory://down", broker="redis://127.0.0.1:1/0?connect_timeout=0.5", token=TOKEN
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
        answer = await client.get("/api/queues")
        assert answer.status_code == 503 and "cannot reach the hive" in answer.json()["error"]


async def test_a_program_bus_and_broker_are_borrowed_not_closed() -> None:
    from microhive import SignalBus

    async with (
        SignalBus.from_url("memory://borrowed") as bus,
        QueueBroker.from_url("memory://borrowed") as broker,
    ):
        await broker.queue(QUEUE.name).send({"n": 1})
        app = console_app(bus=bus, broker=broker, queues=[QUEUE.name])
        async with serving(app) as client:
            rows = (await client.get("/api/queues")).json()
            assert rows[0]["length"] == 1
        assert bus.connected and broker.connected
        assert await broker.queue(QUEUE.name).length() == 1
