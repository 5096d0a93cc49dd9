# ruff: noqa: RUF001 - the talk's comments are in Russian, Cyrillic letters and all
"""The seed talk's own code (shared/seeds/000_*), copied with only its imports changed.

``AGENTS`` is the talk's agents module: its slides show it in parts, some lines folded
(``+--- 4 строки: ...``); the folded lines are filled in the obvious way and marked. ``BUSES``
is the talk's "SignalBus" and "QueueBroker" samples, with ``microagent`` replaced by
``microhive`` in the imports. The talk's Redis client, ``aioredis.create_redis`` (aioredis 1.x,
long gone from PyPI), is given by a small stand-in module on redis-py: it belongs to the
example, not to microhive. The agents run unchanged on memory, Redis, RabbitMQ and NATS.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from microhive import QueueBroker, SignalBus, private_catalog
from microhive.envelope import new_id
from microhive.testing import eventually

from .. import engines
from ..amqp import server as amqp_server

AGENTS = """
import asyncio
import os

import aioredis

from microhive import MicroAgent, consumer, cron, load_stuff, on, periodic, receiver

cur_dir = os.path.dirname(os.path.realpath(__file__))
signals, queues = load_stuff('file://' + os.path.join(cur_dir, 'signals.json'))


class PostAgent(MicroAgent):
    counter = 0

    @receiver(signals.post)
    async def post_handler(self, post, user, **kw):
        self.counter += 1
        self.log.info('Catch post: %d %s', self.counter, post)
        # Отправляем данные поста в очередь 'post'
        await self.broker.post.send(
            {'post': post, 'author': user, 'num': self.counter})
        await self.bus.new_post.send('post_agent', num=self.counter)


class UserAgent(MicroAgent):
    @on('pre_start') # Вызывается перед подключение обработчиков к шине / брокеру
    async def setup(self):
        self.redis = await aioredis.create_redis('redis://localhost:6379/7')
        self.users = set(await self.redis.smembers('users'))

    @on('post_stop') # Вызывается после отключения обработчиков от шины / брокера
    async def shutdown(self):
        self.redis.close()
        await self.redis.wait_closed()

    @periodic(period=1, timeout=1) # Раз в секунду проверяю данные в редисе, timeout - 1 сек
    async def users_watcher(self):
        users = set(await self.redis.smembers('users'))

        for user in users - self.users:
            await self.bus.user_enter.send('user_agent', name=user) # Отправляем сигнал 'user_enter'
            self.log.info('User enter: %s', user)

        for user in self.users - users:
            await self.bus.user_exit.send('user_agent', name=user) # Отправляем сигнал 'user_exit'
            self.log.info('User exit: %s', user)

        self.users = users

    @on('error_users_watcher') # Вызывается при исключении в методе users_watcher
    async def err_sender(self, *args, **kwargs):
        self.log.error('Error %s %s', args, kwargs)

    @receiver(signals.check_user) # Принимаем сигнал 'check_user' и отправляем ответ
    async def check_user(self, user, **kw):
        return user in self.users


class MentionAgent(MicroAgent):
    @on('pre_start')
    async def setup(self):
        self.users = set()  # (folded in the talk)

    @receiver(signals.user_enter, signals.user_exit, timeout=10) # Подписываемся сразу на 2 сигнала
    async def update_users(self, signal, name, **kw):
        self.log.info('Update users: %s', name)

        if signal == signals.user_enter: # signal - полученный сигнал
            self.users.add(name)

        if signal == signals.user_exit:
            self.users.remove(name)

    # Принимаем данные из очереди 'post'
    # autoack - автоматически удаляем/помечаем обработанным пакет из очереди
    @consumer(queues.post, autoack=True)
    async def main_handler(self, *args, **data):
        if data['author'] not in self.users:
            # Отправляем сигнал 'check_user' и ожидаем первого ответа
            resp = await self.bus.check_user.call('mention_agent', user=data['author'])

            if resp:
                self.users.add(data['author'])
            else:
                raise Exception('Unknown user')

        for name in self.users:
            if f'@{name}' in data['post']:
                # Отправляем данные уведомления в очередь 'email'
                await self.broker.email.send({'user': name, 'post': data['post']})


