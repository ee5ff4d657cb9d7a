/* Static group membership (Kafka's group.instance.id, KIP-345) for the
 * long-poll relay in front of librdkafka's mock cluster, whose group
 * coordinator ignores the instance id. A real broker lets a member that
 * comes back under the same instance id take its old place at once; the
 * mock keeps the old member until its session times out, and a consumer
 * killed and restarted meanwhile waits for it: the group's election comes
 * first, may elect the dead member, and the live one waits out the sync
 * timeout before it joins again (4.5-5.5 s with a 3 s session, against
 * about 2 s when the dead member is gone first).
 *
 * The relay reads each JoinGroup request of version 5 (the last without
 * flexible encoding, the one librdkafka 2.0.2 sends) that names an
 * instance id, and each answer: the member id the group gave that
 * instance is remembered. A later JoinGroup with no member id, for the
 * same group and instance, from another connection once the one that last
 * joined under it is closed, is sent on with the remembered member id, so
 * the mock takes it for the old member coming back: one election, about
 * session.timeout.ms - 1000 after the join, with no dead member to elect.
 * Unlike a real broker it does not fence: while the connection that last
 * joined is open, a second process with the same instance id joins as a
 * new member, as it would without an instance id. */
#ifndef SAGA_KAFKA_MOCK_STATIC_MEMBERS_H
#define SAGA_KAFKA_MOCK_STATIC_MEMBERS_H

#include <stddef.h>

typedef struct static_members static_members_t;

/* An empty table, or NULL when out of memory. */
static_members_t *static_members_new(void);

/* Free the table. NULL-safe. */
void static_members_free(static_members_t *sm);

/* A JoinGroup request from connection `conn` (an opaque identity): the
 * whole message `f` of `sz` bytes, its body at offset `h`, version `ver`.
 * Returns the index of the group and instance it names (to pass to
 * static_members_answer), or -1 when it names none, is of another version,
 * cannot be read, or memory ran out. When the member id should be the
 * remembered one, *out is set to a new message (malloc'd, *outsz bytes)
 * to send instead of f; otherwise *out is NULL. */
int static_members_join(static_members_t *sm, const void *conn,
                        const char *f, size_t sz, size_t h, int ver,
                        char **out, size_t *outsz);

/* The answer `b` (`n` bytes, after the correlation id) of version `ver` to
 * the JoinGroup of entry `idx`: without an error, the member id it gives is
 * remembered. */
void static_members_answer(static_members_t *sm, int idx, const char *b,
                           size_t n, int ver);

/* Connection `conn` is closed: the instances that last joined through it
 * may take their place back from another. */
void static_members_closed(static_members_t *sm, const void *conn);

#endif
