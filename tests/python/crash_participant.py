"""A participant that dies (os._exit(3), no clean-up, like a kill -9)
right after recording its first reply in the PostgreSQL store, before the
reply is produced or the offset committed.

usage: crash_participant.py BOOTSTRAP CONNINFO TOPIC GROUP"""
import os
import sys

from saga_client import Participant, PgStore, Result

bootstrap, conninfo, topic, group = sys.argv[1:5]


class DieAfterRecord(PgStore):
    def record(self, effect_key, reply):
        super().record(effect_key, reply)
        os._exit(3)


p = Participant(bootstrap, group, DieAfterRecord(conninfo),
                kafka_config={"session.timeout.ms": 6000,
                              "fetch.wait.max.ms": 5,
                              "auto.offset.reset": "earliest"})
p.handle(topic, lambda cmd: Result.success(b'{"charged":"before the crash"}'))
p.run()  # never returns: the first command ends the process
