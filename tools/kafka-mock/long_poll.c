/* The long-poll relay (see long_poll.h): one thread, poll(2) over the
 * listening sockets, each client connection and its connection to the
 * mock broker behind it. Requests and answers are framed (a 4-byte size,
 * then the message) and passed on whole, in order. */
#include "long_poll.h"

#include "grow.h"
#include "static_members.h"
#include "wire_bytes.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_BROKERS 16
#define API_PRODUCE 0
#define API_FETCH 1
#define API_METADATA 3
#define API_FIND_COORDINATOR 10
#define API_JOIN_GROUP 11
#define API_SYNC_GROUP 14
#define MAX_FETCH_VERSION 11  /* header v1: no tagged fields after client id */
#define MAX_METADATA_VERSION 8
#define MAX_COORDINATOR_VERSION 2
#define READ_CHUNK 65536
#define MAX_BUFFERED (64u << 20) /* stop reading a side past this */
#define IDLE_WAKE_MS 1000
#define PEND_TOPICS 16 /* topics of a produce remembered until its answer */

typedef struct {
  char *b;
  size_t len, cap;
} buf_t;

/* A request whose answer the relay reads; for a produce, the topics it
 * writes (indexes into long_poll.topics), ntopic -1 when they could not
 * be read or were more than PEND_TOPICS: its answer wakes every fetch. */
typedef struct {
  int32_t corr;
  int16_t key, ver;
  int ntopic;
  int topic[PEND_TOPICS];
  int member; /* a JoinGroup's (or a probe's) static_members entry */
  int probe;  /* a Heartbeat the relay sent in its place: 0, or its key */
} pend_t;

/* A topic some produce wrote, and the epoch of the last produce answer
 * for it. */
typedef struct {
  char *name;
  size_t len;
  uint64_t epoch;
} topic_t;

typedef struct conn {
  int cfd, ufd;        /* the client; the mock broker */
  buf_t cin, cout;     /* from the client; to the client */
  buf_t uin, uout;     /* from the broker; to the broker */
  pend_t *pend;        /* in request order */
  size_t npend, cappend;
  int held;            /* the first frame of cin is a fetch being held */
  uint64_t deadline;   /* when that fetch's own wait is over (ms) */
  uint64_t epoch;      /* lp->epoch when its last fetch was passed on */
  int more;            /* that fetch brought records: the next one goes */
  int dead;
  struct conn *next;
} conn_t;

struct long_poll {
  int nb;
  int lfd[MAX_BROKERS]; /* -1 while its broker is down */
  int mock_port[MAX_BROKERS], relay_port[MAX_BROKERS];
  char bootstraps[MAX_BROKERS * 24];
  conn_t *conns;
  uint64_t epoch;     /* produce answers seen */
  uint64_t all_epoch; /* the last one whose topics are not known */
  topic_t *topics;    /* every topic a produce wrote */
  size_t ntopics, captopics;
  static_members_t *members; /* instance ids and their member ids */
  int stop_pipe[2]; /* wakes the thread: to stop, or to apply want_down */
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t applied;
  int stop;                  /* under mu */
  int want_down[MAX_BROKERS]; /* under mu: set by long_poll_broker_down */
  unsigned changes, done;    /* under mu: requests made, requests applied */
};

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int buf_append(buf_t *B, const char *p, size_t n) {
  if (SAGA_GROW(B->b, B->cap, B->len + n, 4096) != 0)
    return -1;
  memcpy(B->b + B->len, p, n);
  B->len += n;
  return 0;
}

static void buf_consume(buf_t *B, size_t n) {
  if (!n)
    return; /* B->b may still be NULL */
  memmove(B->b, B->b + n, B->len - n);
  B->len -= n;
}

static int set_nonblocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* ---- reading the answers that name brokers ---- */

static void map_port(const long_poll_t *lp, char *p) {
  int32_t port = wire_rd32(p);
  for (int i = 0; i < lp->nb; i++)
    if (lp->mock_port[i] == port) {
      wire_wr32(p, lp->relay_port[i]);
      return;
    }
}

/* Skip a (nullable) string at b + *o; 0, or -1 past n. */
static int skip_str(const char *b, size_t n, size_t *o) {
  if (*o + 2 > n)
    return -1;
  int16_t len = wire_rd16(b + *o);
  *o += 2 + (size_t)(len > 0 ? len : 0);
  return *o <= n ? 0 : -1;
}

