"""``python -m examples.logs [--url URL] [--duration S] [--dir DIR] ...``: the generator and
both logger clients in this process; ``--url amqp://...`` runs them on RabbitMQ."""

from __future__ import annotations

from typing import Any

import click

from examples.runner import common_options, run_example

from .agents import AGENTS, CATALOG_FILE


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@common_options
@click.option(
    "--dir",
    "dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where sent.log, all.log and errors.log are written.",
)
def main(url: str, duration: float | None, log_level: str, **settings: Any) -> None:
    """Two message types over a topic exchange; one logger gets all, one only errors."""
    chosen = {name: value for name, value in settings.items() if value is not None}
    run_example(
        AGENTS, CATALOG_FILE, url=url, duration=duration, log_level=log_level, settings=chosen
    )


if __name__ == "__main__":
    main(prog_name="python -m examples.logs")
