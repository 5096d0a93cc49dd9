"""``python -m examples.calc [--url URL] [--duration S] [--log FILE] ...``: the whole system
(producer, four operation consumers, audit, dead-letter watcher) in this process.

``--url memory://`` (the default) needs no server; ``--url amqp://guest:guest@127.0.0.1/``
runs the same agents on RabbitMQ, where ``microhive dlq ...`` then works on the dead letters.
"""

from __future__ import annotations

from typing import Any

import click

from examples.runner import common_options, run_example

from .agents import AGENTS, CATALOG_FILE


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@common_options
@click.option("--log", "log", default="calc.log", show_default=True, help="The log file.")
@click.option(
    "--accept-strings",
    "strings",
    is_flag=True,
    help='Consumers accept numbers sent as strings ("7"): the fixed version to requeue to.',
)
def main(url: str, duration: float | None, log_level: str, **settings: Any) -> None:
    """Routed calculations: results to the log file, failures to the dead-letter queues."""
    chosen = {name: value for name, value in settings.items() if value is not None}
    run_example(
        AGENTS, CATALOG_FILE, url=url, duration=duration, log_level=log_level, settings=chosen
    )


if __name__ == "__main__":
    main(prog_name="python -m examples.calc")
