"""The Redis transport: ``redis://``, ``rediss://`` (TLS), ``redis+unix://`` (a Unix socket) and
``redis+sentinel://`` (the master Sentinel names), on redis-py and hiredis.

Signals and call replies travel over PUBLISH/SUBSCRIBE, queues are Redis Streams with
consumer groups. docs/transports/redis.md maps every concept to keys and commands.
Install with ``pip install microhive[redis]``.
"""

from .broker import RedisBroker
from .bus import RedisBus
from .consumer import RedisConsumer, RedisDelivery
from .options import RedisOptions, parse

__all__ = ["RedisBroker", "RedisBus", "RedisConsumer", "RedisDelivery", "RedisOptions", "parse"]