/* The index in lp->topics of the topic `name` (len bytes, not
 * terminated), or -1 when no produce wrote it. */
static int topic_find(const long_poll_t *lp, const char *name, size_t len) {
  for (size_t i = 0; i < lp->ntopics; i++)
    if (lp->topics[i].len == len && !memcmp(lp->topics[i].name, name, len))
      return (int)i;
  return -1;
}

/* The same, added when new; -1 when out of memory. */
static int topic_index(long_poll_t *lp, const char *name, size_t len) {
  int i = topic_find(lp, name, len);
  if (i >= 0)
    return i;
  char *copy = malloc(len ? len : 1);
  if (!copy ||
      SAGA_GROW(lp->topics, lp->captopics, lp->ntopics + 1, 16) != 0) {
    free(copy);
    return -1;
  }
  memcpy(copy, name, len);
  lp->topics[lp->ntopics] = (topic_t){.name = copy, .len = len};
  return (int)lp->ntopics++;
}

/* Metadata answer, versions 0-8: [throttle v3+] brokers [node, host,
 * port, rack v1+] ... */
static void rewrite_metadata(const long_poll_t *lp, char *b, size_t n,
                             int ver) {
  size_t o = ver >= 3 ? 4 : 0;
  if (o + 4 > n)
    return;
  int32_t cnt = wire_rd32(b + o);
  o += 4;
  for (int32_t k = 0; k < cnt; k++) {
    o += 4; /* node id */
    if (skip_str(b, n, &o) || o + 4 > n)
      return;
    map_port(lp, b + o);
    o += 4;
    if (ver >= 1 && skip_str(b, n, &o))
      return;
  }
}

/* FindCoordinator answer, versions 0-2: [throttle v1+] error [message
 * v1+] node host port. */
static void rewrite_coordinator(const long_poll_t *lp, char *b, size_t n,
                                int ver) {
  size_t o = ver >= 1 ? 4 : 0;
  o += 2; /* error code */
  if (ver >= 1 && skip_str(b, n, &o))
    return;
  o += 4; /* node id */
  if (skip_str(b, n, &o) || o + 4 > n)
    return;
  map_port(lp, b + o);
}

/* Whether a Fetch answer, versions 4-11, carries records: [throttle]
 * [error session v7+] topics [name partitions [index error high_watermark
 * last_stable log_start(v5+) aborted[] preferred_replica(v11+) records]].
 * Unread versions and damaged answers count as carrying some. */
static int fetch_has_records(const char *b, size_t n, int ver) {
  if (ver < 4)
    return 1;
  size_t o = 4 + (ver >= 7 ? 6 : 0);
  if (o + 4 > n)
    return 1;
  int32_t topics = wire_rd32(b + o);
  o += 4;
  for (int32_t t = 0; t < topics; t++) {
    if (skip_str(b, n, &o) || o + 4 > n)
      return 1;
    int32_t parts = wire_rd32(b + o);
    o += 4;
    for (int32_t p = 0; p < parts; p++) {
      o += 4 + 2 + 8 + 8 + (ver >= 5 ? 8 : 0);
      if (o + 4 > n)
        return 1;
      int32_t aborted = wire_rd32(b + o);
      o += 4 + (size_t)(aborted > 0 ? aborted : 0) * 16;
      o += ver >= 11 ? 4 : 0;
      if (o + 4 > n)
        return 1;
      int32_t len = wire_rd32(b + o);
      if (len > 0)
        return 1;
      o += 4;
    }
  }
  return 0;
}

/* ---- passing frames on ---- */

static pend_t *note_pending(conn_t *c, int32_t corr, int16_t key,
                            int16_t ver) {
  if (SAGA_GROW(c->pend, c->cappend, c->npend + 1, 16) != 0)
    return NULL; /* unread, then: passed through as is */
  c->pend[c->npend] = (pend_t){.corr = corr, .key = key, .ver = ver};
  return &c->pend[c->npend++];
}

/* Whether a Produce request gets an answer (acks != 0). */
static int produce_answered(const char *f, size_t sz, size_t h, int ver) {
  size_t o = h;
  if (ver >= 3 && skip_str(f, sz, &o)) /* transactional id */
    return 1;
  return o + 2 > sz || wire_rd16(f + o) != 0;
}

