"""OpenTelemetry tracing for a hive: a :class:`Tracing` middleware after the messaging
semantic conventions.

Every publish is a PRODUCER span (``"<destination> publish"``) whose context travels in the
envelope's headers (W3C ``traceparent`` / ``tracestate``); every handler run is a CONSUMER
span (``"<destination> process"``) whose parent is that publish span, made current while the
handler runs, so what the handler sends is its child. One trace thus follows a post from
signal to queue to call to queue, across processes and engines.

Cheap when sampled out: attributes are set only on spans that record
(``span.is_recording()``); names are built once per destination.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import get_global_textmap
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

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

_call: ContextVar[Span | None] = ContextVar("microhive_tracing_call", default=None)


def system_of(url: str) -> str:
    """``messaging.system`` for a transport URL: redis, rabbitmq, kafka, nats or memory."""
    scheme = url.partition("://")[0].lower().partition("+")[0]
    return SYSTEMS.get(scheme, scheme or "memory")


class Tracing(Middleware):
    """Spans for what a hive publishes and handles, linked across processes by headers.

    ``system`` names the signal bus's engine (``messaging.system``), ``queue_system`` the
    broker's when it differs (``system_of(url)`` turns a URL into one). The tracer comes from
    ``tracer_provider`` (the global one by default: configure the OTel SDK as usual) and the
    headers from ``propagator`` (the global one: W3C trace context and baggage).

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
        self.propagator = propagator
        self._publish_names: dict[str, str] = {}
        self._process_names: dict[str, str] = {}

    # -- producers -----------------------------------------------------------------------

    def publishing(self, envelope: Envelope, destination: str) -> None:
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
        propagator = self.propagator or get_global_textmap()
        propagator.inject(headers, context=trace.set_span_in_context(span))
        if kind is Kind.CALL:
            previous = _call.get()
            if previous is not None:  # a gather before it, told of no end: ends now
                previous.end()
            _call.set(span)
        else:
            span.end()

    def called(self, signal: str, duration: float, error: BaseException | None) -> None:
        span = _call.get()
        if span is None:
            return
        _call.set(None)
        if error is not None and span.is_recording():
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()

    # -- consumers -----------------------------------------------------------------------

    def handling(self, event: Handling) -> None:
        envelope = event.envelope
        if envelope is not None and envelope.headers:
            propagator = self.propagator or get_global_textmap()
            parent = propagator.extract(envelope.headers, context=otel_context.Context())
        else:
            parent = otel_context.Context()  # a job, a batch or an undecodable message
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
