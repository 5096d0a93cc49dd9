"""``microhive asyncapi``: targets and catalogs in, a valid document out, as JSON or YAML."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from microhive.cli.main import main

from .official import check

TARGET = "tests.asyncapi.agents"
ROOT = Path(__file__).resolve().parents[2]


def catalog_file(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "signals": [{"name": "audit_event", "providing_args": ["what", "who"]}],
                "exchanges": [{"name": "fan", "type": "fanout"}],
                "queues": [{"name": "archive", "bindings": [{"exchange": "fan"}]}],
            }
        )
    )
    return path


def test_json_file_from_targets_and_catalogs(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.json"
    result = CliRunner().invoke(
        main,
        [
            "asyncapi",
            f"{TARGET}:Shop",
            "--catalog",
            str(catalog_file(tmp_path)),
            "--transport",
            "amqp://feed:s3cret-pw@rabbit.example/portal?prefix=t.",
            "--title",
            "Shop",
            "--version",
            "2.1.0",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "s3cret-pw" not in text
    document = json.loads(text)
    check(document)
    assert document["info"]["title"] == "Shop" and document["info"]["version"] == "2.1.0"
    assert document["channels"]["queue.archive"]["address"] == "t.archive"
    assert "exchange.fan" in document["channels"]
    assert {tag["name"] for tag in document["info"]["tags"]} == {"Shop"}  # not Notifier


def test_yaml_output_is_the_same_document(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "asyncapi.yaml"
    result = runner.invoke(main, ["asyncapi", TARGET, "--bus", "nats://n", "--out", str(out)])
    assert result.exit_code == 0, result.output
    as_json = runner.invoke(main, ["asyncapi", TARGET, "--bus", "nats://n"])
    assert as_json.exit_code == 0
    document = yaml.safe_load(out.read_text())
    check(document)
    assert document == json.loads(as_json.stdout)


def test_yaml_without_pyyaml_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml now raises ImportError
    out = tmp_path / "asyncapi.yml"
    result = CliRunner().invoke(main, ["asyncapi", TARGET, "--out", str(out)])
    assert result.exit_code == 2
    assert "YAML output needs PyYAML" in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "nothing to describe"),
        (["no_such_module_here:Agent"], "cannot import module"),
        ([TARGET, "--transport", "kafka://k:9092"], "Kafka carries no signals"),
        ([TARGET, "--broker", "mqtt://m"], "unknown broker URL scheme 'mqtt'"),
        ([TARGET, "--broker", "redis://r?prefix=a&bogus=1"], "unknown option"),
    ],
)
def test_bad_input_exits_2_with_the_reason(arguments: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["asyncapi", *arguments])
    assert result.exit_code == 2
    assert message in result.output


def test_the_installed_command_writes_to_stdout() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "microhive", "asyncapi", f"{TARGET}:Notifier"],
        cwd=ROOT,
        capture_output=True,
        check=False,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr.decode()
    document = json.loads(done.stdout)
    check(document)
    assert list(document["x-microhive-agents"]) == ["Notifier"]
