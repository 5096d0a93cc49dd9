"""Engines for tests: the shared servers on loopback, and private instances to kill.

Shared engines are found at their usual loopback ports (or the URLs in the environment
variables below). When one is missing, its tests skip with a message saying how to start
it; under ``CI=true`` they fail instead, so a CI run can never pass by skipping.

Private instances (:class:`RedisServer`) run on a free loopback port with their files in a
temporary directory, so fault tests can kill and restart them without disturbing anyone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, NoReturn, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

REDIS_URL = os.environ.get("MICROHIVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
"""The shared Redis the contract suite and most Redis tests use."""

NATS_URL = os.environ.get("MICROHIVE_TEST_NATS_URL", "nats://127.0.0.1:4222")
"""The shared NATS server (with JetStream) the contract suite and most NATS tests use."""

KAFKA_URL = os.environ.get("MICROHIVE_TEST_KAFKA_URL", "kafka://127.0.0.1:9092")
"""The shared Kafka-protocol broker (Tansu) the contract suite and the Kafka tests use."""

KAFKA_TEST_OPTIONS = {"session_timeout": 2, "heartbeat_interval": 0.2, "rebalance_timeout": 2}
"""Small group timeouts: a new consumer group forms in about a second instead of ten."""

HOW_TO_START = {
    "redis": "start one with `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 "
    '--save "" --appendonly no` (Debian: `apt-get install -y redis-server`), or set '
    "MICROHIVE_TEST_REDIS_URL",
    "nats": "start one with `nats-server -a 127.0.0.1 -p 4222 -js -sd /tmp/nats &` (Debian: "
    "`apt-get install -y nats-server`), or set MICROHIVE_TEST_NATS_URL",
    "kafka": "start Tansu (a Kafka-protocol broker) with `ENGINES=kafka scripts/services.sh up`, "
    "or set MICROHIVE_TEST_KAFKA_URL",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def unavailable(message: str) -> NoReturn:
    """Fail under CI, skip otherwise: a CI run can never pass by skipping."""
    if in_ci():
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def missing(engine: str, where: str) -> NoReturn:
    """The engine is not reachable: fail or skip, saying how to get it."""
    unavailable(f"{engine} is not reachable at {where}: {HOW_TO_START.get(engine, '')}")


def require_redis(url: str = REDIS_URL) -> str:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if not reachable(host, port):
        missing("redis", f"{host}:{port}")
    return url


def require_program(name: str, package: str = "redis-server") -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"program {name!r} is not installed (Debian: apt-get install -y {package})")
    return path


def with_query(url: str, **options: Any) -> str:
    """``url`` with query options added (or replaced)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update({key: str(value) for key, value in options.items()})
    return urlunsplit(parts._replace(query=urlencode(query)))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key starting with ``prefix`` (a test's namespace)."""
    import redis.asyncio as aioredis

    from microhive.transports.redis.options import DEFAULTS

    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in DEFAULTS]
    client = aioredis.Redis.from_url(urlunsplit(parts._replace(query=urlencode(query))))
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
    finally:
        await client.aclose()


