/* One saga at a time through what users link: the public starter
 * (saga_starter_start + saga_starter_await) and the public participant
 * library with the PostgreSQL effect store, on a libuv loop, as a service
 * would run them. bench_saga.c runs it beside its hand-made participants,
 * so the two lines show the library's cost. */
#ifndef BENCH_LIBRARY_H
#define BENCH_LIBRARY_H

#include <stddef.h>

typedef struct {
  const char *bootstrap;
  const char *const *kafka_props; /* name, value, ..., NULL: every client */
  const char *inbox, *notifications;
  const char *saga_type;
  const char *const *step_topics; /* nsteps command topics */
  size_t nsteps;
  const char *group;        /* the participants' consumer group */
  const char *pg_conninfo;  /* the participants' effect store */
  size_t output_bytes;      /* of every DO's output */
  const char *id_prefix;    /* saga ids: <prefix><n> */
  /* rows the effect store holds before the first saga (keys no saga
   * uses), then analyzed: a service's store with some history, as
   * sagad's has after the warm-up, not a new table that autovacuum
   * analyzes every few dozen rows during the measurement */
  size_t store_history;
  /* pause(pause_arg) is called, and may block, after the warm-up and
   * after every pause_every measured sagas but the last; then `rewarm`
   * unmeasured sagas run before the measurement goes on. The saga
   * benchmark measures its floor's commits there, so that they share the
   * line's time. NULL: no pauses. */
  void (*pause)(void *arg);
  void *pause_arg;
  size_t pause_every, rewarm;
} bench_library_opts_t;

/* Run `warm` sagas, then `n` more one at a time, each started when the
 * previous one's outcome arrived (with o->pause's pauses and their
 * `rewarm` sagas, unmeasured, between); lat_ms[0..n) gets each measured
 * saga's time from saga_starter_start to its COMPLETED outcome, and store_ms
 * (NULL: not kept) the time the participant's effect store took in it
 * (every lookup and record, from the call to its callback). Returns 0, or
 * -1 with err set (a saga that did not complete within 30 s, a library or
 * PostgreSQL error). BENCH_LIBRARY_TRACE=FILE writes into FILE, for each
 * measured saga, the wall-clock times (ms) of its start, StartSaga
 * delivered, and for each step the effect store's lookup (call and
 * answer), the command handed to the handler, its record (call and
 * answer), then the outcome; and after them one line per event sagad
 * appended for those sagas ("E stream version type recorded_at", the
 * time its statement began). */
int bench_library_c1(const bench_library_opts_t *o, size_t warm, size_t n,
                     double *lat_ms, double *store_ms, char *err,
                     size_t errlen);

#endif
