/* Long polls in front of librdkafka's mock cluster. The mock answers a
 * fetch that finds no data only after the fetch's whole max wait, even
 * when data arrives meanwhile; a real broker answers as soon as it does.
 * So a client of the mock either waits out fetch.wait.max.ms on every hop
 * or sets it to 0 and polls without pause, one spinning fetcher per
 * (consumer, broker) pair, which on a small machine takes the CPU from
 * everything else. The long-poll relay stands between the clients and
 * the mock's brokers, one listening port per broker, and answers fetches
 * the way a broker does: a fetch is passed on at once (its wait set to 0)
 * when a produce to one of the topics it reads was acknowledged since the
 * connection's previous fetch was passed on, and otherwise held until one
 * is, or until its own wait is over. Everything else passes through
 * unchanged, except the broker ports in metadata and coordinator answers,
 * which name the relay's, and the member id of a JoinGroup that comes back
 * under a group.instance.id (static_members.h). */
#ifndef SAGA_KAFKA_MOCK_LONG_POLL_H
#define SAGA_KAFKA_MOCK_LONG_POLL_H

#include <stddef.h>

typedef struct long_poll long_poll_t;

/* Start the relay in a thread of its own for the brokers listed in
 * `bootstraps` ("127.0.0.1:PORT,..." as rd_kafka_mock_cluster_bootstraps
 * gives it). Returns NULL with errbuf on failure. The relay reads the
 * versions librdkafka 2.0.2's mock implements (Fetch up to 11, Metadata
 * up to 2, FindCoordinator up to 2, JoinGroup 5: none with flexible
 * encoding); a request of another version passes through unread. */
long_poll_t *long_poll_start(const char *bootstraps, char *errbuf,
                             size_t errlen);

/* The relay's bootstrap list ("127.0.0.1:PORT,..."), owned by it. */
const char *long_poll_bootstraps(const long_poll_t *lp);

/* Mirror a broker going down (down 1) or up (0): its relay port stops
 * listening, so that clients see the connection refused as they would
 * from the broker, or listens again on the same port. Broker ids count
 * from 1 in the order of the bootstrap list. Call it before taking the
 * broker down and after bringing it up. Returns 0, or -1 (no such broker,
 * or the port could not be listened on again). */
int long_poll_broker_down(long_poll_t *lp, int broker, int down);

/* Stop the relay, close every connection, free it. NULL-safe. */
void long_poll_stop(long_poll_t *lp);

#endif
