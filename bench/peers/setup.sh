#!/bin/sh
# Make bench/peers/.venv with the peers pinned (requirements.txt, constraints.txt).
#   bench/peers/setup.sh            # PYTHON=python3.11 bench/peers/setup.sh to choose Python
# Needs Python >= 3.11 and PyPI. Safe to run again (reinstalls the pins into the same venv).
# Other benchmarks that need the same peers (Celery, Dramatiq with result backends) use this
# venv too: PEERS_PYTHON=bench/peers/.venv/bin/python.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "setup.sh: $python is older than 3.11" >&2
    exit 2
}
[ -x "$here/.venv/bin/python" ] || "$python" -m venv "$here/.venv"
"$here/.venv/bin/python" -m pip install --quiet --upgrade pip
"$here/.venv/bin/python" -m pip install --quiet -r "$here/requirements.txt" -c "$here/constraints.txt"
"$here/.venv/bin/python" -m pip check
echo "peers installed in $here/.venv"
