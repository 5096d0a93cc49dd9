"""Writes the seed corpus (tests/fuzz/corpus/): one file per input, the first byte picks
the path of tests/fuzz/paths.py. Run it again after changing the seeds::

    PYTHONPATH=$PWD python -m tests.fuzz.seeds
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from microhive.codecs import JsonCodec
from microhive.envelope import Envelope, Kind

from ..contract import test_bad_input
from . import paths

CORPUS = Path(__file__).parent / "corpus"
WRITER = JsonCodec()


def envelope(payload: object, **headers: str) -> bytes:
    return WRITER.encode(Envelope(Kind.MESSAGE, "jobs", payload, "seed", "id1", headers))


def seeds() -> list[bytes]:
    body = paths.PATHS.index(paths.body)
    amqp, redis = paths.PATHS.index(paths.amqp), paths.PATHS.index(paths.redis)
    nats, kafka = paths.PATHS.index(paths.nats), paths.PATHS.index(paths.kafka)
    good = [
        envelope({"n": 1}),
        envelope({"n": 2, "big": 2**70}, trace="t"),
        envelope({"n": 3, "note": "x"}),
        envelope([1, 2]),
        b'{"kind":"message","name":"orders","payload":{"n":"4"},"attempt":2,"sent_at":1}',
    ]
    bad = [
        test_bad_input._raw(make(test_bad_input.TAG).message)
        for make in test_bad_input.bad_messages().values()
    ]
    found = [bytes([body]) + data for data in good + bad if len(data) < 20_000]
    found += [bytes([amqp, 0x20, 0x00, 0]) + data for data in good]  # a headers table
    found += [bytes([amqp, 0x00, 0x40]) + b"\xff" * 8 + b'{"n": 1}']  # a timestamp
    found += [bytes([redis, 1, 0, 60]) + data for data in good]
    found += [bytes([redis, 2, 200, 3]) + b"abc" + bytes([0, 8]) + b'{"n": 1}']
    found += [bytes([nats, 0, 1, 32]) + data for data in good]
    found += [bytes([kafka, 1, 16, 3]) + b"\xc2\xb2" + b"x" + data for data in good]
    return found


def main() -> None:
    CORPUS.mkdir(exist_ok=True)
    for old in CORPUS.iterdir():
        old.unlink()
    for data in seeds():
        (CORPUS / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


if __name__ == "__main__":
    main()
