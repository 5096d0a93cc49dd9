"""Canary: the private parts of nats-py that microhive's NATS transport relies on.

They are used in one module, microhive/transports/nats/internals.py, and explained in
docs/transports/nats.md ("nats-py internals"). pyproject.toml caps nats-py below the next
minor version; when a new nats-py fails here, read its changes to ``Client._process_msg``,
the pending buffer and the flusher, ``_flush_pending`` and ``_send_unsubscribe``, adapt
internals.py (or drop the shortcut), then raise the cap. No engine is needed.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

nats_client = pytest.importorskip("nats.aio.client")
parser = pytest.importorskip("nats.protocol.parser")
subscription = pytest.importorskip("nats.aio.subscription")

from microhive.transports.nats import internals  # noqa: E402

Client: Any = nats_client.Client
VERSION = getattr(nats_client, "__version__", "?")


def upgrade(what: str, used_for: str) -> str:
    return (
        f"nats-py {VERSION}: {what} is not what microhive relies on ({used_for}). On an upgrade "
        "of nats-py: check the change in its source, adapt "
        "microhive/transports/nats/internals.py and docs/transports/nats.md, then raise the "
        "nats-py cap in pyproject.toml."
    )


def parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_process_msg_is_the_hook_the_parser_calls() -> None:
    used = "the direct hand-over of messages and the guard of the read loop"
    assert parameters(Client._process_msg) == internals.PROCESS_MSG, upgrade(
        "Client._process_msg(sid, subject, reply, data, headers)", used
    )
    assert inspect.iscoroutinefunction(Client._process_msg), upgrade("_process_msg", used)
    source = inspect.getsource(parser.Parser.parse)
    assert "await self.nc._process_msg(sid, subject, reply, payload, hdr)" in source, upgrade(
        "the parser's call of _process_msg", used
    )
    assert parameters(Client._process_headers) == ["self", "headers"], upgrade(
        "Client._process_headers(headers)", used
    )
    assert inspect.iscoroutinefunction(Client._process_headers), upgrade("_process_headers", used)


def test_the_direct_client_is_in_use() -> None:
    assert internals.known(Client), upgrade("the internals check", "internals.known()")
    assert internals.client_class() is not Client, upgrade(
        "the client class", "microhive fell back to nats-py's callbacks: slower signals"
    )


def test_pending_buffer_and_flusher_for_publish_now() -> None:
    used = "publish_now(): a PUB written to the pending buffer without a coroutine"
    client = Client()
    for name in ("_status", "_max_payload", "_flusher_task", "_flush_queue"):
        assert hasattr(client, name), upgrade(f"Client.{name}", used)
    assert client._pending == [], upgrade("Client._pending (a list of commands)", used)
    assert client._pending_data_size == 0, upgrade("Client._pending_data_size", used)
    assert isinstance(client._max_pending_size, int), upgrade("Client._max_pending_size", used)
    assert {"out_msgs", "out_bytes"} <= set(client.stats), upgrade("Client.stats", used)
    assert isinstance(Client.CONNECTED, int), upgrade("Client.CONNECTED", used)
    # publish() appends to the pending buffer and wakes the flusher; the flusher writes it
    publish = inspect.getsource(Client._send_command) + inspect.getsource(Client._send_publish)
    for piece in ("self._pending.append(cmd)", "self._pending_data_size += len(cmd)"):
        assert piece in publish, upgrade(f"publish() doing {piece}", used)
    flusher = inspect.getsource(Client._flusher)
    for piece in ("await self._flush_queue.get()", "self._transport.writelines(self._pending"):
        assert piece in flusher, upgrade(f"the flusher doing {piece}", used)


def test_flush_pending_for_the_barrier() -> None:
    used = "barrier(): SUB/UNSUB written before the PING that confirms them"
    assert parameters(Client._flush_pending) == ["self", "force_flush"], upgrade(
        "Client._flush_pending(force_flush)", used
    )
    assert inspect.iscoroutinefunction(Client._flush_pending), upgrade("_flush_pending", used)


def test_send_unsubscribe_and_the_sid_of_a_subscription() -> None:
    used = "unsubscribe(drain=True) and the direct hand-over's table of subscriptions"
    assert parameters(Client._send_unsubscribe) == ["self", "sid", "limit"], upgrade(
        "Client._send_unsubscribe(sid, limit)", used
    )
    assert internals.sid_of(subscription.Subscription(None, id=7)) == 7, upgrade(
        "Subscription._id", used
    )


def test_reconnect_options_changed_after_connecting() -> None:
    used = "the switch to reconnecting for ever once connected"
    source = inspect.getsource(Client._select_next_server) + inspect.getsource(Client.connect)
    for key in ("allow_reconnect", "max_reconnect_attempts", "reconnect_time_wait"):
        assert f'self.options["{key}"]' in source, upgrade(f'Client.options["{key}"]', used)
    assert internals.supports_reconnect_handler(Client), upgrade(
        "connect(reconnect_to_server_handler=)", "microhive's pause between reconnections"
    )
