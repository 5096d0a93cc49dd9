"""The HTTP endpoint: /metrics in Prometheus' text format, /healthz, /readyz, and
``microhive run --metrics``."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from microhive import QueueBroker, SignalBus
from microhive.errors import ConfigurationError
from microhive.observability.metrics import Metrics
from microhive.observability.runtime import serving
from microhive.observability.server import ObservabilityServer, parse_address
from microhive.testing import eventually

from ..cli.helpers import Process
from .agents import DONE, POST, WORK, Back, Front

Answer = tuple[int, dict[str, str], bytes]


async def request(port: int, raw: bytes) -> Answer:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        data = await reader.read()  # the server closes after one answer
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert int(headers["Content-Length"]) == len(body) or lines[0].startswith("HTTP/1.1 2")
    return int(lines[0].split(" ")[1]), headers, body


async def get(port: int, path: str) -> Answer:
    return await request(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


def test_addresses() -> None:
    assert parse_address("9100") == ("127.0.0.1", 9100)
    assert parse_address("0.0.0.0:9100") == ("0.0.0.0", 9100)
    assert parse_address("[::1]:9100") == ("::1", 9100)
    for bad in ("", "x", "1:2:70000", "localhost:", "::1:9100", ":9100", "[::1]"):
        with pytest.raises(ConfigurationError):
            parse_address(bad)


async def test_answers() -> None:
    metrics = Metrics()
    waiting = {"bus": "not connected"}
    async with ObservabilityServer(metrics.registry, lambda: waiting, port=0) as server:
        status, headers, body = await get(server.port, "/metrics")
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=")
        names = {family.name for family in text_string_to_metric_families(body.decode())}
        assert {"microhive_messages_handled", "microhive_queue_length"} <= names
        assert (await get(server.port, "/healthz"))[0] == 200
        status, headers, body = await get(server.port, "/readyz")
        assert (status, json.loads(body)) == (503, {"ready": False, "waiting": waiting})
        assert headers["Content-Type"] == "application/json"
        waiting = {}
        status, _, body = await get(server.port, "/readyz?verbose=1")
        assert (status, json.loads(body)) == (200, {"ready": True, "waiting": {}})
        assert (await get(server.port, "/nothing"))[0] == 404
        status, headers, _ = await request(server.port, b"POST /metrics HTTP/1.1\r\n\r\n")
        assert (status, headers["Allow"]) == (405, "GET, HEAD")
        assert (await request(server.port, b"hello\r\n\r\n"))[0] == 400
        status, headers, body = await request(server.port, b"HEAD /healthz HTTP/1.1\r\n\r\n")
        assert (status, body) == (200, b"")
        assert int(headers["Content-Length"]) > 0
        big = b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 20000 + b"\r\n\r\n"
        assert (await request(server.port, big))[0] == 431


async def test_ready_once_every_agent_started() -> None:
    metrics = Metrics()
    url = "memory://obs-ready"
    bus = SignalBus.from_url(url, signals=[POST], middleware=[metrics])
    broker = QueueBroker.from_url(url, queues=[WORK, DONE], middleware=[metrics])
    agents = [Front(bus, broker), Back(bus, broker)]
    started: list[Front | Back] = []
    async with serving("0", metrics, agents, started, bus, broker) as server:
        assert server is not None
        port = server.port
        status, _, body = await get(port, "/readyz")
        assert status == 503
        waiting = json.loads(body)["waiting"]
        waiting.pop("broker", None)  # a memory:// broker has nothing to connect to
        assert waiting == {
            "bus": "not connected",
            "agent Front": "not started",
            "agent Back": "not started",
        }
        for agent in agents:
            await agent.start()
            started.append(agent)
        assert (await get(port, "/readyz"))[0] == 200
        await agents[0].stop()
        status, _, body = await get(port, "/readyz")
        assert (status, json.loads(body)["waiting"]) == (503, {"agent Front": "stopped"})
        await agents[1].stop()
    await bus.close()
    await broker.close()


async def test_microhive_run_serves_metrics(redis_url: str, tmp_path: Path) -> None:
    process = Process(
        "-m", "microhive", "run",
        "tests.observability.agents:Front", "tests.observability.agents:Back",
        "--transport", redis_url, "--grace-period", "1", "--metrics", "0",
    )  # fmt: skip
    try:
        line = await asyncio.to_thread(process.wait_for_line, r"metrics on http://", 20)
        match = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
        assert match, line
        port = int(match.group(1))
        assert (await get(port, "/healthz"))[0] == 200
        await eventually(lambda: _ready(port), 30)
        async with SignalBus.from_url(redis_url, signals=[POST]) as bus:
            await bus.send(POST, "test", n=1)
        await eventually(lambda: _done(port), 30)
        text = (await get(port, "/metrics"))[2].decode()
        assert 'microhive_queue_length{queue="obs.work"}' in text
        assert 'microhive_queue_length{queue="obs.done"}' in text
        assert 'microhive_call_seconds_count{signal="obs.ask"} 1.0' in text
        process.popen.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 20) == 0, process.output
    finally:
        process.popen.kill()


async def _ready(port: int) -> bool:
    return (await get(port, "/readyz"))[0] == 200


async def _done(port: int) -> bool:
    text = (await get(port, "/metrics"))[2].decode()
    return (
        'microhive_messages_handled_total{agent="Front",handler="finish",outcome="acked",'
        'queue="obs.done"} 1.0' in text
    )


def test_metrics_needs_a_single_process() -> None:
    from ..cli.helpers import run

    result = run(
        "-m", "microhive", "run", "tests.observability.agents:Front",
        "--transport", "redis://127.0.0.1:6379/0", "--processes", "--metrics", "9100",
    )  # fmt: skip
    assert result.returncode == 2
    assert "--metrics serves one process" in result.stderr
