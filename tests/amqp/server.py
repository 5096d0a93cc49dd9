"""RabbitMQ for tests: the shared server on loopback, and private nodes to kill and restart.

The shared server is found at ``MICROHIVE_TEST_AMQP_URL`` (default
``amqp://guest:guest@127.0.0.1:5672/``). When it is missing its tests skip with a message
saying how to start it; under ``CI=true`` they fail instead, so a CI run cannot pass by
skipping. Each test run gets a virtual host of its own (made with ``rabbitmqctl`` when it is
available, deleted at exit), and each test a name prefix inside it.

:class:`RabbitNode` runs a private node (its own node name, loopback ports, data directory)
so that fault tests can SIGKILL and restart it without disturbing the shared server.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from microhive.envelope import new_id

from ..engines import free_port, reachable
from ..engines import unavailable as missing

AMQP_URL = os.environ.get("MICROHIVE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

HOW_TO_START = (
    "start one with `rabbitmq-server -detached` and wait for `rabbitmqctl await_startup` "
    "(Debian: `apt-get install -y rabbitmq-server`), or set MICROHIVE_TEST_AMQP_URL"
)

_VHOSTS: dict[str, str] = {}


def require_amqp() -> str:
    """The shared server's URL with this run's virtual host; skips (fails in CI) if down."""
    parts = urlsplit(AMQP_URL)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    if not reachable(host, port):
        missing(f"RabbitMQ is not reachable at {host}:{port}: {HOW_TO_START}")
    return url_with_vhost(AMQP_URL, test_vhost())


def url_with_vhost(url: str, vhost: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


def rabbitmqctl() -> list[str] | None:
    """How to run rabbitmqctl against the shared node, or None."""
    program = shutil.which("rabbitmqctl")
    if program is None or urlsplit(AMQP_URL).hostname not in ("127.0.0.1", "localhost"):
        return None
    return [program]


def test_vhost() -> str:
    """A virtual host for this test run: created once, deleted at exit.

    Without rabbitmqctl (a remote server) the URL's own virtual host is used; per-test name
    prefixes still keep tests apart.
    """
    if "run" in _VHOSTS:
        return _VHOSTS["run"]
    parts = urlsplit(AMQP_URL)
    fallback = parts.path.lstrip("/") or "/"
    if not reachable(parts.hostname or "127.0.0.1", parts.port or 5672):
        return fallback  # the tests skip (or fail in CI); try again next time
    command = rabbitmqctl()
    vhost = f"microhive-test-{new_id()[:8]}"
    if command is not None:
        try:
            subprocess.run(
                [*command, "add_vhost", vhost], check=True, capture_output=True, timeout=60
            )
            subprocess.run(
                [*command, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
                check=True,
                capture_output=True,
                timeout=60,
            )
        except (OSError, subprocess.SubprocessError):
            vhost = fallback
        else:
            atexit.register(_delete_vhost, command, vhost)
    else:
        vhost = fallback
    _VHOSTS["run"] = vhost
    return vhost


def _delete_vhost(command: list[str], vhost: str) -> None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            [*command, "delete_vhost", vhost], capture_output=True, timeout=60, check=False
        )


def contract_url(namespace: str) -> str:
    """A URL for one contract test: the run's virtual host and a prefix of its own."""
    parts = urlsplit(AMQP_URL)
    path = "/" + quote(test_vhost(), safe="")
    return urlunsplit(parts._replace(path=path, query=f"prefix={namespace}."))


def _as_rabbitmq(command: list[str]) -> list[str]:
    """Run as the rabbitmq user when we are root (the node's files and Erlang cookie)."""
    if os.geteuid() == 0 and shutil.which("runuser"):
        return ["runuser", "-u", "rabbitmq", "--", "env", "HOME=/var/lib/rabbitmq", *command]
    return command


def give_to_rabbitmq(directory: Path) -> None:
    """The node runs as the rabbitmq user when we are root: give it the directory."""
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(directory)], check=True)


class RabbitNode:
    """A private RabbitMQ node on free loopback ports, its data in ``directory``.

    :meth:`kill` is a crash (SIGKILL of the whole node): what RabbitMQ confirmed is on disk
    and comes back with :meth:`start`.
    """

    SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
    CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"

    def __init__(self, directory: Path) -> None:
        for program in (self.SERVER, self.CTL):
            if not os.path.exists(program):
                missing(
                    f"{program} is not installed, which private-node fault tests need "
                    "(Debian: apt-get install -y rabbitmq-server)"
                )
        self.directory = directory
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"microhive-{new_id()[:8]}@localhost"
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "mnesia").mkdir(exist_ok=True)
        (directory / "log").mkdir(exist_ok=True)
        (directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            "log.console = false\n"
        )
        (directory / "rabbitmq-env.conf").write_text("")
        (directory / "enabled_plugins").write_text("[].\n")
        give_to_rabbitmq(directory)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def environment(self) -> dict[str, str]:
        d = self.directory
        loopback = "-kernel inet_dist_use_interface {127,0,0,1}"
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(d / "node.pid"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": loopback,
            "RABBITMQ_CTL_ERL_ARGS": loopback,
        }

    def start(self, timeout: float = 60.0) -> None:
        out = open(self.directory / "server.out", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            _as_rabbitmq([self.SERVER]),
            env=self.environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                tail = (self.directory / "server.out").read_text(errors="replace")[-3000:]
                raise RuntimeError(
                    f"rabbitmq-server exited with {self.process.returncode}:\n{tail}"
                )
            if reachable("127.0.0.1", self.port, 0.2) and self._started():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"private RabbitMQ node did not start in {timeout} s")
            time.sleep(0.2)

    def add_user(self, user: str, password: str) -> None:
        """A user with every permission on the default virtual host."""
        for command in (
            ["add_user", user, password],
            ["set_permissions", "-p", "/", user, ".*", ".*", ".*"],
        ):
            subprocess.run(
                _as_rabbitmq([self.CTL, "-n", self.node, *command]),
                env=self.environment(),
                capture_output=True,
                timeout=60,
                check=True,
            )

    def _started(self) -> bool:
        result = subprocess.run(
            _as_rabbitmq([self.CTL, "-n", self.node, "await_startup", "--timeout", "1"]),
            env=self.environment(),
            capture_output=True,
            timeout=60,
            check=False,
        )
        return result.returncode == 0

    def kill(self) -> None:
        """SIGKILL the node's whole process group: a crash."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        self.process = None
        deadline = time.monotonic() + 10
        while reachable("127.0.0.1", self.port, 0.1) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def __enter__(self) -> RabbitNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
