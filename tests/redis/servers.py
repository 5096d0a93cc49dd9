"""Private Redis topologies for the connection tests: a server on a Unix socket, a master
with a replica watched by a Sentinel (free loopback ports, files in a temporary directory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from .. import engines


class UnixRedis(engines.RedisServer):
    """A private Redis that also listens on a Unix socket."""

    @property
    def socket(self) -> Path:
        return self.directory / "redis.sock"

    def arguments(self) -> list[str]:
        return [*super().arguments(), "--unixsocket", str(self.socket), "--unixsocketperm", "700"]


class Replica(engines.RedisServer):
    """A private Redis replicating ``master_port``."""

    def __init__(self, directory: Path, master_port: int) -> None:
        super().__init__(directory)
        self.master_port = master_port

    def arguments(self) -> list[str]:
        return [*super().arguments(), "--replicaof", "127.0.0.1", str(self.master_port)]


class Sentinel(engines.PrivateServer):
    """One ``redis-server --sentinel`` watching master ``name`` (quorum 1, quick failover)."""

    name, log_name = "sentinel", "sentinel.log"

    def __init__(self, directory: Path, name: str, master_port: int) -> None:
        super().__init__(directory)
        self.program = engines.require_program("redis-server")
        self.master = name
        self.config = directory / "sentinel.conf"
        self.config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {directory}\n"
            f"logfile {self.log}\n"
            f"sentinel monitor {name} 127.0.0.1 {master_port} 1\n"
            f"sentinel down-after-milliseconds {name} 500\n"
            f"sentinel failover-timeout {name} 5000\n"
        )

    def arguments(self) -> list[str]:
        return [self.program, str(self.config), "--sentinel"]

    def ask(self, *command: Any) -> Any:
        client = redis.Redis(host="127.0.0.1", port=self.port)
        try:
            return client.execute_command(*command)
        finally:
            client.close()

    def master_port(self) -> int:
        _, port = self.ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master)
        return int(port)