class StatsAgent(MicroAgent):
    posts_qty = [0, 0]

    @receiver(signals.new_post)  # (folded in the talk)
    async def count_post(self, num, **kw):
        self.posts_qty[0] += 1

    @cron('0 */4 * * *', timeout=30) # Раз в 4 часа создаем отчет с собранной статистикой
    async def send_report(self):
        text = 'Get %d new posts by 4 hours' % (self.posts_qty[0] - self.posts_qty[1])
        self.posts_qty[1] = self.posts_qty[0]
"""

BUSES = """
import asyncio
import os

from microhive import load_stuff
from microhive.tools.aioredis import AIORedisSignalBus, AIORedisBroker # aioredis based backend
from microhive.tools.pulsar import RedisSignalBus # pulsar based backend
from microhive.tools.amqp import AMQPBroker
from microhive.tools.kafka import KafkaBroker

from agents import UserAgent, MentionAgent

# Загружаем доступные сигналы и очереди из файла
cur_dir = os.path.dirname(os.path.realpath(__file__))
signals, queues = load_stuff('file://' + os.path.join(cur_dir, 'signals.json'))

async def main():
    # Инициализируем шины с разными бекендами
    aioredis_bus = AIORedisSignalBus('redis://localhost/7', prefix='MYAPP')
    pulsar_bus = RedisSignalBus('redis://localhost/7', prefix='MYAPP')

    # Используем шину для отправки сигналов независимо от микроагента
    await pulsar_bus.started.send('user_agent')

    agent = UserAgent(bus=aioredis_bus) # Инициализируем микроагент и ...
    await agent.start() # ... запускаем

    # Инициализируем брокеры с разными бекендами
    aioredis_broker = AIORedisBroker('redis://localhost/7')
    amqp_broker = AMQPBroker('amqp://guest:guest@localhost:5672/')
    kafka_broker = KafkaBroker('kafka://localhost:9092')

    # Используем шину для отправки сообщений независимо от микроагента
    await aioredis_broker.started.send({'service_name': 'my_app'})

    mention = MentionAgent(bus=aioredis_bus, broker=aioredis_broker)
    await mention.start() # запускаем
    return [agent, mention], [aioredis_bus, pulsar_bus, aioredis_broker, amqp_broker, kafka_broker]
"""

AIOREDIS = """
# A stand-in for aioredis 1.x's create_redis, the seed's Redis client, on redis-py.
import redis.asyncio


class _Redis:
    def __init__(self, url):
        self.client = redis.asyncio.Redis.from_url(url, decode_responses=True)

    async def smembers(self, key):
        return await self.client.smembers(key)

    def close(self):
        pass

    async def wait_closed(self):
        await self.client.aclose()


async def create_redis(url):
    return _Redis(url)
