/* The real implementations of the engine's ports (ports.h) for sagad:
 * PostgreSQL through the event store's libuv face (store_pg.c), Kafka
 * through saga_kafka_loop (broker_kafka.c), libuv timers (clock_uv.c).
 * Each is created before the engine and attached to it afterwards; all run
 * on the daemon's loop thread and log through log.h. */
#ifndef SAGAD_SHELL_H
#define SAGAD_SHELL_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "config.h"
#include "engine.h"
#include "ports.h"

typedef struct sagad_store_pg sagad_store_pg_t;
typedef struct sagad_broker_kafka sagad_broker_kafka_t;
typedef struct sagad_clock_uv sagad_clock_uv_t;

/* Bring the schema up to date: the event store's migrations (es_migrate),
 * then the coordinator's own tables (saga_index, sagad_deployment,
 * saga_definitions; coordinator/io/sql), each migration once, recorded in
 * sagad_schema_version, under an advisory lock. A schema already up to
 * date is only read, so a role without the right to create tables (a
 * member of es_writer) passes. Blocking; for `sagad --migrate` and the
 * start. *es_version and *version (either may be NULL) receive the
 * versions now in place. Returns 0, -1 with errbuf (unreachable, a
 * migration failed), or -2 when the role lacks the rights a migration
 * needs (for good: errbuf says to run `sagad --migrate` as a role that
 * may create tables). */
int sagad_store_pg_migrate(const char *conninfo, int *es_version,
                           int *version, char *errbuf, size_t errlen);
/* Migrate the schema (sagad_store_pg_migrate), claim the database for
 * the deployment (inbox, group) -- or refuse one whose database another
 * deployment claimed --, open the batch connection and the blocking
 * connection used for recovery. Fills *port. Returns 0 or -1 with errbuf
 * (PostgreSQL unreachable, a migration failed or the role may not make
 * the missing tables: a migration job may be under way), or -2 when the
 * database belongs to another deployment (for good: no use waiting). */
int sagad_store_pg_open(uv_loop_t *loop, const char *conninfo,
                        const char *inbox, const char *group,
                        sagad_store_pg_t **out, sagad_store_port_t *port,
                        char *errbuf, size_t errlen);
void sagad_store_pg_attach(sagad_store_pg_t *s, sagad_engine_t *e);
/* Record every definition of reg in saga_definitions (name, version,
 * canonical body, SHA-256, source file), on the blocking connection, once
 * the store is open. A version already recorded with the same body is
 * left as it is. Returns 0; -2 when a version is recorded with another
 * body (errbuf names the file under dir, the definition, its version and
 * both hashes; for good: the start must fail); -1 when the database could
 * not be written (errbuf). Loop thread, before the engine runs. */
int sagad_store_pg_record_definitions(sagad_store_pg_t *s,
                                      const saga_registry_t *reg,
                                      const char *dir, char *errbuf,
                                      size_t errlen);
/* The value of PostgreSQL setting `name` on the blocking connection (the
 * one loads and recovery read on) into out (len bytes): 0, or -1 when it
 * cannot be read (the reason then in the store's last_error, the lost
 * session made again at the next call). For tests and diagnostics; loop
 * thread, no load running. */
int sagad_store_pg_reads_setting(sagad_store_pg_t *s, const char *name,
                                 char *out, size_t len);
/* Close both connections; cb (may be NULL) runs on the loop afterwards. */
void sagad_store_pg_close(sagad_store_pg_t *s, void (*cb)(void *), void *arg);

/* Make and free the consumer and producer that sagad_broker_kafka_open
 * would, without a broker (nothing is connected): 0, or -1 with errbuf
 * saying which kafka.* setting librdkafka refuses only when a client is
 * made (acks other than all with the idempotent producer, a SASL
 * mechanism without its credentials, a key or CA file it cannot load). */
int sagad_broker_kafka_check(const sagad_config_t *cfg, char *errbuf,
                             size_t errlen);
/* Create the consumer (group cfg->group_id) and the producer, and check
 * that the brokers answer. Fills *port. Returns 0 or -1 with errbuf. */
int sagad_broker_kafka_open(uv_loop_t *loop, const sagad_config_t *cfg,
                            void (*on_fatal)(void *arg, const char *why),
                            void *fatal_arg, sagad_broker_kafka_t **out,
                            sagad_broker_port_t *port, char *errbuf,
                            size_t errlen);
/* Attach the engine and join the group on the inbox topic. 0 or -1. */
int sagad_broker_kafka_start(sagad_broker_kafka_t *b, sagad_engine_t *e,
                             char *errbuf, size_t errlen);
/* The inbox consumer, for the admin endpoint's lag and readiness reads
 * (non-blocking librdkafka calls only); NULL before open. Loop thread. */
rd_kafka_t *sagad_broker_kafka_consumer(sagad_broker_kafka_t *b);
/* The broker port's delivery status of a librdkafka delivery error:
 * OK, TOO_LARGE (the message exceeds a size limit), RETRIABLE (timed out,
 * broker unreachable, leader moving, purged at close) or FATAL. */
sagad_delivery_t sagad_broker_kafka_status(rd_kafka_resp_err_t err);
/* The broker port's persistence of librdkafka's message status
 * (rd_kafka_message_status): NO, MAYBE or YES. */
sagad_persisted_t sagad_broker_kafka_persisted(rd_kafka_msg_status_t st);
/* The producer's message.max.bytes (the largest message it sends), or 0
 * when it cannot be read. */
size_t sagad_broker_kafka_max_message(sagad_broker_kafka_t *b);
/* Whether the brokers answer: a metadata request goes out every second
 * (in libuv's thread pool, bounded by 2 s) and Kafka counts as up while
 * one was answered within the last 4 s and no "all brokers down" error
 * came since. When not, why says what was seen. Loop thread. */
bool sagad_broker_kafka_up(const sagad_broker_kafka_t *b, char *why,
                           size_t len);
/* Commit acked offsets, leave the group, wait for deliveries, free; cb (may
 * be NULL) runs on the loop afterwards. */
void sagad_broker_kafka_close(sagad_broker_kafka_t *b, void (*cb)(void *),
                              void *arg);

int sagad_clock_uv_open(uv_loop_t *loop, sagad_clock_uv_t **out,
                        sagad_clock_port_t *port);
void sagad_clock_uv_attach(sagad_clock_uv_t *c, sagad_engine_t *e);
void sagad_clock_uv_close(sagad_clock_uv_t *c);

#endif
