"""What microhive's Kafka transport relies on in aiokafka beyond its documented API, checked
without a cluster. pyproject.toml bounds aiokafka below the next minor version (0.x may
break in a minor); when raising that bound, run these first: a failure names the module
of microhive/transports/kafka/ to adapt.
"""

from __future__ import annotations

import inspect
import io
import re

from aiokafka import AIOKafkaProducer
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.protocol import admin

UPGRADE = "aiokafka changed under microhive: check microhive/transports/kafka/{module} ({what})"


def _create_topics_versions() -> list[type]:
    names = [name for name in dir(admin) if re.fullmatch(r"CreateTopicsRequest_v\d+", name)]
    return [getattr(admin, name) for name in sorted(names)]


def test_create_topics_answers_with_the_raw_protocol_response() -> None:
    """topics.py reads ``response.topic_errors`` as (topic, error_code[, error_message])
    tuples, the protocol's CreateTopicsResponse that aiokafka returns as it is."""
    versions = _create_topics_versions()
    assert versions, UPGRADE.format(module="topics.py", what="no CreateTopicsRequest_v*")
    for request in versions:
        response = request.RESPONSE_TYPE
        fields = dict(zip(response.SCHEMA.names, response.SCHEMA.fields, strict=True))
        where = UPGRADE.format(module="topics.py", what=f"{response.__name__}.topic_errors")
        assert "topic_errors" in fields, where
        item = fields["topic_errors"].array_of.names
        assert item[:2] == ("topic", "error_code"), where
        assert len(item) == 2 or item[2] == "error_message", where
        values = {name: 0 for name in response.SCHEMA.names}
        values["topic_errors"] = [("t", 36, "exists")[: len(item)]]
        decoded = response.decode(io.BytesIO(response(**values).encode()))
        assert decoded.topic_errors[0][:2] == ("t", 36), where
    assert TopicAlreadyExistsError.errno == 36, UPGRADE.format(
        module="topics.py", what="TOPIC_ALREADY_EXISTS is no longer error 36"
    )


async def test_a_batch_built_by_hand_reports_when_it_is_full() -> None:
    """producer.py's Batcher fills ``create_batch()`` with ``append(key=, value=,
    timestamp=None, headers=)`` until it returns None, then ``send_batch(batch, topic,
    partition=)``."""
    where = UPGRADE.format(module="producer.py", what="create_batch / append / send_batch")
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", max_batch_size=1000)
    try:
        batch = producer.create_batch()
        appended = 0
        while batch.append(key=None, value=b"x" * 100, timestamp=None, headers=[("h", b"v")]):
            appended += 1
            assert appended < 100, where + ": append() never says the batch is full"
        assert 0 < appended == batch.record_count(), where
        parameters = inspect.signature(producer.send_batch).parameters
        assert list(parameters)[:2] == ["batch", "topic"] and "partition" in parameters, where
    finally:
        await producer.stop()


def test_keys_land_where_the_java_client_puts_them() -> None:
    """producer.py picks partitions with DefaultPartitioner; docs/transports/kafka.md
    promises the Java client's placement (murmur2). Vectors from Kafka's UtilsTest."""
    vectors = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    partitioner = DefaultPartitioner()
    partitions = list(range(7))
    for key, java_hash in vectors.items():
        expected = (java_hash & 0x7FFFFFFF) % len(partitions)
        assert partitioner(key, partitions, partitions) == expected, UPGRADE.format(
            module="producer.py", what=f"the partition of key {key!r}"
        )
