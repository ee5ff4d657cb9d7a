"""The confluent_kafka clients of a participant or starter, with the
library's defaults (the C library's, docs/client.md "Kafka settings":
manual offsets, idempotent producer, acks=all, Nagle off, linger.ms 0,
fetch.wait.max.ms 10); the caller's properties win, each going to the
client it is for (a consumer property to the consumer only)."""

from .wire import SagaError

# librdkafka warns about a property of the other kind of client: the
# caller's properties of one kind go to that client only.
_CONSUMER_ONLY = ("fetch.", "auto.offset.reset", "session.timeout.ms",
                  "heartbeat.interval.ms", "group.", "max.poll.interval.ms",
                  "enable.auto.", "auto.commit.", "isolation.level",
                  "partition.assignment.strategy", "enable.partition.eof",
                  "check.crcs", "queued.", "coordinator.query.interval.ms")
_PRODUCER_ONLY = ("linger.ms", "acks", "request.required.acks",
                  "enable.idempotence", "batch.", "compression.", "queue.",
                  "message.send.max.retries", "retries",
                  "delivery.timeout.ms", "message.timeout.ms",
                  "transaction", "enable.gapless.guarantee",
                  "sticky.partitioning.linger.ms", "partitioner",
                  "request.timeout.ms")


def _without(props, prefixes):
    return {k: v for k, v in props.items() if not k.startswith(prefixes)}


def make_clients(bootstrap_servers, consumer_defaults, extra):
    """(Consumer, Producer) for bootstrap_servers. Raises
    SagaError(SAGA_EKAFKA) saying why librdkafka refused them."""
    from confluent_kafka import Consumer, Producer
    base = {"bootstrap.servers": bootstrap_servers,
            "socket.nagle.disable": True}
    try:
        consumer = Consumer({**base, "enable.auto.commit": False,
                             "enable.partition.eof": False,
                             "fetch.wait.max.ms": 10,
                             **consumer_defaults,
                             **_without(extra, _PRODUCER_ONLY)})
        producer = Producer({**base, "enable.idempotence": True,
                             "acks": "all", "linger.ms": 0,
                             **_without(extra, _CONSUMER_ONLY)})
    except Exception as e:
        raise SagaError("SAGA_EKAFKA",
                        f"could not create the Kafka clients: {e}") from e
    return consumer, producer
