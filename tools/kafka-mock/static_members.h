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
 * new member, as it would without an instance id.
 *
 * A broker also skips the rebalance when the member coming back held the
 * group alone and asks for what it had: it answers at once with the
 * group's generation, and the member's SyncGroup with its assignment. The
 * mock would elect again, session.timeout.ms - 1000 after the join (2 s of
 * a 3 s session, most of a restarted sagad's wait for its partitions).
 * When the last JoinGroup answer of the instance elected it leader of a
 * group of itself alone, and the request's first protocol and its
 * metadata are the ones it had, the relay asks the mock whether that
 * place still stands -- a Heartbeat of the remembered member id and
 * generation, which also renews the member's session -- and if so answers
 * the JoinGroup itself, with the generation it had; the SyncGroup that
 * follows on the same connection is answered the same way, with the
 * assignment the member, as leader, gave itself. Otherwise (the member's
 * session expired, the group moved on) the JoinGroup goes on to the mock,
 * as above, or the SyncGroup gets the group's error and the member joins
 * again. */
#ifndef SAGA_KAFKA_MOCK_STATIC_MEMBERS_H
#define SAGA_KAFKA_MOCK_STATIC_MEMBERS_H

#include <stddef.h>
#include <stdint.h>

typedef struct static_members static_members_t;

/* An empty table, or NULL when out of memory. */
static_members_t *static_members_new(void);

/* Free the table. NULL-safe. */
void static_members_free(static_members_t *sm);

/* A JoinGroup request from connection `conn` (an opaque identity): the
 * whole message `f` of `sz` bytes, its body at offset `h`, version `ver`.
 * Returns the index of the group and instance it names (to pass to
 * static_members_answer or static_members_probed), or -1 when it names
 * none, is of another version, cannot be read, or memory ran out. When
 * the member id should be the remembered one, *out is set to a new message
 * (malloc'd, *outsz bytes, with its 4-byte size) to send instead of f;
 * otherwise *out is NULL. *probe is 1 when that message is the Heartbeat
 * that asks whether the member's place stands: its answer goes to
 * static_members_probed, not to the client. */
int static_members_join(static_members_t *sm, const void *conn,
                        const char *f, size_t sz, size_t h, int ver,
                        char **out, size_t *outsz, int *probe);

/* The answer `b` (`n` bytes, after the correlation id) of version `ver` to
 * the JoinGroup of entry `idx`: without an error, the member id it gives is
 * remembered. */
void static_members_answer(static_members_t *sm, int idx, const char *b,
                           size_t n, int ver);

/* The answer `b` (`n` bytes, after the correlation id) to the Heartbeat
 * static_members_join sent for entry `idx`, on connection `conn`: when the
 * place stands, *to_client is the JoinGroup answer to give the client;
 * otherwise *to_broker is the JoinGroup to send on, whose answer goes to
 * static_members_answer. Both malloc'd with their 4-byte size (*csz,
 * *bsz bytes); both NULL when there is nothing to do. */
void static_members_probed(static_members_t *sm, int idx, const char *b,
                           size_t n, const void *conn, char **to_client,
                           size_t *csz, char **to_broker, size_t *bsz);

/* A SyncGroup request, as static_members_join: when it comes after a
 * JoinGroup the relay answered on the same connection, for that
 * generation, returns the entry's index and sets *out to the Heartbeat to
 * send instead (malloc'd, *outsz bytes with its size), whose answer goes
 * to static_members_synced; else -1 and the request goes on as it is. */
int static_members_sync(static_members_t *sm, const void *conn,
                        const char *f, size_t sz, size_t h, int ver,
                        char **out, size_t *outsz);

/* The answer `b` (`n` bytes, after the correlation id) to the Heartbeat
 * static_members_sync sent for entry `idx`: the SyncGroup answer, with
 * correlation id `corr`, to give the client (malloc'd, *csz bytes with
 * its size; NULL when memory ran out): the member's assignment, or the
 * group's error. */
char *static_members_synced(static_members_t *sm, int idx, int32_t corr,
                            const char *b, size_t n, size_t *csz);

/* Connection `conn` is closed: the instances that last joined through it
 * may take their place back from another. */
void static_members_closed(static_members_t *sm, const void *conn);

#endif