/* The topics a Produce request, versions 0-7, writes into p->topic:
 * [transactional id v3+] acks timeout topics [name partitions [index
 * records]]. ntopic -1 when it cannot be read or names too many. */
static void produce_topics(long_poll_t *lp, pend_t *p, const char *f,
                           size_t sz, size_t h, int ver) {
  size_t o = h;
  p->ntopic = -1;
  if (ver > 7 || (ver >= 3 && skip_str(f, sz, &o)))
    return;
  o += 2 + 4; /* acks, timeout */
  if (o + 4 > sz)
    return;
  int32_t topics = wire_rd32(f + o);
  o += 4;
  if (topics < 0 || topics > PEND_TOPICS)
    return;
  for (int32_t t = 0; t < topics; t++) {
    if (o + 2 > sz)
      return;
    int16_t len = wire_rd16(f + o);
    if (len < 0 || o + 2 + (size_t)len + 4 > sz ||
        (p->topic[t] = topic_index(lp, f + o + 2, (size_t)len)) < 0)
      return;
    o += 2 + (size_t)len;
    int32_t parts = wire_rd32(f + o);
    o += 4;
    for (int32_t k = 0; k < parts; k++) {
      if (o + 8 > sz)
        return;
      int32_t rlen = wire_rd32(f + o + 4);
      o += 8 + (size_t)(rlen > 0 ? rlen : 0);
    }
  }
  p->ntopic = topics;
}

/* Whether a held Fetch request, versions 4-11, may go: a produce was
 * answered, for one of the topics it reads (or one whose topics are not
 * known), since the connection's previous fetch went. Its body: replica
 * wait min_bytes max_bytes isolation [session epoch v7+] topics [name
 * partitions [index [leader_epoch v9+] offset [log_start v5+]
 * max_bytes]] ... A fetch that cannot be read, or of an incremental fetch
 * session (whose requests may leave partitions out), goes on any produce. */
static int fetch_woken(const long_poll_t *lp, const conn_t *c, const char *f,
                       size_t sz, size_t h, int ver) {
  if (lp->epoch == c->epoch)
    return 0; /* nothing produced since: no need to read it */
  if (lp->all_epoch > c->epoch)
    return 1;
  size_t o = h + 4 + 4 + 4 + 4 + 1;
  if (ver < 4 || o + (ver >= 7 ? 8 : 0) + 4 > sz)
    return lp->epoch > c->epoch;
  if (ver >= 7) {
    if (wire_rd32(f + o + 4) != -1) /* session epoch: -1 is a full fetch */
      return lp->epoch > c->epoch;
    o += 8;
  }
  size_t part = 4 + (ver >= 9 ? 4 : 0) + 8 + (ver >= 5 ? 8 : 0) + 4;
  int32_t topics = wire_rd32(f + o);
  o += 4;
  for (int32_t t = 0; t < topics; t++) {
    if (o + 2 > sz)
      return lp->epoch > c->epoch;
    int16_t len = wire_rd16(f + o);
    if (len < 0 || o + 2 + (size_t)len + 4 > sz)
      return lp->epoch > c->epoch;
    int i = topic_find(lp, f + o + 2, (size_t)len);
    if (i >= 0 && lp->topics[i].epoch > c->epoch)
      return 1;
    o += 2 + (size_t)len;
    int32_t parts = wire_rd32(f + o);
    o += 4 + (size_t)(parts > 0 ? parts : 0) * part;
  }
  return 0;
}

/* The message of the complete frame at B->b + pos (its size into *sz),
 * or NULL when the frame is not all there yet. */
static char *frame_at(const buf_t *B, size_t pos, uint32_t *sz) {
  if (B->len - pos < 4)
    return NULL;
  *sz = (uint32_t)wire_rd32(B->b + pos);
  return B->len - pos - 4 < *sz ? NULL : B->b + pos + 4;
}

