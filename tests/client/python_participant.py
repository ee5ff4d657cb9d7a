#!/usr/bin/python3
"""A participant written without the C library, from docs/protocol.md only:
Debian's python3-confluent-kafka and python3-protobuf, message classes built
from the descriptor set of schemas/saga.proto. Handles one command, replies,
commits after the reply's delivery report, exits 0.

usage: python_participant.py BOOTSTRAP DESCRIPTOR_SET COMMAND_TOPIC GROUP"""
import sys
import time

try:
    from confluent_kafka import Consumer, Producer
    from google.protobuf import descriptor_pb2, message_factory
except ImportError as e:
    print(f"skipped: {e}", file=sys.stderr)
    sys.exit(77)

bootstrap, desc_path, topic, group = sys.argv[1:5]
fds = descriptor_pb2.FileDescriptorSet()
with open(desc_path, "rb") as f:
    fds.ParseFromString(f.read())
classes = message_factory.GetMessages(list(fds.file))
Command = classes["saga.v1.Command"]
Reply = classes["saga.v1.Reply"]
ACTIONS = {1: "DO", 2: "COMPENSATE"}

consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "enable.auto.commit": False,
                     "auto.offset.reset": "earliest",
                     "session.timeout.ms": 6000, "fetch.wait.max.ms": 5})
producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1,
                     "enable.idempotence": True})
consumer.subscribe([topic])
deadline = time.time() + 60
while time.time() < deadline:
    m = consumer.poll(0.1)
    if m is None or m.error():
        continue
    headers = dict(m.headers() or [])
    if headers.get("saga-message-type") != b"saga.v1.Command":
        print("refused: wrong saga-message-type", file=sys.stderr)
        sys.exit(1)
    if len(m.value() or b"") > 1 << 20:
        sys.exit(1)
    cmd = Command()
    cmd.ParseFromString(m.value())
    key = f"{cmd.saga_id}/{cmd.step}/{ACTIONS[cmd.action]}/{cmd.attempt}"
    if key != cmd.idempotency_key or not cmd.reply_topic:
        print(f"refused: idempotency key {cmd.idempotency_key!r}",
              file=sys.stderr)
        sys.exit(1)
    reply = Reply(saga_id=cmd.saga_id, step=cmd.step, action=cmd.action,
                  attempt=cmd.attempt, idempotency_key=cmd.idempotency_key,
                  outcome=1, payload=b"reserved " + cmd.payload)
    out_headers = [
        ("saga-message-type", b"saga.v1.Reply"),
        ("saga-id", cmd.saga_id.encode()),
        ("correlation-id", headers.get("correlation-id",
                                       cmd.saga_id.encode())),
        ("causation-id", cmd.idempotency_key.encode()),
    ]
    if "traceparent" in headers:
        out_headers.append(("traceparent", headers["traceparent"]))
    reports = []
    producer.produce(cmd.reply_topic, key=cmd.saga_id.encode(),
                     value=reply.SerializeToString(), headers=out_headers,
                     on_delivery=lambda err, msg: reports.append(err))
    producer.flush(30)
    if reports != [None]:
        print(f"reply not delivered: {reports}", file=sys.stderr)
        sys.exit(1)
    consumer.commit(message=m, asynchronous=False)  # after the reply
    consumer.close()
    sys.exit(0)
print("no command within 60 s", file=sys.stderr)
sys.exit(2)
