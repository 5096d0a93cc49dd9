"""Coverage-guided fuzzing of the decode path with atheris (libFuzzer).

A long run by hand (new inputs go to the first directory, crashes to the prefix)::

    mkdir -p /tmp/mh-fuzz && cp tests/fuzz/corpus/* /tmp/mh-fuzz/
    PYTHONPATH=$PWD python -m tests.fuzz.decode -max_total_time=3600 \
        -artifact_prefix=/tmp/mh-fuzz-crash- /tmp/mh-fuzz

The test suite runs it bounded (tests/fuzz/test_decode.py). The targets are in
tests/fuzz/paths.py.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["microhive", "pamqp", "tests.fuzz"]):
    from tests.fuzz import paths


def main() -> None:
    atheris.Setup(sys.argv, paths.one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
