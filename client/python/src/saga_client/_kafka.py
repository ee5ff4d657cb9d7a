"""The confluent_kafka clients of a participant or starter, with the
library's defaults (the C library's, docs/client.md "Kafka settings":
manual offsets, idempotent producer, acks=all, Nagle off, linger.ms 0,
fetch.wait.max.ms 10); the caller's properties win, each going to the
client it is for (a consumer property to the consumer only)."""

from .wire import SagaError

# librdkafka warns about a property of the other kind of client, and
# confluent_kafka refuses a callback of the other kind: the caller's
# properties of one kind go to that client only. The names are librdkafka's
# consumer-only (C/P column "C") and producer-only ("P") properties
# (CONFIGURATION.md, global and topic), aliases included, and
# confluent_kafka's own callbacks; every other property goes to both.
_CONSUMER_ONLY = frozenset((
    "auto.commit.enable", "auto.commit.interval.ms", "auto.offset.reset",
    "check.crcs", "consume.callback.max.messages", "consume_cb",
    "coordinator.query.interval.ms", "enable.auto.commit",
    "enable.auto.offset.store", "enable.partition.eof",
    "fetch.error.backoff.ms", "fetch.max.bytes", "fetch.message.max.bytes",
    "fetch.min.bytes", "fetch.queue.backoff.ms", "fetch.wait.max.ms",
    "group.id", "group.instance.id", "group.protocol",
    "group.protocol.type", "group.remote.assignor", "heartbeat.interval.ms",
    "isolation.level", "max.partition.fetch.bytes", "max.poll.interval.ms",
    "offset.store.method", "offset.store.path",
    "offset.store.sync.interval.ms", "offset_commit_cb",
    "partition.assignment.strategy", "queued.max.messages.kbytes",
    "queued.min.messages", "rebalance_cb", "session.timeout.ms",
    "on_commit"))
_PRODUCER_ONLY = frozenset((
    "acks", "batch.num.messages", "batch.size", "compression.codec",
    "compression.level", "compression.type", "delivery.report.only.error",
    "delivery.timeout.ms", "dr_cb", "dr_msg_cb", "enable.gapless.guarantee",
    "enable.idempotence", "linger.ms", "message.send.max.retries",
    "message.timeout.ms", "msg_order_cmp", "partitioner", "partitioner_cb",
    "produce.offset.report", "queue.buffering.backpressure.threshold",
    "queue.buffering.max.kbytes", "queue.buffering.max.messages",
    "queue.buffering.max.ms", "queuing.strategy", "request.required.acks",
    "request.timeout.ms", "retries", "sticky.partitioning.linger.ms",
    "transaction.timeout.ms", "transactional.id", "on_delivery"))


def _without(props, names):
    return {k: v for k, v in props.items() if k not in names}


def check_config(kafka_config):
    """The caller's kafka_config as a new dict: None is empty. Raises
    SagaError(SAGA_EINVAL) when it is not a dict."""
    if kafka_config is None:
        return {}
    if not isinstance(kafka_config, dict):
        raise SagaError("SAGA_EINVAL", "kafka_config is a dict of librdkafka "
                        "properties, not "
                        f"{type(kafka_config).__name__}")
    return dict(kafka_config)


def make_clients(bootstrap_servers, consumer_defaults, extra):
    """(Consumer, Producer) for bootstrap_servers. Raises
    SagaError(SAGA_EKAFKA) saying why librdkafka refused them, SAGA_EINVAL
    when extra (the caller's kafka_config) is not a dict."""
    from confluent_kafka import Consumer, Producer
    extra = check_config(extra)
    base = {"bootstrap.servers": bootstrap_servers,
            "socket.nagle.disable": True}
    consumer = None
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
        if consumer is not None:  # the producer was refused: no leak
            try:
                consumer.close()
            except Exception:  # the refusal is what the caller needs
                pass
        raise SagaError("SAGA_EKAFKA",
                        f"could not create the Kafka clients: {e}") from e
    return consumer, producer


def producer_max_bytes(kafka_config):
    """The producer's message.max.bytes: the caller's, else librdkafka's
    default of 1000000."""
    try:
        return int(kafka_config.get("message.max.bytes", 1000000))
    except (TypeError, ValueError):
        return 1000000


def record_size(key, value, headers):
    """A record's size as the C library reckons it against the producer's
    message.max.bytes (client/kafka_limits.h): its framing, key, value, and
    each header's name and value, every varint at its largest."""
    return 36 + len(value or b"") + len(key or b"") + sum(
        10 + len(k.encode()) + len(v or b"") for k, v in headers)
