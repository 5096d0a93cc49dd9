"""The commands for people (send, signal, call, queues, tail, dlq, agents) as real
``python -m microhive`` subprocesses against real engines, each test in a prefix of its own."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import signal
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from microhive import Queue, QueueBroker, private_catalog
from microhive.envelope import new_id

from .. import engines
from ..amqp import server as amqp_server
from .helpers import REPO, Process, run

MH = ("-m", "microhive")


@pytest.fixture(autouse=True)
def piped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Output goes to a pipe here: no variable may make rich draw for a terminal anyway."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """The shared Redis with a prefix of this test's own, deleted afterwards."""
    prefix = f"cli{new_id()[:10]}:"
    yield engines.with_query(engines.require_redis(), prefix=prefix)
    import redis.asyncio as aioredis

    client = aioredis.from_url(engines.REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


async def dead_letter(url: str, queue: str, reasons: list[str]) -> None:
    """Take one message of ``queue`` per reason and dead-letter it with that reason."""
    with private_catalog():
        declared = Queue(queue)
    async with QueueBroker.from_url(url) as broker:
        consumer = await broker.consume(declared)
        for reason in reasons:
            delivery = await consumer.get()
            await delivery.dead_letter(reason)
        await consumer.close()


# -- send, queues, tail --------------------------------------------------------------------


def test_send_prints_the_id_and_tail_shows_the_message(redis_url: str) -> None:
    sent = run(
        *MH, "send", "jobs", '{"n": 1}', "--key", "k1", "--header", "h=v", "--broker", redis_url
    )
    assert sent.returncode == 0, sent.stderr
    first = sent.stdout.strip()
    assert len(first) == 32 and first.isalnum()
    plain = run(*MH, "send", "jobs", "just text", "--broker", redis_url)
    assert plain.returncode == 0, plain.stderr

    tail = run(*MH, "tail", "jobs", "--last", "5", "--no-follow", "--broker", redis_url)
    assert tail.returncode == 0, tail.stderr
    shown = lines(tail.stdout)
    assert len(shown) == 2
    assert shown[0].startswith(first) and shown[0].endswith('{"n": 1}')
    assert "microhive-cli" in shown[0]
    assert shown[1].endswith('"just text"')

    keyed = run(
        *MH,
        "tail",
        "jobs",
        "--last",
        "5",
        "--key",
        "k1",
        "--no-follow",
        "--json",
        "--broker",
        redis_url,
    )
    assert keyed.returncode == 0, keyed.stderr
    envelopes = [json.loads(line) for line in lines(keyed.stdout)]
    assert [e["id"] for e in envelopes] == [first]
    assert envelopes[0]["payload"] == {"n": 1}
    assert envelopes[0]["headers"] == {"h": "v", "x-key": "k1"}


def test_queues_shows_length_and_dead_letters(redis_url: str) -> None:
    for n in range(3):
        assert run(*MH, "send", "orders", str(n), "--broker", redis_url).returncode == 0
    asyncio.run(dead_letter(redis_url, "orders", ["bad"]))
    later = run(*MH, "send", "orders", "4", "--delay", "3600", "--broker", redis_url)
    assert later.returncode == 0, later.stderr

    table = run(*MH, "queues", "orders", "empty", "--broker", redis_url)
    assert table.returncode == 0, table.stderr
    header, orders, empty = lines(table.stdout)
    assert header == "queue\tlength\tconsumers\tin flight\tdead letters"
    # the consumer that dead-lettered may have released one more entry read ahead: pending
    assert re.fullmatch(r"orders\t3\t0\t[01]\t1", orders), orders
    assert empty == "empty\t0\t0\t0\t0"

    as_json = json.loads(run(*MH, "queues", "orders", "--json", "--broker", redis_url).stdout)
    assert as_json.pop("in_flight") in (0, 1)
    assert as_json == {"queue": "orders", "length": 3, "consumers": 0, "dead_letters": 1}


def test_queues_of_a_catalog_and_of_agent_classes(redis_url: str, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"version": 1, "queues": [{"name": "from_catalog"}]}))
    result = run(
        *MH,
        "queues",
        "--catalog",
        str(catalog),
        "--agents",
        "examples.social.agents",
        "--broker",
        redis_url,
    )
    assert result.returncode == 0, result.stderr
    assert [line.split("\t")[0] for line in lines(result.stdout)] == [
        "queue",
        "from_catalog",
        "post",
        "email",
    ]


