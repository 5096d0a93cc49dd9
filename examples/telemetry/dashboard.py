"""The page: Dash, as in the seed — per satellite, its position now and two live graphs
(altitude over time; latitude against longitude) from its last 180 readings.

The readings come from one queue, keyed by satellite: each column follows
``host.tail(queue, last=180, key=name)``, a live view that :class:`microhive.web.Host` keeps
in its own event-loop thread. A satellite whose newest reading is older than
:data:`SILENT_AFTER` is shown as silent; its column fills again when it comes back.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from typing import Any

import dash
from dash import Input, Output, dcc, html
from plotly.subplots import make_subplots

from microhive import Queue
from microhive.web import Host, Tail

HISTORY = 180
"""Readings per satellite the graphs show (the seed's ``que_len``)."""

SILENT_AFTER = 3.0
"""Seconds without a reading (one is due every second) before a satellite counts as silent."""

COLUMN = {"flex": "1", "minWidth": "0", "padding": "0 8px"}
LINE = {"padding": "4px", "fontSize": "15px"}
COLORS = {"live": "#1a7f37", "silent": "#cf222e", "waiting": "#57606a"}


def slug(name: str) -> str:
    """A name usable as a component id (``NOAA 20`` → ``NOAA-20``)."""
    return name.replace(" ", "-")


def build(host: Host, satellites: Sequence[str], queue: Queue) -> dash.Dash:
    """The Dash app showing ``satellites`` from ``queue`` through ``host``."""
    app = dash.Dash(__name__, title="Satellite telemetry", update_title="")
    app.layout = html.Div(
        [
            html.H3("Satellite telemetry", style={"fontFamily": "sans-serif"}),
            html.Div(
                [column(name) for name in satellites],
                style={"display": "flex", "fontFamily": "sans-serif"},
            ),
            dcc.Interval(id="tick", interval=1000, n_intervals=0),
        ]
    )
    for name in satellites:
        host.tail(queue, last=HISTORY, key=name)  # open now: the first page has the history
        follow(app, host, name, queue)
    return app


def column(name: str) -> html.Div:
    key = slug(name)
    return html.Div(
        [
            html.H4(f"{name} Satellite Live Feed"),
            html.Div(id=f"{key}-status", style=LINE),
            html.Div(id=f"{key}-text"),
            dcc.Graph(id=f"{key}-graph", config={"displayModeBar": False}),
        ],
        id=f"{key}-column",
        style=COLUMN,
    )


def follow(app: dash.Dash, host: Host, name: str, queue: Queue) -> None:
    """The callback that refreshes one satellite's column every tick."""
    key = slug(name)

    @app.callback(
        Output(f"{key}-status", "children"),
        Output(f"{key}-status", "className"),
        Output(f"{key}-status", "style"),
        Output(f"{key}-text", "children"),
        Output(f"{key}-graph", "figure"),
        Input("tick", "n_intervals"),
    )
    def refresh(_: int) -> tuple[str, str, dict[str, str], list[Any], Any]:
        tail = host.tail(queue, last=HISTORY, key=name)  # the same live view on every tick
        state, text = status(tail, time.time())
        return text, state, {**LINE, "color": COLORS[state]}, metrics(tail), figure(tail)


def status(tail: Tail, now: float) -> tuple[str, str]:
    """(``live`` | ``silent`` | ``waiting``, the line under the title)."""
    latest = tail.latest
    if latest is None:
        return "waiting", "waiting for the first reading"
    when = latest.payload.time.astimezone(datetime.UTC)
    held = f"{len(tail)} readings · last at {when:%H:%M:%S} UTC"
    age = now - latest.sent_at
    if age > SILENT_AFTER:
        return "silent", f"silent for {age:.0f} s · {held}"
    return "live", f"live · {held}"


def metrics(tail: Tail) -> list[Any]:
    latest = tail.latest
    if latest is None:
        return []
    reading = latest.payload
    return [
        html.Span(f"Longitude: {reading.lon:.2f}", style=LINE),
        html.Span(f"Latitude: {reading.lat:.2f}", style=LINE),
        html.Span(f"Altitude: {reading.alt:.2f}", style=LINE),
    ]


def figure(tail: Tail) -> Any:
    """The seed's two subplots: altitude over time; latitude against longitude."""
    readings = tail.payloads()
    times = [r.time for r in readings]
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.2)
    fig.update_layout(
        margin={"l": 50, "r": 10, "b": 30, "t": 30},
        legend={"orientation": "h", "x": 0, "y": 1.02, "xanchor": "left", "yanchor": "bottom"},
        height=450,
        uirevision="keep",  # zoom and pan survive the refreshes
    )
    fig.add_scatter(
        x=times, y=[r.alt for r in readings], name="Altitude", mode="lines+markers", row=1, col=1
    )
    fig.add_scatter(
        x=[r.lon for r in readings],
        y=[r.lat for r in readings],
        text=times,
        name="Longitude vs Latitude",
        mode="lines+markers",
        row=2,
        col=1,
    )
    return fig
