"""What ``microhive run --metrics`` and ``--tracing`` set up around the agents of a process."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from ..agent.agent import MicroAgent
    from ..broker import QueueBroker
    from ..bus import SignalBus
    from .metrics import Metrics
    from .server import ObservabilityServer
    from .tracing import Tracing

log = logging.getLogger("microhive.observability")


def metrics_middleware() -> Metrics:
    try:
        from .metrics import Metrics
    except ImportError:
        raise ConfigurationError(
            "--metrics needs prometheus-client: pip install 'microhive[metrics]'"
        ) from None
    return Metrics()


def tracing_middleware(spec: str, bus_url: str, broker_url: str, service: str) -> Tracing:
    """A :class:`Tracing` exporting through its own SDK provider: ``otlp`` (OTLP over HTTP,
    configured by the usual ``OTEL_EXPORTER_OTLP_*`` variables) or ``file:PATH`` (one JSON
    object per span and line, written as each span ends: for debugging and tests)."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        from .tracing import Tracing, system_of
    except ImportError:
        raise ConfigurationError(
            "--tracing needs the OpenTelemetry SDK: pip install 'microhive[tracing]'"
        ) from None
    processor: SpanProcessor
    if spec.startswith("file:") and len(spec) > len("file:"):
        from .export import JsonLinesExporter

        processor = SimpleSpanProcessor(JsonLinesExporter(spec.removeprefix("file:")))
    elif spec == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigurationError(
                "--tracing otlp needs pip install opentelemetry-exporter-otlp-proto-http"
            ) from None
        processor = BatchSpanProcessor(OTLPSpanExporter())
    else:
        raise ConfigurationError(f"bad --tracing {spec!r}: expected otlp or file:PATH")
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(processor)
    return Tracing(system_of(bus_url), queue_system=system_of(broker_url), tracer_provider=provider)


def shutdown_tracing(tracing: Tracing | None) -> None:
    """Flush and close the exporter of a :func:`tracing_middleware`."""
    provider: Any = getattr(tracing, "provider", None)
    if provider is not None:
        provider.shutdown()


@contextlib.asynccontextmanager
async def serving(
    address: str | None,
    metrics: Metrics | None,
    agents: Sequence[MicroAgent],
    started: Sequence[MicroAgent],
    bus: SignalBus,
    broker: QueueBroker,
) -> AsyncIterator[ObservabilityServer | None]:
    """The HTTP endpoint and queue sampling while the block runs (nothing without an address).

    Ready once every agent in ``agents`` is in ``started`` (its ``start()`` returned, so its
    signals are subscribed and its consumers consume) and still running, and the bus and
    broker are connected.
    """
    if address is None or metrics is None:
        yield None
        return
    from .server import ObservabilityServer, parse_address

    def problems() -> dict[str, str]:
        waiting: dict[str, str] = {}
        for role, connection in (("bus", bus), ("broker", broker)):
            if not connection.connected:
                waiting[role] = "not connected"
        from .. import linkevents

        for event in linkevents.down():
            waiting[f"link {event.engine} {event.role}"] = f"lost the connection to {event.url}"
        for agent in agents:
            if agent not in started:
                waiting[f"agent {agent.name}"] = "not started"
            elif not agent.running:
                waiting[f"agent {agent.name}"] = "stopped"
        return waiting

    host, port = parse_address(address)
    server = ObservabilityServer(metrics.registry, problems, host, port)
    await server.start()
    log.info("metrics on http://%s:%d/metrics", host, server.port)
    metrics.watch_agents(agents)
    metrics.start_sampling()
    try:
        yield server
    finally:
        await metrics.stop_sampling()
        await server.close()
