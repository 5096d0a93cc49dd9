"""The decode path under fuzzing, bounded to seconds: only typed errors may come out.

Coverage-guided (atheris, from the seed corpus) and property-based (hypothesis, with
envelope-shaped JSON); the long run by hand is in tests/fuzz/decode.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .. import engines
from . import paths

ROOT = Path(__file__).parents[2]
RUNS = 4000
"""Inputs of the bounded atheris run (a few seconds)."""

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_coverage_guided_run_finds_nothing(tmp_path: Path) -> None:
    try:
        import atheris  # noqa: F401
    except ImportError:
        message = "atheris is not installed (pip install atheris)"
        if engines.in_ci():
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    corpus = tmp_path / "corpus"  # libFuzzer adds what it finds to the first directory
    shutil.copytree(ROOT / "tests" / "fuzz" / "corpus", corpus)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.decode",
            f"-runs={RUNS}",
            "-seed=1",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"Done {RUNS} runs" in done.stderr


@FAST
@given(st.binary(max_size=2048))
def test_any_bytes_on_every_path(data: bytes) -> None:
    paths.one(data)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = {
    "v": st.sampled_from([1, 2, 1.0, "1", None]) | JSON,
    "kind": st.sampled_from(["message", "signal", "call", "reply", "event", "", 5]) | JSON,
    "name": st.sampled_from(["jobs", "orders", "", "x" * 300]) | JSON,
    "payload": st.fixed_dictionaries({"n": JSON}, optional={"big": JSON, "note": JSON}) | JSON,
    "sender": st.text(max_size=10) | JSON,
    "id": st.text(max_size=10) | JSON,
    "headers": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3) | JSON,
    "correlation_id": st.text(max_size=5) | JSON,
    "reply_to": st.text(max_size=5) | JSON,
    "sent_at": st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([10**400, -(10**400), 2**64, True])
    | JSON,
    "attempt": st.integers(min_value=-5, max_value=2**70) | JSON,
}
ENVELOPES = st.fixed_dictionaries({}, optional=FIELDS)


def _dump(document: dict[str, Any]) -> bytes:
    return json.dumps(document, allow_nan=False).encode()


@FAST
@given(ENVELOPES)
def test_envelope_shaped_json(document: dict[str, Any]) -> None:
    paths.body(_dump(document))


@FAST
@given(ENVELOPES, st.binary(max_size=64))
def test_envelope_shaped_json_behind_framing(document: dict[str, Any], framing: bytes) -> None:
    """The same bodies after any AMQP properties, Redis fields, NATS or Kafka headers."""
    data = _dump(document)
    for path in (paths.amqp, paths.nats, paths.kafka):
        path(framing + data)
    paths.redis(b"\x01\x00\x00" + bytes([min(len(data), 255)]) + data)
