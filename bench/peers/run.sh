#!/bin/sh
# One command, one table: microhive beside its peers (see bench/README.md, "Peers").
#   bench/peers/run.sh [--engines redis,amqp,nats] [--count 20000] [--peers microhive,celery]
# MICROHIVE_PYTHON: the project's interpreter (default: <checkout>/.venv/bin/python);
# PEERS_PYTHON: the peers' interpreter (default: bench/peers/.venv/bin/python, made by setup.sh).
here=$(cd "$(dirname "$0")" && pwd)
python=${PEERS_PYTHON:-$here/.venv/bin/python}
[ -x "$python" ] || { echo "run bench/peers/setup.sh first ($python is missing)" >&2; exit 2; }
exec "$python" "$here/run.py" "$@"
