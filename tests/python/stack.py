"""What the Python integration tests share with the C ones
(tests/support/test_support.c): the embedded PostgreSQL and Kafka from the
environment scripts/test.sh sets (a test skips, exit 77, without them),
SAGA_TEST_TIMEOUT_SCALE, unique names and throwaway databases."""
import itertools
import os
import sys
import time

SKIP = 77
_counter = itertools.count()


def pg_conninfo():
    return os.environ.get("SAGA_PG_CONNINFO") or None


def kafka_bootstrap():
    return os.environ.get("SAGA_KAFKA_BOOTSTRAP") or None


def require_stack():
    """Exit 77 (skipped) unless the embedded PostgreSQL and Kafka are
    given."""
    for var, value in (("SAGA_PG_CONNINFO", pg_conninfo()),
                       ("SAGA_KAFKA_BOOTSTRAP", kafka_bootstrap())):
        if not value:
            print(f"skipped: {var} is not set (run through scripts/test.sh)",
                  file=sys.stderr)
            sys.exit(SKIP)


def timeout_scale():
    try:
        return max(1, int(os.environ.get("SAGA_TEST_TIMEOUT_SCALE", "1")))
    except ValueError:
        return 1


def seconds(s):
    """A wait bound of s seconds, scaled for slow (sanitizer) runs."""
    return s * timeout_scale()


def unique_name(prefix):
    return (f"{prefix}_{os.getpid()}_{next(_counter)}_"
            f"{int(time.time()) % 100000}")


def create_database(prefix):
    """A new database on the embedded PostgreSQL; returns its conninfo (a
    later dbname= overrides the base one)."""
    import psycopg
    name = unique_name(prefix)
    with psycopg.connect(pg_conninfo(), autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return f"{pg_conninfo()} dbname={name}"


def drop_database(conninfo):
    import psycopg
    name = conninfo.rsplit(" dbname=", 1)[1]
    with psycopg.connect(pg_conninfo(), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_until(pred, within, what):
    """Poll pred() every 20 ms until true; raise AssertionError naming
    `what` when `within` seconds (scaled) pass first."""
    until = time.monotonic() + seconds(within)
    while not pred():
        if time.monotonic() > until:
            raise AssertionError(f"{what}: not within {seconds(within)} s")
        time.sleep(0.02)