"""

CATALOG = {
    "version": 1,
    "signals": [
        {"name": "post", "providing_args": ["post", "user"]},
        {"name": "user_enter", "providing_args": ["name"]},
        {"name": "user_exit", "providing_args": ["name"]},
        {"name": "new_post", "providing_args": ["num"]},
        {"name": "check_user", "providing_args": ["user"]},
        {"name": "started", "providing_args": []},
    ],
    "queues": [{"name": "post"}, {"name": "email"}, {"name": "started"}],
}
"""The talk's signals.json (its "signals" part is folded on the queue slide); the samples
also use a ``started`` signal and queue the shown files do not list."""


@pytest.fixture
def seed(tmp_path: Path) -> Iterator[dict[str, ModuleType]]:
    """The talk's files in a folder of their own, imported as the talk's program would."""
    (tmp_path / "signals.json").write_text(json.dumps(CATALOG))
    (tmp_path / "agents.py").write_text(AGENTS)
    (tmp_path / "main.py").write_text(BUSES)
    (tmp_path / "aioredis.py").write_text(AIOREDIS)
    sys.path.insert(0, str(tmp_path))
    try:
        with private_catalog("the seed talk"):
            yield {name: _load(tmp_path, name) for name in ("aioredis", "agents", "main")}
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("aioredis", "agents", "main"):
            sys.modules.pop(name, None)


def _load(folder: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _urls(engine: str) -> tuple[str, str]:
    namespace = f"seed{new_id()[:8]}"
    if engine == "memory":
        return f"memory://{namespace}", f"memory://{namespace}"
    if engine == "redis":
        url = engines.with_query(engines.require_redis(), prefix=f"{namespace}:")
        return url, url
    if engine == "amqp":
        amqp_server.require_amqp()
        url = amqp_server.contract_url(namespace)
        return url, url
    url = engines.with_query(engines.require_nats(), prefix=namespace)
    return url, url


async def _users(*names: str, remove: bool = False) -> None:
    client = redis_asyncio.Redis.from_url("redis://127.0.0.1:6379/7")
    try:
        if remove:
            await client.srem("users", *names)
        else:
            await client.sadd("users", *names)
    finally:
        await client.aclose()


@pytest.mark.parametrize("engine", ["memory", "redis", "amqp", "nats"])
async def test_the_talks_agents_run_unchanged(engine: str, seed: dict[str, ModuleType]) -> None:
    engines.require_redis()  # the talk's UserAgent reads its users from Redis db 7
    agents = seed["agents"]
    bus_url, broker_url = _urls(engine)
    bus, broker = SignalBus.from_url(bus_url), QueueBroker.from_url(broker_url)
    user = f"ann{new_id()[:6]}"
    started: list[Any] = []
    try:
        for agent in (
            agents.UserAgent(bus=bus),
            agents.MentionAgent(bus=bus, broker=broker),
            agents.PostAgent(bus=bus, broker=broker),
            agents.StatsAgent(bus=bus),
        ):
            await agent.start()
            started.append(agent)
        _, mentions, _, stats = started
        await _users(user)  # someone logs in: the periodic watcher sees it within a second
        await eventually(lambda: user in mentions.users, 30)
        assert await bus.check_user.call("web", user=user, timeout=10) is True

        await bus.post.send("web", post=f"hello @{user}", user=user)
        await eventually(lambda: _at_least(broker.email.length(), 1), 30)
        await eventually(lambda: stats.posts_qty[0] >= 1, 30)

        await _users(user, remove=True)  # and logs out again
        await eventually(lambda: user not in mentions.users, 30)
    finally:
        for agent in reversed(started):
            await agent.stop()
        await _users(user, remove=True)
        await bus.close()
        await broker.close()


async def test_the_talks_bus_and_broker_samples_run_unchanged(seed: dict[str, ModuleType]) -> None:
    """As written, on the URLs of the talk (Redis db 7 on localhost, RabbitMQ and Kafka)."""
    engines.require_redis()
    amqp_server.require_amqp()
    engines.require_kafka()
    agents, connections = await seed["main"].main()
    try:
        bus, _, aioredis_broker, amqp_broker, kafka_broker = connections
        assert agents[0].running and agents[1].running
        assert await aioredis_broker.started.length() >= 1
        await amqp_broker.connect()
        await kafka_broker.connect()
        assert await bus.check_user.call("test", user="nobody-" + new_id(), timeout=10) is False
    finally:
        for agent in reversed(agents):
            await agent.stop()
        for connection in connections:
            await connection.close()
        await _cleanup_redis_db7()


async def _cleanup_redis_db7() -> None:
    client = redis_asyncio.Redis.from_url("redis://127.0.0.1:6379/7")
    try:
        keys = [key async for key in client.scan_iter(match="microhive:queue:started*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def _at_least(length: Any, count: int) -> bool:
    return bool(await length >= count)
