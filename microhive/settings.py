"""Runner settings: command line over environment (``MICROHIVE_*``) over a TOML file."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .errors import ConfigurationError

DEFAULT_TRANSPORT = "memory://"


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _split_list(value: Any) -> Any:
    """``"a, b"`` → ``["a", "b"]``: commas only, since targets contain ``:``."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _log_level(value: Any) -> Any:
    if isinstance(value, str):
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level {value!r} (use one of {', '.join(LOG_LEVELS)})")
        return level
    return value


class RunSettings(BaseModel):
    """Everything ``microhive run`` needs; see docs/operations.md for each field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: list[str] = Field(default_factory=list)
    transport: str = DEFAULT_TRANSPORT
    bus: str | None = None
    broker: str | None = None
    catalog: list[str] = Field(default_factory=list)
    grace_period: float = Field(default=30.0, ge=0)
    log_level: str = "INFO"
    processes: bool = False
    duration: float | None = Field(default=None, gt=0)
    heartbeat: float = Field(default=5.0, ge=0)
    """Seconds between agents' heartbeats (agent/heartbeat.py); 0 turns them off."""
    agents: dict[str, dict[str, Any]] = Field(default_factory=dict)

    _split = field_validator("catalog", "targets", mode="before")(_split_list)
    _level = field_validator("log_level", mode="before")(_log_level)

    @property
    def bus_url(self) -> str:
        return self.bus or self.transport

    @property
    def broker_url(self) -> str:
        return self.broker or self.transport


class EnvSettings(BaseSettings):
    """The ``MICROHIVE_*`` environment variables; only the ones set count."""

    model_config = SettingsConfigDict(env_prefix="MICROHIVE_", extra="ignore")

    targets: Annotated[list[str] | None, NoDecode] = None
    transport: str | None = None
    bus: str | None = None
    broker: str | None = None
    catalog: Annotated[list[str] | None, NoDecode] = None
    grace_period: float | None = None
    log_level: str | None = None
    processes: bool | None = None
    duration: float | None = None
    heartbeat: float | None = None

    _split = field_validator("catalog", "targets", mode="before")(_split_list)


def load_settings(config: str | Path | None = None, **given: Any) -> RunSettings:
    """Merge the sources; ``given`` are command-line values (None means "not given")."""
    values: dict[str, Any] = {}
    if config is not None:
        values.update(_read_toml(Path(config)))
    try:
        values.update(EnvSettings().model_dump(exclude_none=True))
    except ValidationError as exc:
        raise ConfigurationError(f"bad MICROHIVE_* environment variable: {_first(exc)}") from None
    values.update({k: v for k, v in given.items() if v not in (None, (), [])})
    try:
        return RunSettings.model_validate(values)
    except ValidationError as exc:
        raise ConfigurationError(f"bad setting: {_first(exc)}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from None
    section = document.get("microhive", document)
    if not isinstance(section, dict):
        raise ConfigurationError(f"{path}: [microhive] must be a table")
    base = path.parent
    catalogs = _split_list(section.get("catalog", []))
    if isinstance(catalogs, list):
        section = {**section, "catalog": [str(base / c) for c in catalogs]}
    return section


def _first(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {error['msg']}"