/* Pass the client's complete requests on, up to a fetch that is held. */
static void pump_requests(long_poll_t *lp, conn_t *c, uint64_t now) {
  size_t pos = 0;
  uint32_t sz;
  char *f, *swap = NULL;
  while ((f = frame_at(&c->cin, pos, &sz))) {
    if (sz >= 10) {
      int16_t key = wire_rd16(f), ver = wire_rd16(f + 2);
      int32_t corr = wire_rd32(f + 4);
      int16_t idlen = wire_rd16(f + 8);
      size_t h = 10 + (size_t)(idlen > 0 ? idlen : 0); /* body */
      if (key == API_FETCH && ver <= MAX_FETCH_VERSION && sz >= h + 8) {
        int32_t wait = wire_rd32(f + h + 4); /* after the replica id */
        if (!c->more && wait > 0 && !fetch_woken(lp, c, f, sz, h, ver)) {
          if (!c->held) {
            c->held = 1;
            c->deadline = now + (uint64_t)wait;
          }
          if (now < c->deadline)
            break; /* nothing produced since its last fetch: hold it */
        }
        c->held = 0;
        c->more = 0;
        wire_wr32(f + h + 4, 0);
        c->epoch = lp->epoch;
        note_pending(c, corr, key, ver);
      } else if ((key == API_METADATA && ver <= MAX_METADATA_VERSION) ||
                 (key == API_FIND_COORDINATOR &&
                  ver <= MAX_COORDINATOR_VERSION)) {
        note_pending(c, corr, key, ver);
      } else if (key == API_PRODUCE && produce_answered(f, sz, h, ver)) {
        pend_t *p = note_pending(c, corr, key, ver);
        if (p) /* its answer lets the fetches of its topics go */
          produce_topics(lp, p, f, sz, h, ver);
      } else if (key == API_JOIN_GROUP || key == API_SYNC_GROUP) {
        size_t nsz = 0;
        int probe = key == API_SYNC_GROUP;
        int m = key == API_JOIN_GROUP
                    ? static_members_join(lp->members, c, f, sz, h, ver,
                                          &swap, &nsz, &probe)
                    : static_members_sync(lp->members, c, f, sz, h, ver,
                                          &swap, &nsz);
        pend_t *p = m >= 0 && (key == API_JOIN_GROUP || swap)
                        ? note_pending(c, corr, key, ver)
                        : NULL;
        if (p) {
          p->member = m;
          p->probe = swap && probe ? key : 0;
        }
        if (swap) { /* another message goes instead: see static_members.h */
          int bad = (probe && !p) || buf_append(&c->uout, swap, nsz);
          free(swap);
          swap = NULL;
          if (bad) {
            c->dead = 1;
            return;
          }
          pos += 4 + (size_t)sz;
          continue;
        }
      }
    }
    if (buf_append(&c->uout, c->cin.b + pos, 4 + (size_t)sz)) {
      c->dead = 1;
      return;
    }
    pos += 4 + (size_t)sz;
  }
  buf_consume(&c->cin, pos);
}

/* A produce was answered: the held fetches of its topics may go. */
static void produced(long_poll_t *lp, const pend_t *p) {
  lp->epoch++;
  if (p->ntopic < 0)
    lp->all_epoch = lp->epoch;
  for (int i = 0; i < p->ntopic; i++)
    lp->topics[p->topic[i]].epoch = lp->epoch;
}

/* The answer to a Heartbeat the relay sent in the place of the client's
 * JoinGroup or SyncGroup (p->probe; static_members.h): what goes to the
 * client instead, or the JoinGroup that goes on to the broker. 0, or -1
 * when out of memory. */
static int probe_answered(long_poll_t *lp, conn_t *c, const pend_t *p,
                          const char *f, uint32_t sz) {
  char *to_client = NULL, *to_broker = NULL;
  size_t csz = 0, bsz = 0;
  if (p->probe == API_SYNC_GROUP)
    to_client = static_members_synced(lp->members, p->member, p->corr,
                                      f + 4, sz - 4, &csz);
  else
    static_members_probed(lp->members, p->member, f + 4, sz - 4, c,
                          &to_client, &csz, &to_broker, &bsz);
  int bad = 0;
  if (to_client)
    bad = buf_append(&c->cout, to_client, csz);
  else if (to_broker) {
    pend_t *q = note_pending(c, p->corr, API_JOIN_GROUP, p->ver);
    if (q)
      q->member = p->member;
    bad = buf_append(&c->uout, to_broker, bsz);
  } else
    bad = -1; /* the client would wait for an answer forever */
  free(to_client);
  free(to_broker);
  return bad;
}