def test_tail_follows_until_ctrl_c(redis_url: str) -> None:
    assert run(*MH, "send", "feed", '"old"', "--broker", redis_url).returncode == 0
    process = Process(*MH, "tail", "feed", "--last", "1", "--broker", redis_url)
    try:
        process.wait_for_line(r'"old"$')
        assert run(*MH, "send", "feed", '"new"', "--broker", redis_url).returncode == 0
        process.wait_for_line(r'"new"$')
        process.popen.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0, process.output
    finally:
        process.kill()
    assert "Traceback" not in process.output


def test_the_broker_comes_from_the_environment_and_the_config_file(
    redis_url: str, tmp_path: Path
) -> None:
    sent = run(*MH, "send", "jobs", "1", env={"MICROHIVE_BROKER": redis_url})
    assert sent.returncode == 0, sent.stderr
    config = tmp_path / "microhive.toml"
    config.write_text(f'[microhive]\nbroker = "{redis_url}"\n')
    shown = run(*MH, "queues", "jobs", "--config", str(config))
    assert lines(shown.stdout)[1] == "jobs\t1\t0\t0\t0", shown.stderr


# -- dlq -----------------------------------------------------------------------------------


def test_dlq_list_show_requeue_purge(redis_url: str) -> None:
    ids = []
    for payload in ('{"n": 1}', '{"n": 2}', '{"n": 3}'):
        result = run(*MH, "send", "work", payload, "--broker", redis_url)
        ids.append(result.stdout.strip())
    asyncio.run(dead_letter(redis_url, "work", ["bad input", "timeout", "bad input again"]))

    listed = run(*MH, "dlq", "list", "work", "--broker", redis_url)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in lines(listed.stdout)]
    assert rows[0] == ["#", "id", "dead at", "attempt", "reason"]
    assert [(r[0], r[1], r[4]) for r in rows[1:]] == [
        ("1", ids[0], "bad input"),
        ("2", ids[1], "timeout"),
        ("3", ids[2], "bad input again"),
    ]
    filtered = run(*MH, "dlq", "list", "work", "--reason", "bad", "--json", "--broker", redis_url)
    assert [json.loads(line)["id"] for line in lines(filtered.stdout)] == [ids[0], ids[2]]

    shown = run(*MH, "dlq", "show", "work", "2", "--broker", redis_url)
    assert shown.returncode == 0, shown.stderr
    assert f"id: {ids[1]}" in shown.stdout and "reason: timeout" in shown.stdout
    assert '"n": 2' in shown.stdout
    by_id = run(*MH, "dlq", "show", "work", ids[2], "--json", "--broker", redis_url)
    assert json.loads(by_id.stdout)["envelope"]["payload"] == {"n": 3}
    missing = run(*MH, "dlq", "show", "work", "nosuchid", "--broker", redis_url)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "microhive: error: no dead letter with id 'nosuchid'"

    requeued = run(
        *MH,
        "dlq",
        "requeue",
        "work",
        "--reason",
        "bad",
        "--limit",
        "1",
        "--to",
        "replay",
        "--broker",
        redis_url,
    )
    assert requeued.returncode == 0, requeued.stderr
    assert requeued.stdout.strip() == "requeued 1 dead letter(s) of work to replay"
    replayed = run(
        *MH, "tail", "replay", "--last", "5", "--no-follow", "--json", "--broker", redis_url
    )
    [envelope] = [json.loads(line) for line in lines(replayed.stdout)]
    assert envelope["payload"] == {"n": 1} and envelope["headers"]["x-requeued"] == "bad input"

    purged = run(*MH, "dlq", "purge", "work", "--json", "--broker", redis_url)
    assert json.loads(purged.stdout) == {"queue": "work", "purged": 2}
    left = run(*MH, "dlq", "list", "work", "--json", "--broker", redis_url)
    assert left.returncode == 0 and left.stdout == ""


def test_dlq_show_undecodable_bytes_as_text(redis_url: str) -> None:
    async def park() -> None:
        import redis.asyncio as aioredis

        from microhive.transports.redis.options import parse

        stream = parse(redis_url).stream("raw")
        client = aioredis.from_url(engines.REDIS_URL)
        try:
            await client.xadd(stream, {"data": b"not an envelope"})
        finally:
            await client.aclose()

    asyncio.run(park())
    asyncio.run(dead_letter_raw(redis_url))
    shown = run(*MH, "dlq", "show", "raw", "--broker", redis_url)
    assert shown.returncode == 0, shown.stderr
    assert "raw (text, undecodable): not an envelope" in shown.stdout


