"""Metrics (Prometheus) and tracing (OpenTelemetry) for a hive, built on its middleware.

``Metrics`` needs the ``metrics`` extra (prometheus-client), ``Tracing`` the ``tracing`` extra
(opentelemetry-api and -sdk); each is imported from its own module so that one works without
the other installed::

    from microhive.observability.metrics import Metrics
    from microhive.observability.tracing import Tracing
"""
