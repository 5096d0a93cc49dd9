"""JetStream's API, spoken directly: requests to ``$JS.API.*`` over the link's multiplexed
inbox, answers decoded with orjson, retried through outages until ``retry_timeout``; the
creation of a queue's streams and durable consumer."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from ...errors import ConfigurationError, TransportError
from ..links import RECONNECT, LinkDown
from .link import Link
from .options import NatsOptions
from .places import Place
from .wire import STATUS, Message, ns

STREAM_IN_USE = 10058  # "stream name already in use with a different configuration"
CONSUMER_NOT_FOUND = 10014
STREAM_NOT_FOUND = 10059
NO_MESSAGE = 10037


class NoResponders(TransportError):
    """Nobody answers the subject: for JetStream, no stream (or consumer) is there."""


class ApiError(TransportError):
    """JetStream refused a request; ``code`` is the HTTP-like code, ``err_code`` its own."""

    def __init__(self, message: str, code: int = 0, err_code: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.err_code = err_code


def decode(answer: Message, subject: str) -> dict[str, Any]:
    """A JetStream answer as a document, or :class:`ApiError` / :class:`NoResponders`."""
    status = answer.headers.get(STATUS) if answer.headers else None
    if status == "503":
        raise NoResponders(f"no responders on {subject!r} (no such stream?)")
    try:
        document: dict[str, Any] = orjson.loads(answer.data)
    except orjson.JSONDecodeError:
        raise ApiError(f"unexpected answer on {subject!r}: {answer.data[:200]!r}") from None
    error = document.get("error")
    if error is not None:
        raise ApiError(
            f"{subject}: {error.get('description', error)}",
            int(error.get("code", 0) or 0),
            int(error.get("err_code", 0) or 0),
        )
    return document


class JetStream:
    """The API calls of one broker, through its link."""

    def __init__(self, link: Link, options: NatsOptions, owner: str) -> None:
        self.link = link
        self.options = options
        self.owner = owner  # how errors name the broker

    async def request(
        self, subject: str, data: bytes = b"", timeout: float | None = None
    ) -> dict[str, Any]:
        """One request, not retried: the decoded answer."""
        return decode(await self.link.request_raw(subject, data, timeout=timeout), subject)

    async def api(self, subject: str, body: Any = None) -> dict[str, Any]:
        """``$JS.API.<subject>``, retried through outages until ``retry_timeout``."""
        link = self.link
        data = b"" if body is None else orjson.dumps(body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.retry_timeout
        failures = 0
        while True:
            try:
                await link.wait_up(deadline)
                return await self.request(f"$JS.API.{subject}", data)
            except NoResponders:
                # JetStream not (yet) there: a restarting server, or not enabled
                failures += 1
                if loop.time() >= deadline:
                    raise TransportError(
                        f"{self.owner}: JetStream does not answer (is it enabled: nats-server -js?)"
                    ) from None
            except LinkDown:
                failures += 1
                if link.closed or loop.time() >= deadline:
                    raise
            await asyncio.sleep(min(RECONNECT.delay(failures), max(0.0, deadline - loop.time())))

    async def create_stream(
        self, name: str, subjects: list[str], description: str, *, dedup: bool
    ) -> None:
        """Create a stream; one that exists with limits of an operator's is fine, one with
        other subjects is someone else's (:class:`ConfigurationError`)."""
        options = self.options
        config: dict[str, Any] = {
            "name": name,
            "subjects": subjects,
            "description": description,
            "retention": "limits",
            "discard": "old",
            "max_msgs": -1,
            "max_bytes": -1,
            "max_age": 0,
            "max_msgs_per_subject": -1,
            "max_msg_size": -1,
            "storage": options.storage,
            "num_replicas": options.replicas,
        }
        if dedup:
            config["duplicate_window"] = ns(options.duplicate_window)
        try:
            await self.api(f"STREAM.CREATE.{name}", config)
        except ApiError as exc:
            if exc.err_code != STREAM_IN_USE:
                raise TransportError(
                    f"{self.owner}: cannot create stream {name!r}: {exc}"
                ) from None
            info = await self.api(f"STREAM.INFO.{name}")
            theirs = set(info.get("config", {}).get("subjects") or [])
            if not set(subjects) <= theirs:
                raise ConfigurationError(
                    f"stream {name!r} exists with subjects {sorted(theirs)}, not {subjects}: "
                    "another queue or program uses the name (queue names that differ only "
                    "in '.' and '_' share a stream name; use another name or prefix)"
                ) from None

    async def create_consumer(self, place: Place) -> None:
        """The queue's durable pull consumer, shared by every consumer of this durable."""
        options = self.options
        stream, queue = place.stream, place.queue
        config: dict[str, Any] = {
            "durable_name": place.durable,
            "description": f"microhive consumers of queue {queue}",
            "deliver_policy": "all",
            "ack_policy": "explicit",
            "ack_wait": ns(options.ack_wait),
            "max_deliver": -1,
            "max_ack_pending": -1,
            "max_waiting": 512,
            "replay_policy": "instant",
            "num_replicas": 0,
        }
        if place.filter is not None:
            config["filter_subject"] = place.filter
        body = {"stream_name": stream, "config": config}
        try:
            await self.api(f"CONSUMER.DURABLE.CREATE.{stream}.{place.durable}", body)
        except ApiError as exc:
            raise TransportError(
                f"{self.owner}: cannot create the durable consumer of queue {queue!r}: {exc}"
            ) from None

    async def consumer_info(self, place: Place) -> dict[str, Any]:
        return await self.api(f"CONSUMER.INFO.{place.stream}.{place.durable}")

    async def stream_of(self, subject: str) -> str | None:
        """The stream that captures ``subject``, if one does."""
        answer = await self.api("STREAM.NAMES", {"subject": subject})
        names = answer.get("streams") or []
        return str(names[0]) if names else None

    async def stream_state(self, stream: str) -> dict[str, Any]:
        state: dict[str, Any] = (await self.api(f"STREAM.INFO.{stream}")).get("state") or {}
        return state
