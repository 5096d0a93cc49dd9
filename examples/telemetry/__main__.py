"""``python -m examples.telemetry``: the dashboard, and (by default) the three satellites in
the same process on ``memory://``.

On Kafka, each satellite runs as a process of its own and the dashboard only reads::

    python -m examples.telemetry.satellite --name TERRA --broker kafka://127.0.0.1:9092 &
    python -m examples.telemetry --broker kafka://127.0.0.1:9092 --no-satellites
"""

from __future__ import annotations

import functools
import logging
import sys
import threading

import click
from werkzeug.serving import make_server

from microhive.web import AgentFactory, Host

from .dashboard import build
from .readings import QUEUE, SATELLITES, telemetry
from .satellite import Satellite


@click.command()
@click.option("--broker", default="memory://", show_default=True, help="Queue broker URL.")
@click.option("--bus", default=None, help="Signal bus URL (default memory://).")
@click.option("--queue", default=QUEUE, show_default=True, help="Queue of the readings.")
@click.option(
    "--satellites/--no-satellites",
    default=True,
    show_default=True,
    help="Run the three satellites in this process too.",
)
@click.option("--host", "address", default="127.0.0.1", show_default=True)
@click.option("--port", default=8050, show_default=True, help="0: any free port.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
def main(
    broker: str,
    bus: str | None,
    queue: str,
    satellites: bool,
    address: str,
    port: int,
    duration: float | None,
) -> None:
    """Serve the live satellite dashboard until Ctrl-C or SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("werkzeug", "aiokafka"):  # no line per refresh, per tail reader
        logging.getLogger(noisy).setLevel(logging.WARNING)
    producers: list[AgentFactory] = [
        functools.partial(Satellite, name=name, settings={"name": name, "queue": queue})
        for name in (SATELLITES if satellites else ())
    ]
    host = Host(*producers, broker=broker, bus=bus, grace_period=2, name="dashboard")
    with host:
        app = build(host, SATELLITES, telemetry(queue))
        server = make_server(address, port, app.server, threaded=True)
        if duration is not None:
            threading.Timer(duration, server.shutdown).start()
        click.echo(f"dashboard on http://{address}:{server.port}/")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


if __name__ == "__main__":
    main(sys.argv[1:], prog_name="python -m examples.telemetry")
