#!/usr/bin/env python3
"""sagad speaks systemd's notify protocol: READY=1 once it consumes its
inbox, WATCHDOG=1 at half of WATCHDOG_USEC from its loop, STOPPING=1 when
SIGTERM begins the graceful shutdown, then it exits 0. The test binds the
NOTIFY_SOCKET itself, as systemd does, and runs the real sagad against the
embedded PostgreSQL and Kafka.
Usage: sd_notify_test.py SAGAD DEFINITIONS_DIR"""
import os, signal, socket, subprocess, sys, tempfile, time

def main():
    sagad, defs = sys.argv[1], sys.argv[2]
    pg, kafka = os.environ.get("SAGA_PG_CONNINFO"), os.environ.get("SAGA_KAFKA_BOOTSTRAP")
    if not pg or not kafka:
        print("no embedded PostgreSQL/Kafka: skipped")
        return 77
    scale = int(os.environ.get("SAGA_TEST_TIMEOUT_SCALE", "1"))
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    ns = "sdn%d" % os.getpid()
    # a database of its own: a database belongs to one deployment
    db = "saga_" + ns
    subprocess.run(["psql", pg, "-qXc", 'CREATE DATABASE "%s"' % db],
                   check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="200000")
    log = open(os.path.join(tmp, "sagad.log"), "w+")
    p = subprocess.Popen([sagad, "--store.conninfo=%s dbname=%s" % (pg, db),
                          "--kafka.bootstrap.servers=" + kafka,
                          "--topic.inbox=%s.inbox" % ns,
                          "--topic.notifications=%s.notifications" % ns,
                          "--topic.dlq=%s.dlq" % ns, "--group.id=%s.sagad" % ns,
                          "--definitions.dir=" + defs,
                          "--kafka.allow.auto.create.topics=true",
                          "--admin.listen=127.0.0.1:0"],
                         env=env, stdout=log, stderr=subprocess.STDOUT)
    got = []
    def wait_for(state, seconds):
        deadline = time.monotonic() + seconds * scale
        while time.monotonic() < deadline:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                msg = sock.recv(4096).decode()
            except socket.timeout:
                break
            got.append(msg)
            if state in msg.split("\n"):
                return True
        return False
    try:
        ok = wait_for("READY=1", 30)
        ok = ok and wait_for("WATCHDOG=1", 5)
        if ok:
            p.send_signal(signal.SIGTERM)
            ok = wait_for("STOPPING=1", 10)
        rc = p.wait(timeout=30 * scale)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        subprocess.run(["psql", pg, "-qXc",
                        'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not ok or rc != 0:
        log.seek(0)
        print("messages received: %r; sagad exited %r" % (got, p.returncode))
        print(log.read()[-3000:])
        return 1
    print("READY=1, WATCHDOG=1, STOPPING=1 received; sagad exited 0")
    return 0

sys.exit(main())