async def dead_letter_raw(url: str) -> None:
    with private_catalog():
        declared = Queue("raw")
    async with QueueBroker.from_url(url) as broker:
        consumer = await broker.consume(declared)
        delivery = await consumer.get()
        assert delivery.envelope is None
        await delivery.dead_letter("undecodable")
        await consumer.close()


# -- signal and call -----------------------------------------------------------------------

AGENT = """
from typing import Any

from microhive import MicroAgent, Signal, receiver

double = Signal("cli_double", ["n"])
broken = Signal("cli_broken", ["why"])
note = Signal("cli_note", ["text", "tags"])


class Answers(MicroAgent):
    @receiver(double)
    async def on_double(self, n: int, **kw: Any) -> dict[str, Any]:
        return {"twice": n * 2}

    @receiver(broken)
    async def on_broken(self, why: str, **kw: Any) -> None:
        raise ValueError(why)

    @receiver(note)
    async def on_note(self, text: str, tags: list[str], **kw: Any) -> None:
        self.log.info("noted %r with tags %r", text, tags)
"""


@pytest.fixture
def answering_agent(redis_url: str, tmp_path: Path) -> Iterator[Process]:
    (tmp_path / "cli_answers.py").write_text(textwrap.dedent(AGENT))
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}"}
    process = Process(*MH, "run", "cli_answers:Answers", "--transport", redis_url, env=env)
    try:
        process.wait_for_line(r"running 1 agent\(s\)", timeout=30)
        yield process
    finally:
        process.popen.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_call_prints_the_answer_as_json(redis_url: str, answering_agent: Process) -> None:
    result = run(*MH, "call", "cli_double", "n=21", "--bus", redis_url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"twice": 42}


def test_call_errors_are_one_line_and_exit_1(redis_url: str, answering_agent: Process) -> None:
    remote = run(*MH, "call", "cli_broken", "why=no luck", "--bus", redis_url)
    assert remote.returncode == 1
    [line] = lines(remote.stderr)
    assert re.fullmatch(r"microhive: error: RemoteError: ValueError in Answers\.\w+: no luck", line)
    nobody = run(*MH, "call", "cli_nobody", "x=1", "--timeout", "0.5", "--bus", redis_url)
    assert nobody.returncode == 1
    assert nobody.stderr.strip() == (
        "microhive: error: CallTimeout: no answer to call 'cli_nobody' within 0.5 s"
    )


def test_signal_values_are_json_else_strings(redis_url: str, answering_agent: Process) -> None:
    result = run(*MH, "signal", "cli_note", "text=hello world", 'tags=["a", 1]', "--bus", redis_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sent cli_note"
    answering_agent.wait_for_line(r"noted 'hello world' with tags \['a', 1\]")


# -- usage and configuration errors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("signal", "s", "novalue", "--bus", "memory://"), "signal: expected key=value"),
        (("send", "q", "1", "--broker", "nope://x"), "nope://x"),
        (("send", "q", "1", "--header", "bad", "--broker", "memory://"), "--header: expected k=v"),
        (("queues", "--broker", "memory://"), "no queues"),
        (("agents", "no_such_module_zz"), "cannot import module"),
    ],
)
def test_usage_and_configuration_errors_exit_2(args: tuple[str, ...], message: str) -> None:
    result = run(*MH, *args)
    assert result.returncode == 2, result.stderr
    [line] = lines(result.stderr)
    assert line.startswith("microhive: error: ") and message in line


def test_engine_failures_exit_1_without_the_password() -> None:
    port = engines.free_port()
    url = f"redis://user:s3cret-pw@127.0.0.1:{port}/0"
    result = run(*MH, "send", "q", "1", "--broker", url, timeout=60)
    assert result.returncode == 1, result.stderr
    [line] = lines(result.stderr)
    assert line.startswith("microhive: error: ") and "user:***@" in line
    assert "s3cret-pw" not in result.stderr + result.stdout


# -- agents --------------------------------------------------------------------------------


