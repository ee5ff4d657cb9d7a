"""Stand-ins for confluent_kafka's Consumer and Producer, so the
participant's protocol logic runs without a broker: messages are handed in
by the test, produced messages are kept, and delivery reports come on the
producer's poll() as Kafka would give them (success, or the error the test
sets)."""

from confluent_kafka import TopicPartition


class FakeMessage:
    def __init__(self, topic, partition, offset, value, headers, key=None):
        self._t, self._p, self._o = topic, partition, offset
        self._v, self._h, self._k = value, headers, key

    def topic(self):
        return self._t

    def partition(self):
        return self._p

    def offset(self):
        return self._o

    def value(self):
        return self._v

    def headers(self):
        return self._h

    def key(self):
        return self._k

    def error(self):
        return None


class FakeConsumer:
    def __init__(self):
        self.inbox = []
        self.commits = []  # (topic, partition, offset) in commit order
        self.subscribed = None
        self.on_assign = None
        self.closed = False

    def subscribe(self, topics, on_assign=None, on_revoke=None, on_lost=None):
        self.subscribed = list(topics)
        self.on_assign, self.on_revoke = on_assign, on_revoke

    def assign_all(self, partitions):
        self.on_assign(self, [TopicPartition(t, p) for t, p in partitions])

    def revoke(self, partitions):
        self.on_revoke(self, [TopicPartition(t, p) for t, p in partitions])

    def poll(self, timeout):
        return self.inbox.pop(0) if self.inbox else None

    def commit(self, offsets=None, asynchronous=True, message=None):
        for tp in offsets:
            self.commits.append((tp.topic, tp.partition, tp.offset))

    def close(self):
        self.closed = True

    # what a group-less reader asks (saga_client.Starter)
    partitions = {}  # partition -> end offset; empty = no such topic yet
    assigned = None

    def list_topics(self, topic, timeout=None):
        parts = {p: None for p in self.partitions}
        t = type("T", (), {"partitions": parts, "error": None})()
        return type("M", (), {"topics": {topic: t} if parts else {}})()

    def get_watermark_offsets(self, tp, timeout=None):
        return 0, self.partitions[tp.partition]

    def assign(self, partitions):
        self.assigned = [(tp.topic, tp.partition, tp.offset)
                         for tp in partitions]


class FakeProducer:
    def __init__(self):
        self.produced = []   # dicts: topic, key, value, headers
        self._pending = []
        self.fail_next = None  # an error for the next delivery report
        self.before_produce = None  # called with the topic on produce

    def produce(self, topic, key=None, value=None, headers=None,
                on_delivery=None):
        if self.before_produce:
            self.before_produce(topic)
        self.produced.append({"topic": topic, "key": key, "value": value,
                              "headers": list(headers or [])})
        err, self.fail_next = self.fail_next, None
        self._pending.append((on_delivery, err))

    def poll(self, timeout=0):
        pending, self._pending = self._pending, []
        for cb, err in pending:
            cb(err, None)
        return len(pending)

    def flush(self, timeout=None):
        self.poll()
        return 0


def headers_dict(headers):
    out = {}
    for k, v in headers:
        out[k] = v.decode() if isinstance(v, bytes) else v
    return out