class PrivateServer:
    """A server process of a test's own on a free loopback port, its files in ``directory``:
    free to SIGKILL (:meth:`kill`, a crash) or stop, and to start again on the same port and
    files. Subclasses say how to run it (:meth:`arguments`) and where it logs."""

    name = "server"
    log_name = "server.log"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.directory / self.log_name

    def arguments(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 15.0) -> None:
        self.process = subprocess.Popen(
            self.arguments(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not reachable("127.0.0.1", self.port, 0.2):
            if self.process.poll() is not None:
                tail = self.log.read_text()[-2000:] if self.log.exists() else ""
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not listen on {self.port} in {timeout} s")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed but what was fsynced."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisServer(PrivateServer):
    """A private ``redis-server``.

    ``appendonly=True`` turns on the append-only file with ``appendfsync always``, so what
    the server acknowledged survives :meth:`kill` and :meth:`start` again.
    """

    name, log_name = "redis-server", "redis.log"

    def __init__(
        self,
        directory: Path,
        *,
        appendonly: bool = False,
        password: str | None = None,
        users: list[str] | None = None,
        tls: dict[str, str] | None = None,
    ) -> None:
        super().__init__(directory)
        self.program = require_program("redis-server")
        self.appendonly = appendonly
        self.password = password
        self.users = users or []
        self.tls = tls

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    def arguments(self) -> list[str]:
        args = [
            self.program,
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.log),
        ]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port)]
            args += ["--tls-cert-file", self.tls["cert"], "--tls-key-file", self.tls["key"]]
            args += ["--tls-ca-cert-file", self.tls["ca"], "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        if self.users:  # ACL rules, one user per line ("app on >password ~keys:* +@all")
            acl = self.directory / "users.acl"
            acl.write_text("".join(f"user {user}\n" for user in self.users))
            args += ["--aclfile", str(acl)]
        return args

    def start(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        super().start(timeout)
        if self.appendonly:
            self._wait_loaded(deadline)

    def _wait_loaded(self, deadline: float) -> None:
        """After a restart the server answers LOADING until it replayed the AOF."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password)
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.BusyLoadingError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()


def make_certificates(directory: Path) -> dict[str, str]:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl)."""
    openssl = require_program("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (
        directory / name for name in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt")
    )
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(key), "-out", str(csr))  # fmt: skip
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    for path in (ca_key, key):
        with contextlib.suppress(OSError):
            path.chmod(0o600)
    return {"ca": str(ca), "cert": str(cert), "key": str(key)}


# -- NATS ----------------------------------------------------------------------------------


def require_nats(url: str = NATS_URL) -> str:
    from microhive.transports.nats.options import parse

    server = parse(url).servers[0]
    host, port = server.split("://", 1)[1].rsplit(":", 1)
    if not reachable(host.strip("[]"), int(port)):
        missing("nats", f"{host}:{port}")
    return url


async def delete_nats_prefix(url: str, prefix: str) -> None:
    """Delete every stream named ``<prefix>_...`` (a test's queues and dead letters)."""
    import nats

    from microhive.transports.nats.options import parse

    options = parse(url)
    client = await nats.connect(
        list(options.servers),
        user=options.user,
        password=options.password,
        token=options.token,
        tls=options.ssl_context(),
        allow_reconnect=False,
    )
    try:
        js = client.jetstream()
        names: list[str] = []
        offset = 0
        while True:
            reply = await client.request(
                "$JS.API.STREAM.NAMES", f'{{"offset": {offset}}}'.encode(), timeout=5
            )
            import json

            page = json.loads(reply.data)
            found = page.get("streams") or []
            names += [name for name in found if name.startswith((f"{prefix}_", f"KV_{prefix}_"))]
            offset += len(found)
            if not found or offset >= int(page.get("total", 0)):
                break
        for name in names:
            with contextlib.suppress(Exception):
                await js.delete_stream(name)
    finally:
        await client.close()


class NatsServer(PrivateServer):
    """A private ``nats-server`` with JetStream, its store in ``directory`` (JetStream
    recovers from its files after a :meth:`kill`).

    ``users`` maps user names to passwords; ``tls`` is what :func:`make_certificates` made.
    """

    name, log_name = "nats-server", "nats.log"

    def __init__(
        self,
        directory: Path,
        *,
        users: dict[str, str] | None = None,
        token: str | None = None,
        tls: dict[str, str] | None = None,
    ) -> None:
        super().__init__(directory)
        self.program = require_program("nats-server", "nats-server")
        self.users = users or {}
        self.token = token
        self.tls = tls

    @property
    def url(self) -> str:
        return f"{'tls' if self.tls else 'nats'}://127.0.0.1:{self.port}"

    def config(self) -> Path:
        lines = [
            "host: 127.0.0.1",
            f"port: {self.port}",
            f'jetstream {{ store_dir: "{self.directory / "store"}" }}',
        ]
        if self.users:
            entries = ", ".join(
                f'{{user: "{user}", password: "{password}"}}'
                for user, password in self.users.items()
            )
            lines.append(f"authorization {{ users: [{entries}] }}")
        elif self.token:
            lines.append(f'authorization {{ token: "{self.token}" }}')
        if self.tls:
            lines.append(
                f'tls {{ cert_file: "{self.tls["cert"]}", key_file: "{self.tls["key"]}", '
                f'ca_file: "{self.tls["ca"]}" }}'
            )
        path = self.directory / "nats.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def arguments(self) -> list[str]:
        return [self.program, "-c", str(self.config()), "-l", str(self.log)]


# -- Kafka ---------------------------------------------------------------------------------


def require_kafka(url: str = KAFKA_URL) -> str:
    from microhive.transports.kafka.options import parse

    host, port = parse(url).servers[0].rsplit(":", 1)
    if not reachable(host.strip("[]"), int(port)):
        missing("kafka", f"{host}:{port}")
    return url


async def delete_kafka_prefix(url: str, prefix: str) -> None:
    """Delete every topic named ``<prefix>.`` (a test's queues, delays and dead letters)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from microhive.transports.kafka.options import parse

    admin = AIOKafkaAdminClient(bootstrap_servers=parse(url).bootstrap)
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if name.startswith(f"{prefix}.")]
        if names:
            with contextlib.suppress(Exception):
                await admin.delete_topics(names)
    finally:
        await admin.close()
