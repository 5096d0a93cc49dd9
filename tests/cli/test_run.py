"""``microhive run`` as a subprocess: starting, stopping on signals, errors, settings."""

from __future__ import annotations

import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from microhive import ConfigurationError
from microhive.settings import load_settings

from .helpers import REPO, Process, run

CATALOG = str(REPO / "examples" / "social" / "signals.json")
MODULE = "examples.social.agents"
RUN = ("-m", "microhive", "run")
STARTED = r"microhive\.runner .*running 6 agent\(s\)"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_social_example_stops_cleanly_on_signal(signum: signal.Signals) -> None:
    process = Process(*RUN, "--catalog", CATALOG, MODULE)
    try:
        process.wait_for_line(STARTED)
        process.wait_for_line(r"check_user\(\w+\) -> (True|False)")  # it is doing something
        process.popen.send_signal(signum)
        assert process.wait(timeout=5) == 0, process.output
    finally:
        process.kill()
    output = process.output
    assert "microhive.runner [] stopping" in output
    assert "stats: stopped after" in output  # StatsAgent's post_stop hook
    for agent in ("SourceAgent", "UserAgent", "PostAgent", "MentionAgent", "EmailAgent"):
        assert f"[agent={agent}] stopped" in output
    assert "Traceback" not in output


def test_duration_stops_by_itself() -> None:
    process = Process(*RUN, "--catalog", CATALOG, f"{MODULE}:UserAgent", "--duration", "2")
    try:
        process.wait_for_line(r"running 1 agent\(s\)")
        assert process.wait(timeout=10) == 0, process.output
    finally:
        process.kill()
    assert "[agent=UserAgent] stopped" in process.output


def test_python_m_examples_social_shows_every_kind_of_work() -> None:
    result = run("-m", "examples.social", "--duration", "3")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    expected = {
        "signal": r"handler=update_users\b.*User enter: \w+",
        "queue message": r"handler=store_post\b.*Stored post #1",
        "call": r"handler=check_user\b.*check_user\(\w+\) -> (True|False)",
        "e-mail queue": r"handler=send_email\b.*E-mail to \w+",
        "periodic": r"handler=users_watcher\b.*users watcher: online",
        "5 s report (the short variant of the cron reports)": r"handler=summary\b.*stats summary",
        "pre_start hook": r"stats: starting",
        "post_stop hook": r"stats: stopped after \d+ signal",
    }
    missing = [what for what, pattern in expected.items() if not re.search(pattern, output)]
    assert not missing, f"missing {missing} in:\n{output}"


def test_python_m_examples_social_passes_exit_codes_on() -> None:
    result = run("-m", "examples.social", "--no-such-option")
    assert result.returncode == 2
    assert "No such option" in result.stderr
    assert "Traceback" not in result.stderr

    result = run("-m", "examples.social", "--processes")
    assert result.returncode == 2
    assert result.stderr.startswith("microhive: error: --processes needs a transport")
    assert "Traceback" not in result.stderr


def bad_json(tmp_path: Path) -> str:
    path = tmp_path / "bad.json"
    path.write_text('{"version": 1, "signals": [')
    return str(path)