/* Pass the broker's complete answers on; a produce answer wakes the held
 * fetches of its topics. */
static void pump_answers(long_poll_t *lp, conn_t *c) {
  size_t pos = 0;
  uint32_t sz;
  char *f;
  while ((f = frame_at(&c->uin, pos, &sz))) {
    if (sz >= 4 && c->npend) {
      int32_t corr = wire_rd32(f);
      size_t i = 0;
      while (i < c->npend && c->pend[i].corr != corr)
        i++;
      if (i < c->npend) {
        pend_t p = c->pend[i];
        /* answers come in request order: older ones never will */
        c->npend -= i + 1;
        memmove(c->pend, c->pend + i + 1, c->npend * sizeof *c->pend);
        if (p.probe) {
          if (probe_answered(lp, c, &p, f, sz)) {
            c->dead = 1;
            return;
          }
          pos += 4 + (size_t)sz;
          continue;
        }
        if (p.key == API_PRODUCE)
          produced(lp, &p);
        else if (p.key == API_FETCH) {
          /* more may be waiting (the answer is size-limited): the next
           * fetch goes on at once, as a broker would answer it */
          if (fetch_has_records(f + 4, sz - 4, p.ver))
            c->more = 1;
        } else if (p.key == API_METADATA)
          rewrite_metadata(lp, f + 4, sz - 4, p.ver);
        else if (p.key == API_JOIN_GROUP)
          static_members_answer(lp->members, p.member, f + 4, sz - 4, p.ver);
        else
          rewrite_coordinator(lp, f + 4, sz - 4, p.ver);
      }
    }
    if (buf_append(&c->cout, c->uin.b + pos, 4 + (size_t)sz)) {
      c->dead = 1;
      return;
    }
    pos += 4 + (size_t)sz;
  }
  buf_consume(&c->uin, pos);
}

/* ---- sockets ---- */

/* Reads re-arm TCP_QUICKACK: the mock's brokers write without
 * TCP_NODELAY, so an answer written while the one before is not yet
 * acknowledged waits for that acknowledgement, which a quiet connection
 * (a fetch being held) delays by 40 ms. */
static void read_into(int fd, buf_t *B, int *dead) {
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
  for (;;) {
    if (SAGA_GROW(B->b, B->cap, B->len + READ_CHUNK, READ_CHUNK * 2) != 0) {
      *dead = 1;
      return;
    }
    ssize_t r = read(fd, B->b + B->len, B->cap - B->len);
    if (r > 0) {
      B->len += (size_t)r;
      if (B->len > MAX_BUFFERED)
        return;
      continue;
    }
    if (r == 0 || (errno != EAGAIN && errno != EINTR))
      *dead = 1;
    if (r < 0 && errno == EINTR)
      continue;
    return;
  }
}

static void write_from(int fd, buf_t *B, int *dead) {
  size_t off = 0;
  while (off < B->len) {
    ssize_t w = send(fd, B->b + off, B->len - off, MSG_NOSIGNAL);
    if (w > 0) {
      off += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && errno != EAGAIN)
      *dead = 1;
    break;
  }
  buf_consume(B, off);
}

static void accept_client(long_poll_t *lp, int b) {
  int cfd = accept(lp->lfd[b], NULL, NULL);
  if (cfd < 0)
    return;
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)lp->mock_port[b])};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int ufd = socket(AF_INET, SOCK_STREAM, 0);
  conn_t *c = calloc(1, sizeof *c);
  /* A broker that is down refuses or drops the connection: so does the
   * relay, at once or when the broker drops it. */
  if (ufd < 0 || !c || connect(ufd, (struct sockaddr *)&a, sizeof a) != 0 ||
      set_nonblocking(ufd) || set_nonblocking(cfd)) {
    if (ufd >= 0)
      close(ufd);
    close(cfd);
    free(c);
    return;
  }
  c->cfd = cfd;
  c->ufd = ufd;
  c->epoch = lp->epoch;
  c->more = 1; /* its first fetch is passed on at once */
  c->next = lp->conns;
  lp->conns = c;
}

static void conn_free(conn_t *c) {
  close(c->cfd);
  close(c->ufd);
  free(c->cin.b);
  free(c->cout.b);
  free(c->uin.b);
  free(c->uout.b);
  free(c->pend);
  free(c);
}

