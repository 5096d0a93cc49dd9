"""OpenTelemetry tracing for a hive: a :class:`Tracing` middleware after the messaging
semantic conventions.

Every publish is a PRODUCER span (``"<destination> publish"``) whose context travels in the
envelope's headers (W3C ``traceparent`` / ``tracestate``); every handler run is a CONSUMER
span (``"<destination> process"``) whose parent is that publish span, made current while the
handler runs, so what the handler sends is its child. One trace thus follows a post from
signal to queue to call to queue, across processes and engines.

Cheap when sampled out: attributes are set only on spans that record
(``span.is_recording()``); names are built once per destination. A message whose trace was
sampled out upstream (``traceparent`` flags without the sampled bit) skips the SDK altogether
when the sampler is ``ParentBased`` with its default of never sampling the children of an
unsampled parent (the SDK would decide the same): its headers are read by slicing, the
handler runs under a non-recording span of that context, and what it sends carries the same
``traceparent`` on. When the root sampler never samples either (ratio 0, ALWAYS_OFF: only
traces that arrive sampled are recorded), a trace's first publish writes random ids itself.
"""

from __future__ import annotations

from contextvars import ContextVar
from random import getrandbits
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import (
    INVALID_SPAN,
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TracerProvider,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..envelope import Envelope, Kind
from ..middleware import Handling, Middleware

SYSTEMS = {
    "memory": "memory",
    "redis": "redis",
    "rediss": "redis",
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
    "kafka": "kafka",
    "nats": "nats",
    "tls": "nats",
}

TEMPORARY = "(temporary)"  # the semantic conventions' name for a reply inbox
STATE = "microhive.tracing"  # this middleware's key in Handling.state

_EMPTY = otel_context.Context()
_UNSAMPLED_FLAGS = frozenset("02468ace")  # the last hex digit of flags without bit 0


class _Unsampled(NonRecordingSpan):
    """The current span of a handler whose trace was sampled out upstream: what it sends
    carries the same ``traceparent`` and ``tracestate`` on. Its span context is parsed only
    if someone asks (code in the handler starting spans of its own)."""

    __slots__ = ("_parsed", "traceparent", "tracestate")
    _context = INVALID_SPAN_CONTEXT  # NonRecordingSpan's, never read: get_span_context() is ours

    def __init__(self, traceparent: str, tracestate: str | None) -> None:  # no super(): hot path
        self.traceparent = traceparent
        self.tracestate = tracestate
        self._parsed: SpanContext | None = None

    def get_span_context(self) -> SpanContext:
        if self._parsed is None:
            self._parsed = _parse(self.traceparent)
        return self._parsed


def _parse(parent: str) -> SpanContext:
    try:
        trace_id, span_id = int(parent[3:35], 16), int(parent[36:52], 16)
        flags = int(parent[53:], 16)
    except ValueError:
        return INVALID_SPAN_CONTEXT
    if not trace_id or not span_id:
        return INVALID_SPAN_CONTEXT
    return SpanContext(trace_id, span_id, True, TraceFlags(flags))


def _unsampled(headers: Any) -> _Unsampled | None:
    """The sampled-out parent in W3C ``headers``, recognised by its shape; None for anything
    else (sampled, absent, malformed: the propagator then has its say)."""
    parent = headers.get("traceparent")
    if (
        parent is None
        or len(parent) != 55
        or parent[54] not in _UNSAMPLED_FLAGS
        or parent[:3] != "00-"
        or parent[35] != "-"
        or parent[52] != "-"
    ):
        return None
    return _Unsampled(parent, headers.get("tracestate"))


def _drops_every_root(provider: Any) -> bool:
    """True when ``provider``'s sampler never samples a trace's first span (only traces
    that arrive sampled are recorded)."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

    sampler = getattr(provider, "sampler", None)
    root = getattr(sampler, "_root", None) if isinstance(sampler, ParentBased) else sampler
    return root is ALWAYS_OFF or (isinstance(root, TraceIdRatioBased) and root.bound == 0)


def _trusts_unsampled_parents(provider: Any) -> bool:
    """True when ``provider``'s sampler never samples the child of an unsampled parent."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

    sampler = getattr(provider, "sampler", None)
    return (
        isinstance(sampler, ParentBased)
        and getattr(sampler, "_remote_parent_not_sampled", None) is ALWAYS_OFF
        and getattr(sampler, "_local_parent_not_sampled", None) is ALWAYS_OFF
    )


def system_of(url: str) -> str:
    """``messaging.system`` for a transport URL: redis, rabbitmq, kafka, nats or memory."""
    scheme = url.partition("://")[0].lower().partition("+")[0]
    return SYSTEMS.get(scheme, scheme or "memory")


class Tracing(Middleware):
    """Spans for what a hive publishes and handles, linked across processes by headers.

    ``system`` names the signal bus's engine (``messaging.system``), ``queue_system`` the
    broker's when it differs (``system_of(url)`` turns a URL into one). The tracer comes from
    ``tracer_provider`` (the global one by default: configure the OTel SDK as usual) and the
    headers from ``propagator`` (W3C trace context by default; pass
    ``opentelemetry.propagate.get_global_textmap()`` for baggage or other formats).

    A call's publish span stays open until its answer came (or it failed), so its duration
    is the call's latency; the callee's reply publish is a child of the callee's process
    span. (A ``gather`` has no end the middleware is told about: its publish span ends when
    the same task makes its next call.)
    """

    def __init__(
        self,
        system: str = "memory",
        *,
        queue_system: str | None = None,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        self.system = system
        self.queue_system = queue_system or system
        self.provider = tracer_provider
        self.tracer = trace.get_tracer("microhive", tracer_provider=tracer_provider)
        self.propagator: TextMapPropagator = propagator or TraceContextTextMapPropagator()
        self._w3c = propagator is None
        provider = tracer_provider or trace.get_tracer_provider()
        self._fast = self._w3c and _trusts_unsampled_parents(provider)
        self._no_roots = self._fast and _drops_every_root(provider)
        self._publish_names: dict[str, str] = {}
        self._process_names: dict[str, str] = {}
        # the open publish span of the call this task is making (one per middleware)
        self._call: ContextVar[Span | None] = ContextVar(f"tracing_call_{id(self)}", default=None)

    # -- producers -----------------------------------------------------------------------

    def publishing(self, envelope: Envelope, destination: str) -> None:
        current = trace.get_current_span()
        if type(current) is _Unsampled:  # inside a handler of a sampled-out trace
            headers = envelope.headers
            if type(headers) is not dict:
                headers = envelope.headers = dict(headers)
            headers["traceparent"] = current.traceparent
            if current.tracestate is not None:
                headers["tracestate"] = current.tracestate
            return
        if current is INVALID_SPAN and self._no_roots:  # a trace starts, sampled out: no SDK
            headers = envelope.headers
            if type(headers) is not dict:
                headers = envelope.headers = dict(headers)
            # random ids, as the SDK's generator makes them (all-zero ids: 2^-64, ignored);
            # flags: random, not sampled
            headers["traceparent"] = (
                f"00-{getrandbits(128).to_bytes(16).hex()}-{getrandbits(64).to_bytes(8).hex()}-02"
            )
            return
        kind = envelope.kind
        reply = kind is Kind.REPLY
        label = TEMPORARY if reply else destination
        try:
            name = self._publish_names[label]
        except KeyError:
            name = self._publish_names.setdefault(label, f"{label} publish")
        span = self.tracer.start_span(name, kind=SpanKind.PRODUCER)
        if span.is_recording():
            span.set_attributes(
                {
                    "messaging.system": self.queue_system if kind is Kind.MESSAGE else self.system,
                    "messaging.destination.name": destination,
                    "messaging.operation.type": "publish",
                    "messaging.operation.name": "publish",
                    "messaging.message.id": envelope.id,
                    "microhive.kind": kind.value,
                }
            )
            if reply:
                span.set_attribute("messaging.destination.temporary", True)
            if envelope.correlation_id is not None:
                span.set_attribute("messaging.message.conversation_id", envelope.correlation_id)
        headers = envelope.headers
        if type(headers) is not dict:
            headers = envelope.headers = dict(headers)
        if self._w3c and not span.is_recording():  # what the propagator writes, sooner
            context = span.get_span_context()
            if context.is_valid:
                headers["traceparent"] = (
                    f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
                )
                if context.trace_state:
                    headers["tracestate"] = context.trace_state.to_header()
        else:
            self.propagator.inject(headers, context=trace.set_span_in_context(span))
        if kind is Kind.CALL:
            previous = self._call.get()
            if previous is not None:  # a gather before it, told of no end: ends now
                previous.end()
            self._call.set(span)
        else:
            span.end()

    def called(self, signal: str, duration: float, error: BaseException | None) -> None:
        span = self._call.get()
        if span is None:
            return
        self._call.set(None)
        if error is not None and span.is_recording():
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()

    # -- consumers -----------------------------------------------------------------------

    def handling(self, event: Handling) -> None:
        envelope = event.envelope
        if envelope is not None and envelope.headers:
            if self._fast:
                unsampled = _unsampled(envelope.headers)
                if unsampled is not None:
                    token = otel_context.attach(trace.set_span_in_context(unsampled, _EMPTY))
                    event.state[STATE] = (unsampled, token)
                    return
            parent = self.propagator.extract(envelope.headers, context=_EMPTY)
        else:
            parent = _EMPTY  # a job, a batch or an undecodable message
        kind = event.kind
        label = event.name
        try:
            name = self._process_names[label]
        except KeyError:
            verb = "run" if kind == "schedule" else "process"
            name = self._process_names.setdefault(label, f"{label} {verb}")
        span = self.tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.INTERNAL if kind == "schedule" else SpanKind.CONSUMER,
        )
        if span.is_recording():
            span.set_attributes(self._consumer_attributes(event))
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        event.state[STATE] = (span, token)

    def _consumer_attributes(self, event: Handling) -> dict[str, Any]:
        kind = event.kind
        attributes: dict[str, Any] = {
            "microhive.kind": kind,
            "microhive.agent": event.agent,
            "microhive.handler": event.handler,
        }
        if kind == "schedule":
            attributes["microhive.job"] = event.name
            return attributes
        queued = kind in ("message", "batch")
        attributes["messaging.system"] = self.queue_system if queued else self.system
        attributes["messaging.destination.name"] = event.name
        attributes["messaging.operation.type"] = "process"
        attributes["messaging.operation.name"] = "process"
        if kind == "batch":
            attributes["messaging.batch.message_count"] = event.size
        envelope = event.envelope
        if envelope is not None:
            attributes["messaging.message.id"] = envelope.id
            if envelope.correlation_id is not None:
                attributes["messaging.message.conversation_id"] = envelope.correlation_id
            if queued:
                attributes["microhive.attempt"] = envelope.attempt
        return attributes

    def handled(self, event: Handling) -> None:
        found = event.state.pop(STATE, None)
        if found is None:
            return
        span, token = found
        try:
            if span.is_recording():
                span.set_attribute("microhive.outcome", event.outcome)
                if event.error is not None:
                    span.record_exception(event.error)
                    span.set_status(Status(StatusCode.ERROR, type(event.error).__name__))
            span.end()
        finally:
            otel_context.detach(token)