def bad_entry(tmp_path: Path) -> str:
    path = tmp_path / "entry.json"
    path.write_text('{"version": 1, "signals": [{"name": "x", "args": []}]}')
    return str(path)


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda tmp: ["no_such_module_zz:Agent"], "cannot import module 'no_such_module_zz'"),
        (lambda tmp: [f"{MODULE}:NoSuchAgent"], "no MicroAgent subclass 'NoSuchAgent'"),
        (lambda tmp: [f"{MODULE}:CATALOG"], "no MicroAgent subclass 'CATALOG'"),
        (lambda tmp: ["json"], "module defines no MicroAgent subclass"),
        (lambda tmp: [], "no agents to run"),
        (lambda tmp: ["--transport", "foo://x", MODULE], "unknown bus URL scheme 'foo'"),
        (lambda tmp: ["--broker", "bar://x", MODULE], "unknown broker URL scheme 'bar'"),
        (lambda tmp: ["--transport", "nourl", MODULE], "not a transport URL"),
        (lambda tmp: ["--catalog", bad_json(tmp), MODULE], "not valid JSON"),
        (lambda tmp: ["--catalog", bad_entry(tmp), MODULE], "unknown keys ['args']"),
        (lambda tmp: ["--catalog", str(tmp / "missing.json"), MODULE], "cannot read catalog"),
        (lambda tmp: ["--duration", "-1", MODULE], "duration"),
        (
            lambda tmp: ["--processes", "--catalog", CATALOG, MODULE],
            "--processes needs a transport other processes can reach",
        ),
    ],
    ids=[
        "unknown-module",
        "unknown-class",
        "not-an-agent",
        "module-without-agents",
        "no-targets",
        "bad-scheme",
        "bad-broker-scheme",
        "not-a-url",
        "malformed-catalog",
        "bad-catalog-entry",
        "missing-catalog",
        "bad-duration",
        "processes-on-memory",
    ],
)
def test_errors_are_one_clear_line(
    tmp_path: Path, make_args: Callable[[Path], list[str]], message: str
) -> None:
    result = run(*RUN, *make_args(tmp_path))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("microhive: error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_unknown_log_level_is_one_clear_line() -> None:
    result = run(*RUN, "--log-level", "LOUD", MODULE)
    assert result.returncode == 2
    assert result.stderr.startswith("microhive: error: ")
    assert "Traceback" not in result.stderr


def test_missing_dependency_is_not_reported_as_missing_module(tmp_path: Path) -> None:
    (tmp_path / "zz_dep_agents.py").write_text("import zz_dep\n")
    result = run(*RUN, "zz_dep_agents:Agent", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode != 0
    assert "'zz_dep'" in result.stderr  # names the module that is really missing


def test_processes_refusal_names_the_memory_transport() -> None:
    result = run(*RUN, "--processes", "--transport", "memory://", MODULE)
    assert result.returncode == 2
    assert "'memory://'" in result.stderr
    assert "inside one process" in result.stderr


# -- settings: command line > MICROHIVE_* environment > --config file ----------------------


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("TRANSPORT", "DURATION", "LOG_LEVEL", "CATALOG", "GRACE_PERIOD", "TARGETS"):
        monkeypatch.delenv(f"MICROHIVE_{name}", raising=False)
    path = tmp_path / "microhive.toml"
    path.write_text(
        "[microhive]\n"
        'transport = "memory://from-file"\n'
        "duration = 30\n"
        'log_level = "WARNING"\n'
        "grace_period = 7\n"
        'catalog = ["signals.json"]\n'
        "[microhive.agents.SourceAgent]\n"
        "seed = 42\n"
    )
    return path


def test_settings_file_alone(config: Path) -> None:
    settings = load_settings(config)
    assert settings.transport == "memory://from-file"
    assert settings.duration == 30
    assert settings.log_level == "WARNING"
    assert settings.grace_period == 7
    assert settings.catalog == [str(config.parent / "signals.json")]  # relative to the file
    assert settings.agents == {"SourceAgent": {"seed": 42}}


def test_environment_beats_settings_file(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICROHIVE_TRANSPORT", "memory://from-env")
    monkeypatch.setenv("MICROHIVE_DURATION", "20")
    settings = load_settings(config)
    assert settings.transport == "memory://from-env"
    assert settings.duration == 20
    assert settings.log_level == "WARNING"  # not in the environment: the file's value


def test_command_line_beats_environment(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICROHIVE_TRANSPORT", "memory://from-env")
    monkeypatch.setenv("MICROHIVE_DURATION", "20")
    settings = load_settings(
        config, transport="memory://from-cli", duration=None, log_level=None, targets=[]
    )
    assert settings.transport == "memory://from-cli"
    assert settings.duration == 20  # None means "not given"
    assert settings.log_level == "WARNING"


def test_defaults_without_any_source(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TRANSPORT", "DURATION", "LOG_LEVEL", "CATALOG", "GRACE_PERIOD", "PROCESSES"):
        monkeypatch.delenv(f"MICROHIVE_{name}", raising=False)
    settings = load_settings(None, targets=["a:B"])
    assert settings.transport == "memory://"
    assert settings.bus_url == settings.broker_url == "memory://"
    assert settings.duration is None
    assert settings.processes is False
    assert settings.targets == ["a:B"]


def test_bad_environment_value_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MICROHIVE_DURATION", "soon")
    with pytest.raises(ConfigurationError, match="MICROHIVE_"):
        load_settings(None)


def test_bad_config_file_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[microhive\n")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_settings(path)
    with pytest.raises(ConfigurationError, match="cannot read config"):
        load_settings(tmp_path / "missing.toml")


def test_environment_reaches_the_command(tmp_path: Path) -> None:
    """End to end: MICROHIVE_TRANSPORT is used, and --transport overrides it."""
    env = {"MICROHIVE_TRANSPORT": "envscheme://x"}
    result = run(*RUN, MODULE, env=env)
    assert result.returncode == 2
    assert "unknown bus URL scheme 'envscheme'" in result.stderr
    result = run(*RUN, "--transport", "clischeme://x", MODULE, env=env)
    assert "unknown bus URL scheme 'clischeme'" in result.stderr