/* Listen on 127.0.0.1:*port (0: any free port, written back). */
static int listen_local(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)*port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  int one = 1;
  if (fd < 0)
    return -1;
  (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 128) ||
      getsockname(fd, (struct sockaddr *)&a, &al) != 0 ||
      set_nonblocking(fd) != 0) {
    close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

/* Close or reopen the listeners whose broker went down or came up, on
 * the relay's thread; tells long_poll_broker_down it is done. */
static int apply_changes(long_poll_t *lp) {
  pthread_mutex_lock(&lp->mu);
  int stop = lp->stop;
  for (int i = 0; i < lp->nb; i++) {
    if (lp->want_down[i] && lp->lfd[i] >= 0) {
      close(lp->lfd[i]);
      lp->lfd[i] = -1;
    } else if (!lp->want_down[i] && lp->lfd[i] < 0) {
      int port = lp->relay_port[i];
      lp->lfd[i] = listen_local(&port);
    }
  }
  lp->done = lp->changes;
  pthread_cond_broadcast(&lp->applied);
  pthread_mutex_unlock(&lp->mu);
  return stop;
}

static void *run(void *arg) {
  long_poll_t *lp = arg;
  struct pollfd *pfd = NULL;
  size_t cap = 0;
  for (;;) {
    size_t nconn = 0;
    for (conn_t *c = lp->conns; c; c = c->next)
      nconn++;
    size_t want = 1 + (size_t)lp->nb + 2 * nconn;
    if (SAGA_GROW(pfd, cap, want, 16) != 0) {
      (void)poll(NULL, 0, 10); /* out of memory: try again soon */
      continue;
    }
    size_t n = 0;
    pfd[n++] = (struct pollfd){.fd = lp->stop_pipe[0], .events = POLLIN};
    for (int i = 0; i < lp->nb; i++) /* fd -1: ignored by poll */
      pfd[n++] = (struct pollfd){.fd = lp->lfd[i], .events = POLLIN};
    uint64_t now = now_ms(), next = now + IDLE_WAKE_MS;
    for (conn_t *c = lp->conns; c; c = c->next) {
      short ce = (short)((c->cin.len < MAX_BUFFERED ? POLLIN : 0) |
                         (c->cout.len ? POLLOUT : 0));
      short ue = (short)((c->uin.len < MAX_BUFFERED ? POLLIN : 0) |
                         (c->uout.len ? POLLOUT : 0));
      pfd[n++] = (struct pollfd){.fd = c->cfd, .events = ce};
      pfd[n++] = (struct pollfd){.fd = c->ufd, .events = ue};
      if (c->held && c->deadline < next)
        next = c->deadline;
    }
    int timeout = next > now ? (int)(next - now) : 0;
    if (poll(pfd, n, timeout) < 0 && errno != EINTR)
      break;
    if (pfd[0].revents) {
      char drain[64];
      ssize_t r = read(lp->stop_pipe[0], drain, sizeof drain);
      (void)r;
      if (apply_changes(lp))
        break; /* long_poll_stop */
      continue; /* the listeners changed: poll them again */
    }
    size_t k = 1 + (size_t)lp->nb;
    for (conn_t *c = lp->conns; c; c = c->next, k += 2) {
      if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR))
        read_into(c->cfd, &c->cin, &c->dead);
      if (pfd[k + 1].revents & (POLLIN | POLLHUP | POLLERR))
        read_into(c->ufd, &c->uin, &c->dead);
    }
    for (int i = 0; i < lp->nb; i++)
      if (lp->lfd[i] >= 0 && (pfd[1 + i].revents & POLLIN))
        accept_client(lp, i);
    for (conn_t *c = lp->conns; c; c = c->next)
      pump_answers(lp, c);
    now = now_ms();
    for (conn_t *c = lp->conns; c; c = c->next) {
      pump_requests(lp, c, now);
      if (c->uout.len)
        write_from(c->ufd, &c->uout, &c->dead);
      if (c->cout.len)
        write_from(c->cfd, &c->cout, &c->dead);
    }
    for (conn_t **pp = &lp->conns; *pp;) {
      conn_t *c = *pp;
      if (c->dead) {
        *pp = c->next;
        static_members_closed(lp->members, c);
        conn_free(c);
      } else {
        pp = &c->next;
      }
    }
  }
  free(pfd);
  return NULL;
}

