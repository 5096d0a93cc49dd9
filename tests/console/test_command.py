"""``microhive console`` as a command: bad settings exit 2 with one line; it says when it
runs read-only; with ``--json`` it prints where it listens."""

from __future__ import annotations

import json

from microhive.envelope import new_id
from tests import engines
from tests.cli.helpers import Process, run


def test_a_short_token_is_a_usage_error() -> None:
    done = run("-m", "microhive", "console", "--transport", "memory://", "--token", "short")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "microhive: error: the console token must be at least 8 characters"
    )


def test_a_bad_user_is_a_usage_error() -> None:
    done = run("-m", "microhive", "console", "--user", "nopassword")
    assert done.returncode == 2 and "name:password" in done.stderr


def test_an_unknown_module_is_a_usage_error() -> None:
    done = run("-m", "microhive", "console", "no_such_module_here")
    assert done.returncode == 2 and "cannot import module 'no_such_module_here'" in done.stderr


def test_without_credentials_it_says_it_is_read_only() -> None:
    console = Process(
        "-m", "microhive", "console", "--transport", "memory://", "--port", "0",
        "--queue", "jobs",
    )  # fmt: skip
    try:
        console.wait_for_line(r"microhive console on http://127\.0\.0\.1:\d+/", timeout=30)
        console.wait_for_line(r"read-only: no --token or --user was given", timeout=30)
    finally:
        console.popen.terminate()
        assert console.wait(30) == 0


def test_json_says_where_and_how() -> None:
    engines.require_kafka()
    url = engines.with_query(engines.KAFKA_URL, prefix=f"mhconsole_{new_id()[:8]}")
    console = Process(
        "-m", "microhive", "console", "--transport", url, "--port", "0", "--json",
        "--token", "json-test-token", "--read-only",
    )  # fmt: skip
    try:
        line = console.wait_for_line(r'^\{"console"', timeout=60)
        shown = json.loads(line)
        assert shown["console"].startswith("http://127.0.0.1:")
        assert shown["read_only"] and shown["why"] == "read-only: started with --read-only"
        assert "no signals or agents shown" in console.output  # Kafka has no signal bus
    finally:
        console.popen.terminate()
        assert console.wait(30) == 0
