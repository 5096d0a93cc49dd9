"""Agents inside a WSGI app: a Flask app served by werkzeug in a thread, its views using
:class:`microhive.web.Host` (live tails, latest values, blocking send and call)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

from microhive import CallTimeout, TransportError, on
from microhive.testing import eventually
from microhive.web import Host

from ..cli.helpers import Process
from .conftest import JOBS, PING, Echo, Urls, fetch

WAIT = 30.0


def make_app(host: Host) -> Flask:
    app = Flask(__name__)

    @app.post("/jobs")
    def post_job() -> Any:
        body = request.get_json()
        return jsonify(host.send(JOBS, {"n": body["n"]}, key=body["key"]))

    @app.get("/ping/<name>")
    def ping(name: str) -> Any:
        return jsonify(host.call(PING, name=name, timeout=10))

    @app.get("/recent/<key>")
    def recent(key: str) -> Any:
        return jsonify([p["n"] for p in host.tail(JOBS, last=3, key=key).payloads()])

    @app.get("/latest")
    def latest() -> Any:
        items = host.latest(JOBS).items()
        return jsonify({key: envelope.payload["n"] for key, envelope in items.items()})

    return app


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """``app`` on werkzeug's threaded server, in a thread, on a free loopback port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(WAIT)


async def answers(url: str, expected: Any) -> bool:
    return bool(await fetch(url) == expected)


async def test_host_serves_tails_latest_values_and_a_blocking_bridge(urls: Urls) -> None:
    host = Host(Echo, bus=urls.bus, broker=urls.broker, grace_period=2)
    await asyncio.to_thread(host.start)
    try:
        (echo,) = host.hive.agents
        assert isinstance(echo, Echo)
        with serving(make_app(host)) as base:
            assert await fetch(f"{base}/ping/bob") == "pong bob"
            await asyncio.to_thread(host.signal, PING, name="eve")  # a broadcast, no answer
            await eventually(lambda: echo.pinged == ["bob", "eve"], WAIT)
            for n in range(6):
                await fetch(f"{base}/jobs", {"n": n, "key": "odd" if n % 2 else "even"})
            await eventually(lambda: sorted(echo.done) == list(range(6)), WAIT)
            await eventually(lambda: answers(f"{base}/recent/odd", [1, 3, 5]), WAIT)
            await eventually(lambda: answers(f"{base}/latest", {"odd": 5, "even": 4}), WAIT)
            # the views follow: a new message shows without asking for a new view
            tail = host.tail(JOBS, last=3, key="even")
            assert await asyncio.to_thread(tail.wait, 3, WAIT)  # the history is in
            await fetch(f"{base}/jobs", {"n": 6, "key": "even"})
            assert await asyncio.to_thread(tail.wait, 4, WAIT)
            assert tail.payloads() == [{"n": 2}, {"n": 4}, {"n": 6}]
            assert host.tail(JOBS, last=3, key="even") is tail  # one view per question
            await eventually(lambda: answers(f"{base}/latest", {"odd": 5, "even": 6}), WAIT)
    finally:
        await asyncio.to_thread(host.stop)
    assert not echo.running and not host.running
    host.stop()  # twice is fine


def test_the_bridge_raises_what_the_loop_raised() -> None:
    # a call nobody answers, an unknown name, a host not started
    host = Host(transport="memory://mhweb_bridge2").start()
    try:
        with pytest.raises(CallTimeout):
            host.call(PING, name="x", timeout=0.2)
        with pytest.raises(AttributeError, match="unknown queue"):
            host.send("no_such_queue", {})
    finally:
        host.stop()
    with pytest.raises(RuntimeError, match="start"):
        host.send(JOBS, {"n": 1})


class Failing(Echo):
    @on("pre_start")
    async def fail(self) -> None:
        raise ConnectionError("no database")


class Slow(Echo):
    @on("pre_start")
    async def hang(self) -> None:
        await asyncio.sleep(120)


def test_a_host_whose_agents_cannot_start_raises_and_leaves_no_thread() -> None:
    before = {t for t in threading.enumerate() if t.name == "microhive-host"}
    host = Host(Echo, Failing, transport="memory://mhweb_failing")
    with pytest.raises(ConnectionError, match="no database"):
        host.start()
    assert not host.running and host.hive.agents == []
    slow = Host(Slow, transport="memory://mhweb_slow", start_timeout=0.5)
    with pytest.raises(TransportError, match=r"did not start within 0\.5 s"):
        slow.start()
    assert not slow.running
    after = {t for t in threading.enumerate() if t.name == "microhive-host"}
    assert after == before


SCRIPT = """
import sys, time
from microhive import MicroAgent, on
from microhive.web import Host

class Noisy(MicroAgent):
    @on("post_stop")
    async def bye(self) -> None:
        print("agent stopped", flush=True)

host = Host(Noisy, transport="memory://", grace_period=1).start()
print("running", flush=True)
time.sleep(60)
"""


def test_sigterm_stops_the_agents_before_the_process_exits() -> None:
    process = Process("-c", SCRIPT)
    try:
        process.wait_for_line("running", WAIT)
        os.kill(process.popen.pid, signal.SIGTERM)
        assert process.wait(WAIT) == 0
        assert "agent stopped" in process.output
    finally:
        process.kill()


def test_interpreter_exit_stops_the_agents() -> None:
    process = Process("-c", SCRIPT.replace("time.sleep(60)", "sys.exit(3)"))
    try:
        assert process.wait(WAIT) == 3
        assert "agent stopped" in process.output
    finally:
        process.kill()