/* ---- start and stop ---- */

long_poll_t *long_poll_start(const char *bootstraps, char *errbuf,
                             size_t errlen) {
  long_poll_t *lp = calloc(1, sizeof *lp);
  if (!lp) {
    snprintf(errbuf, errlen, "out of memory");
    return NULL;
  }
  lp->stop_pipe[0] = lp->stop_pipe[1] = -1;
  lp->members = static_members_new(); /* NULL: instance ids go unread */
  pthread_mutex_init(&lp->mu, NULL);
  pthread_cond_init(&lp->applied, NULL);
  for (const char *p = bootstraps; p && *p && lp->nb < MAX_BROKERS;) {
    const char *end = strchr(p, ',');
    const char *colon = memchr(p, ':', end ? (size_t)(end - p) : strlen(p));
    if (!colon)
      break;
    lp->mock_port[lp->nb++] = atoi(colon + 1);
    p = end ? end + 1 : NULL;
  }
  size_t used = 0;
  for (int i = 0; i < lp->nb; i++) {
    lp->lfd[i] = listen_local(&lp->relay_port[i]);
    if (lp->lfd[i] < 0) {
      snprintf(errbuf, errlen, "could not listen on 127.0.0.1: %s",
               strerror(errno));
      lp->nb = i;
      long_poll_stop(lp);
      return NULL;
    }
    used += (size_t)snprintf(lp->bootstraps + used,
                             sizeof lp->bootstraps - used, "%s127.0.0.1:%d",
                             i ? "," : "", lp->relay_port[i]);
  }
  if (!lp->nb) {
    snprintf(errbuf, errlen, "no broker in the bootstrap list \"%s\"",
             bootstraps ? bootstraps : "");
    long_poll_stop(lp);
    return NULL;
  }
  if (pipe(lp->stop_pipe) != 0 ||
      pthread_create(&lp->thread, NULL, run, lp) != 0) {
    snprintf(errbuf, errlen, "could not start the relay thread: %s",
             strerror(errno));
    if (lp->stop_pipe[0] >= 0) {
      close(lp->stop_pipe[0]);
      close(lp->stop_pipe[1]);
      lp->stop_pipe[0] = lp->stop_pipe[1] = -1;
    }
    long_poll_stop(lp);
    return NULL;
  }
  return lp;
}

const char *long_poll_bootstraps(const long_poll_t *lp) {
  return lp->bootstraps;
}

int long_poll_broker_down(long_poll_t *lp, int broker, int down) {
  if (!lp || broker < 1 || broker > lp->nb)
    return -1;
  pthread_mutex_lock(&lp->mu);
  lp->want_down[broker - 1] = down;
  unsigned mine = ++lp->changes;
  ssize_t w = write(lp->stop_pipe[1], "b", 1);
  (void)w; /* a full pipe already wakes the thread */
  while ((int)(lp->done - mine) < 0)
    pthread_cond_wait(&lp->applied, &lp->mu);
  int ok = down ? lp->lfd[broker - 1] < 0 : lp->lfd[broker - 1] >= 0;
  pthread_mutex_unlock(&lp->mu);
  return ok ? 0 : -1;
}

void long_poll_stop(long_poll_t *lp) {
  if (!lp)
    return;
  if (lp->stop_pipe[1] >= 0) {
    pthread_mutex_lock(&lp->mu);
    lp->stop = 1;
    pthread_mutex_unlock(&lp->mu);
    ssize_t w = write(lp->stop_pipe[1], "x", 1);
    (void)w;
    pthread_join(lp->thread, NULL);
    close(lp->stop_pipe[0]);
    close(lp->stop_pipe[1]);
  }
  for (int i = 0; i < lp->nb; i++)
    if (lp->lfd[i] >= 0)
      close(lp->lfd[i]);
  while (lp->conns) {
    conn_t *c = lp->conns;
    lp->conns = c->next;
    conn_free(c);
  }
  for (size_t i = 0; i < lp->ntopics; i++)
    free(lp->topics[i].name);
  free(lp->topics);
  static_members_free(lp->members);
  free(lp);
}
