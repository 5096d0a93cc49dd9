"""What every command for people shares: connection options, settings, output and errors.

Settings come as for ``run``: the options, then ``MICROHIVE_*``, then ``--config`` TOML.
Output is a rich table or colours on a terminal, plain text when piped, JSON with ``--json``.
Errors are one line ``microhive: error: ...``: exit 2 for usage and configuration, 1 for what
the engine or a remote handler did.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.table import Table

from ..catalog import Catalog
from ..errors import ConfigurationError, MicroHiveError, PayloadError
from ..runner import load_catalog
from ..settings import RunSettings, load_settings

F = TypeVar("F", bound=Callable[..., Any])


def connection_options(command: F) -> F:
    """``--transport``/``--bus``/``--broker``/``--catalog``/``--config``/``--json``."""
    for option in reversed(
        (
            click.option("--transport", help="URL for both bus and broker (default memory://)."),
            click.option("--bus", help="Signal bus URL (overrides --transport)."),
            click.option("--broker", help="Queue broker URL (overrides --transport)."),
            click.option("--catalog", multiple=True, help="Catalog JSON file (repeatable)."),
            click.option("--config", type=click.Path(dir_okay=False), help="TOML settings file."),
            click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text."),
        )
    ):
        command = option(command)
    return command


@dataclass(frozen=True)
class Options:
    """The common options of one invocation, resolved."""

    settings: RunSettings
    catalog: Catalog
    as_json: bool
    console: Console

    @property
    def bus_url(self) -> str:
        return self.settings.bus_url

    @property
    def broker_url(self) -> str:
        return self.settings.broker_url

    def emit_json(self, value: Any) -> None:
        """One JSON document on one line (JSON lines when called repeatedly)."""
        click.echo(json.dumps(value, ensure_ascii=False, default=str))

    def table(
        self, title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """A rich table on a terminal; tab-separated lines with a header when piped."""
        if self.console.is_terminal:
            table = Table(title=title, header_style="bold")
            for column in columns:
                table.add_column(column)
            for row in rows:
                table.add_row(*(str(cell) for cell in row))
            self.console.print(table)
        else:
            click.echo("\t".join(columns))
            for row in rows:
                click.echo("\t".join(str(cell) for cell in row))


def resolve_options(
    *,
    transport: str | None,
    bus: str | None,
    broker: str | None,
    catalog: Sequence[str],
    config: str | None,
    as_json: bool,
) -> Options:
    """Settings merged as ``run`` merges them, and the catalogs read (declaring their names).

    Only errors are logged: a one-shot command's reconnect warnings would repeat the error
    line it ends with."""
    quiet_logs()
    settings = load_settings(
        config, transport=transport, bus=bus, broker=broker, catalog=list(catalog)
    )
    return Options(
        settings=settings,
        catalog=load_catalog(settings.catalog),
        as_json=as_json,
        console=Console(force_terminal=None, highlight=False),
    )


def quiet_logs() -> None:
    if not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("microhive: %(levelname)s: %(message)s"))
        logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.ERROR)


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"microhive: error: {message}", err=True)
    sys.exit(code)


def guarded(command: F) -> F:
    """One error line: exit 2 for what the user gave (options, settings, catalogs, payloads),
    1 for what the engine or a remote handler did; 130 on Ctrl-C."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (ConfigurationError, PayloadError) as exc:  # what the user typed is wrong
            fail(str(exc), 2)
        except (MicroHiveError, OSError) as exc:
            fail(str(exc), 1)
        except KeyboardInterrupt:  # Ctrl-C while waiting: no traceback
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def parse_value(text: str) -> Any:
    """A ``k=v`` value: JSON when it parses, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_pairs(pairs: Sequence[str], what: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` → ``{"a": 1, "b": "x"}``; a usage error (exit 2) otherwise."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"{what}: expected key=value, got {pair!r}")
        values[key] = parse_value(value)
    return values