def test_agents_lists_handlers_and_next_fire_times() -> None:
    result = run(*MH, "agents", "examples.social.agents", "--json")
    assert result.returncode == 0, result.stderr
    agents = {a["agent"].split(":")[1]: a for a in map(json.loads, lines(result.stdout))}
    assert set(agents) == {
        "SourceAgent",
        "UserAgent",
        "PostAgent",
        "MentionAgent",
        "EmailAgent",
        "StatsAgent",
    }
    user = agents["UserAgent"]
    assert {r["handler"]: r["signals"] for r in user["receivers"]} == {
        "update_users": ["user_enter", "user_exit"],
        "check_user": ["check_user"],
    }
    [store] = agents["PostAgent"]["consumers"]
    assert (store["queue"], store["concurrency"], store["retries"]) == ("post", 1, 3)
    schedules = {s["handler"]: s for s in agents["StatsAgent"]["schedules"]}
    hourly = schedules["hourly_report"]["next"]
    assert len(hourly) == 3 and all(t % 3600 == 0 for t in hourly)
    assert [b - a for a, b in itertools.pairwise(hourly)] == [3600, 3600]
    summary = schedules["summary"]["next"]
    assert [round(b - a, 6) for a, b in itertools.pairwise(summary)] == [5, 5]
    assert {"handler": "shutdown", "event": "post_stop"} in agents["StatsAgent"]["hooks"]

    text = run(*MH, "agents", "examples.social.agents:StatsAgent", "--transport", "memory://")
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0] == "examples.social.agents:StatsAgent"
    assert "  schedules:" in text.stdout and "hourly_report: cron 0 * * * *" in text.stdout


def test_a_terminal_gets_a_drawn_table(redis_url: str) -> None:
    result = run(*MH, "queues", "jobs", "--broker", redis_url, env={"FORCE_COLOR": "1"})
    assert result.returncode == 0, result.stderr
    assert "\t" not in result.stdout
    assert "┃" in result.stdout and "jobs" in result.stdout


def test_a_catalog_signal_checks_its_arguments(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(
        json.dumps({"version": 1, "signals": [{"name": "greet", "providing_args": ["name"]}]})
    )
    result = run(*MH, "signal", "greet", "nome=ann", "--catalog", str(catalog))
    assert result.returncode == 2, result.stderr
    [line] = lines(result.stderr)
    assert line.startswith("microhive: error: signal 'greet' takes ['name']")


# -- other engines: one command each -------------------------------------------------------


def test_send_and_queues_on_rabbitmq(tmp_path: Path) -> None:
    amqp_server.require_amqp()
    url = amqp_server.contract_url(f"cli{new_id()[:8]}")
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"version": 1, "queues": [{"name": "amqp_jobs"}]}))
    assert run(*MH, "declare", "--broker", url, "--catalog", str(catalog)).returncode == 0
    sent = run(*MH, "send", "amqp_jobs", '{"n": 1}', "--broker", url)
    assert sent.returncode == 0, sent.stderr
    shown = run(*MH, "queues", "amqp_jobs", "--json", "--broker", url)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["length"] == 1
    assert "guest:guest" not in shown.stdout + shown.stderr


def test_send_and_tail_on_nats() -> None:
    prefix = f"cli{new_id()[:8]}"
    url = engines.with_query(engines.require_nats(), prefix=prefix)
    try:
        sent = run(*MH, "send", "jobs", '{"n": 1}', "--broker", url)
        assert sent.returncode == 0, sent.stderr
        tail = run(*MH, "tail", "jobs", "--last", "1", "--no-follow", "--json", "--broker", url)
        assert tail.returncode == 0, tail.stderr
        assert json.loads(tail.stdout)["id"] == sent.stdout.strip()
    finally:
        asyncio.run(engines.delete_nats_prefix(engines.NATS_URL, prefix))


def test_send_and_queues_on_kafka() -> None:
    prefix = f"cli{new_id()[:8]}"
    url = engines.with_query(engines.require_kafka(), prefix=prefix)
    try:
        sent = run(*MH, "send", "jobs", '{"n": 1}', "--broker", url, timeout=60)
        assert sent.returncode == 0, sent.stderr
        shown = run(*MH, "queues", "jobs", "--broker", url, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert lines(shown.stdout)[1] == "jobs\t1\t0\t—\t0"
    finally:
        asyncio.run(engines.delete_kafka_prefix(engines.KAFKA_URL, prefix))
