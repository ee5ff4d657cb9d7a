"""The confluent_kafka clients of a participant or starter, with the
library's defaults (the C library's: manual offsets, idempotent producer,
acks=all, Nagle off); the caller's properties win."""

from .wire import SagaError


def make_clients(bootstrap_servers, consumer_defaults, extra):
    """(Consumer, Producer) for bootstrap_servers. Raises
    SagaError(SAGA_EKAFKA) saying why librdkafka refused them."""
    from confluent_kafka import Consumer, Producer
    base = {"bootstrap.servers": bootstrap_servers,
            "socket.nagle.disable": True}
    try:
        consumer = Consumer({**base, "enable.auto.commit": False,
                             "enable.partition.eof": False,
                             **consumer_defaults, **extra})
        producer = Producer({**base, "enable.idempotence": True,
                             "acks": "all", **extra})
    except Exception as e:
        raise SagaError("SAGA_EKAFKA",
                        f"could not create the Kafka clients: {e}") from e
    return consumer, producer
