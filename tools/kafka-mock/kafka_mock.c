/* saga-kafka-mock: runs librdkafka's mock cluster (rdkafka_mock.h) as a
 * standalone process so that every Kafka client -- ours, kcat, other
 * languages' -- can talk to it over the real wire protocol on 127.0.0.1.
 * It writes the bootstrap list to a file and stdout, serves a line-based
 * control socket for fault injection, and runs until SIGTERM/SIGINT.
 * Clients reach the brokers through the long-poll relay (long_poll.h)
 * unless --no-long-poll.
 * Development and tests only: it keeps messages in memory and drops the
 * oldest past about 5 MiB per partition. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "long_poll.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: saga-kafka-mock [options]\n"
          "\n"
          "Runs an in-memory Kafka cluster (librdkafka's mock cluster) on\n"
          "127.0.0.1 with random ports, until SIGTERM or SIGINT.\n"
          "\n"
          "options:\n"
          "  --brokers N            number of brokers (default 3)\n"
          "  --bootstrap-file PATH  write the bootstrap list to PATH\n"
          "  --control PATH         serve the control socket at PATH\n"
          "  --topic NAME:PARTS     create a topic (repeatable); other\n"
          "                         topics are auto-created with 4 partitions\n"
          "  --no-long-poll         let clients talk to the mock's brokers\n"
          "                         directly: a fetch that finds nothing is\n"
          "                         then answered only after its whole\n"
          "                         fetch.wait.max.ms, even when data comes\n"
          "                         meanwhile (by default a relay in front\n"
          "                         answers it when a produce lands, as a\n"
          "                         broker does; the bootstrap list names\n"
          "                         the relay's ports)\n"
          "  -h, --help             show this help\n"
          "\n"
          "control socket: one command per line, answered by 'ok' or\n"
          "'error: <reason>':\n"
          "  ping\n"
          "  topic-create NAME PARTITIONS REPLICATION\n"
          "  broker-down ID | broker-up ID\n"
          "  broker-rtt ID MS\n"
          "  push-errors APIKEY ERRCODE COUNT   (e.g. 0 = Produce, 1 = Fetch,\n"
          "                                      8 = OffsetCommit)\n"
          "  clear-errors APIKEY\n"
          "  broker-push-errors ID APIKEY ERRCODE COUNT [RTT_MS]\n"
          "                         the next COUNT requests of APIKEY to\n"
          "                         broker ID fail with ERRCODE (0: succeed)\n"
          "                         after RTT_MS more (default 0)\n"
          "  broker-errors-left ID APIKEY\n"
          "                         answers the number of those not yet\n"
          "                         taken by a request, then ok\n"
          "  partition-leader TOPIC PARTITION BROKER\n"
          "  topic-error TOPIC ERRCODE          (0 clears)\n"
          "  coordinator-set group|transaction KEY BROKER\n"
          "                         coordinate group KEY (or transactional\n"
          "                         id KEY) from BROKER instead of the one\n"
          "                         its hash picks\n"
          "  bootstrap\n"
          "  bootstrap-direct       the brokers' own ports, past the\n"
          "                         long-poll relay (the same list with\n"
          "                         --no-long-poll)\n"
          "\n"
          "client mode: saga-kafka-mock --send PATH COMMAND...\n"
          "  sends one command to a running mock's control socket, prints\n"
          "  the answer, and exits 0 on 'ok'.\n");
}

/* Client mode: send one command line to the control socket at path. */
static int send_command(const char *path, int argc, char **argv) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sa.sun_path) {
    fprintf(stderr, "saga-kafka-mock: control path too long: %s\n", path);
    return 2;
  }
  strcpy(sa.sun_path, path);
  char line[1024];
  size_t used = 0;
  for (int i = 0; i < argc; i++) {
    int n = snprintf(line + used, sizeof line - used, "%s%s", i ? " " : "",
                     argv[i]);
    if (n < 0 || (size_t)n >= sizeof line - used - 1) {
      fprintf(stderr, "saga-kafka-mock: command too long\n");
      return 2;
    }
    used += (size_t)n;
  }
  line[used++] = '\n';
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    fprintf(stderr, "saga-kafka-mock: could not connect to %s: %s\n", path,
            strerror(errno));
    if (fd >= 0)
      close(fd);
    return 1;
  }
  if (write(fd, line, used) != (ssize_t)used) {
    close(fd);
    return 1;
  }
  shutdown(fd, SHUT_WR);
  char out[2048];
  size_t got = 0;
  ssize_t r;
  while (got < sizeof out - 1 &&
         (r = read(fd, out + got, sizeof out - 1 - got)) > 0)
    got += (size_t)r;
  out[got] = '\0';
  close(fd);
  fputs(out, stdout);
  return strstr(out, "ok\n") && !strstr(out, "error:") ? 0 : 1;
}

static int write_file_atomic(const char *path, const char *text) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
    return -1;
  FILE *f = fopen(tmp, "w");
  if (!f)
    return -1;
  int ok = fprintf(f, "%s\n", text) > 0;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    unlink(tmp);
    return -1;
  }
  return 0;
}

static int listen_unix(const char *path) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sa.sun_path) {
    fprintf(stderr, "saga-kafka-mock: control path too long: %s\n", path);
    return -1;
  }
  strcpy(sa.sun_path, path);
  unlink(path);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 8) != 0) {
    fprintf(stderr, "saga-kafka-mock: could not listen on %s: %s\n", path,
            strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

/* Execute one control command; writes the answer into out. */
static const char *client_bootstraps; /* the relay's, or the mock's */
static long_poll_t *relay;            /* NULL with --no-long-poll */

static void control_exec(rd_kafka_mock_cluster_t *mc, char *line, char *out,
                         size_t outsz) {
  char *save = NULL;
  char *cmd = strtok_r(line, " \t\r\n", &save);
  char *a[5] = {0};
  for (int i = 0; i < 5; i++)
    a[i] = strtok_r(NULL, " \t\r\n", &save);
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

  if (!cmd) {
    snprintf(out, outsz, "error: empty command\n");
    return;
  }
  if (!strcmp(cmd, "ping")) {
    snprintf(out, outsz, "ok\n");
    return;
  } else if (!strcmp(cmd, "bootstrap")) {
    snprintf(out, outsz, "%s\nok\n", client_bootstraps);
    return;
  } else if (!strcmp(cmd, "bootstrap-direct")) {
    snprintf(out, outsz, "%s\nok\n", rd_kafka_mock_cluster_bootstraps(mc));
    return;
  } else if (!strcmp(cmd, "topic-create") && a[2]) {
    err = rd_kafka_mock_topic_create(mc, a[0], atoi(a[1]), atoi(a[2]));
  } else if (!strcmp(cmd, "broker-down") && a[0]) {
    /* the relay's port refuses connections as the broker does */
    if (relay && long_poll_broker_down(relay, atoi(a[0]), 1))
      err = RD_KAFKA_RESP_ERR__INVALID_ARG;
    else
      err = rd_kafka_mock_broker_set_down(mc, atoi(a[0]));
  } else if (!strcmp(cmd, "broker-up") && a[0]) {
    err = rd_kafka_mock_broker_set_up(mc, atoi(a[0]));
    if (!err && relay && long_poll_broker_down(relay, atoi(a[0]), 0))
      err = RD_KAFKA_RESP_ERR__FAIL;
  } else if (!strcmp(cmd, "broker-rtt") && a[1]) {
    err = rd_kafka_mock_broker_set_rtt(mc, atoi(a[0]), atoi(a[1]));
  } else if (!strcmp(cmd, "push-errors") && a[2]) {
    int cnt = atoi(a[2]);
    if (cnt <= 0 || cnt > 10000) {
      snprintf(out, outsz, "error: COUNT must be 1..10000\n");
      return;
    }
    rd_kafka_resp_err_t *errs = calloc((size_t)cnt, sizeof *errs);
    if (!errs) {
      snprintf(out, outsz, "error: out of memory\n");
      return;
    }
    for (int i = 0; i < cnt; i++)
      errs[i] = (rd_kafka_resp_err_t)atoi(a[1]);
    rd_kafka_mock_push_request_errors_array(mc, (int16_t)atoi(a[0]),
                                            (size_t)cnt, errs);
    free(errs);
  } else if (!strcmp(cmd, "broker-push-errors") && a[3]) {
    /* One tuple a call: the library takes them as variadic arguments. */
    int cnt = atoi(a[3]);
    if (cnt <= 0 || cnt > 10000) {
      snprintf(out, outsz, "error: COUNT must be 1..10000\n");
      return;
    }
    for (int i = 0; i < cnt && !err; i++)
      err = rd_kafka_mock_broker_push_request_error_rtts(
          mc, atoi(a[0]), (int16_t)atoi(a[1]), 1,
          (rd_kafka_resp_err_t)atoi(a[2]), a[4] ? atoi(a[4]) : 0);
  } else if (!strcmp(cmd, "broker-errors-left") && a[1]) {
    size_t left = 0;
    err = rd_kafka_mock_broker_error_stack_cnt(mc, atoi(a[0]),
                                               (int16_t)atoi(a[1]), &left);
    if (!err) {
      snprintf(out, outsz, "%zu\nok\n", left);
      return;
    }
  } else if (!strcmp(cmd, "clear-errors") && a[0]) {
    rd_kafka_mock_clear_request_errors(mc, (int16_t)atoi(a[0]));
  } else if (!strcmp(cmd, "partition-leader") && a[2]) {
    err = rd_kafka_mock_partition_set_leader(mc, a[0], atoi(a[1]), atoi(a[2]));
  } else if (!strcmp(cmd, "coordinator-set") && a[2]) {
    if (strcmp(a[0], "group") != 0 && strcmp(a[0], "transaction") != 0) {
      snprintf(out, outsz,
               "error: coordinator-set wants group or "
               "transaction, got %s\n",
               a[0]);
      return;
    }
    err = rd_kafka_mock_coordinator_set(mc, a[0], a[1], atoi(a[2]));
  } else if (!strcmp(cmd, "topic-error") && a[1]) {
    rd_kafka_mock_topic_set_error(mc, a[0], (rd_kafka_resp_err_t)atoi(a[1]));
  } else {
    snprintf(out, outsz, "error: unknown command or missing arguments: %s\n",
             cmd);
    return;
  }
  if (err)
    snprintf(out, outsz, "error: %s\n", rd_kafka_err2str(err));
  else
    snprintf(out, outsz, "ok\n");
}

int main(int argc, char **argv) {
  int brokers = 3;
  const char *bootstrap_file = NULL;
  const char *control_path = NULL;
  int long_poll = 1;
  char errstr[512];

  if (argc >= 4 && !strcmp(argv[1], "--send"))
    return send_command(argv[2], argc - 3, argv + 3);
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(argv[i], "--brokers") && i + 1 < argc) {
      brokers = atoi(argv[++i]);
      if (brokers < 1 || brokers > 16) {
        fprintf(stderr, "saga-kafka-mock: --brokers must be 1..16\n");
        return 2;
      }
    } else if (!strcmp(argv[i], "--bootstrap-file") && i + 1 < argc) {
      bootstrap_file = argv[++i];
    } else if (!strcmp(argv[i], "--control") && i + 1 < argc) {
      control_path = argv[++i];
    } else if (!strcmp(argv[i], "--topic") && i + 1 < argc) {
      i++; /* created once the cluster exists, below */
    } else if (!strcmp(argv[i], "--no-long-poll")) {
      long_poll = 0;
    } else {
      fprintf(stderr, "saga-kafka-mock: unknown option: %s\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }

  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
  rd_kafka_t *rk =
      rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!rk) {
    fprintf(stderr, "saga-kafka-mock: could not create handle: %s\n", errstr);
    return 1;
  }
  rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
  if (!mc) {
    fprintf(stderr, "saga-kafka-mock: could not create mock cluster\n");
    rd_kafka_destroy(rk);
    return 1;
  }
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--topic") && i + 1 < argc) {
      char name[256];
      int parts = 0;
      const char *spec = argv[++i];
      const char *colon = strrchr(spec, ':');
      if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof name ||
          (parts = atoi(colon + 1)) < 1) {
        fprintf(stderr, "saga-kafka-mock: --topic wants NAME:PARTITIONS, "
                        "got %s\n", spec);
        rd_kafka_mock_cluster_destroy(mc);
        rd_kafka_destroy(rk);
        return 2;
      }
      memcpy(name, spec, (size_t)(colon - spec));
      name[colon - spec] = '\0';
      rd_kafka_mock_topic_create(mc, name, parts, brokers < 3 ? brokers : 3);
    }
  }

  const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
  long_poll_t *lp = NULL;
  if (long_poll && !(lp = long_poll_start(bootstraps, errstr, sizeof errstr))) {
    fprintf(stderr, "saga-kafka-mock: long-poll relay: %s\n", errstr);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 1;
  }
  if (lp)
    bootstraps = long_poll_bootstraps(lp);
  relay = lp;
  client_bootstraps = bootstraps;
  int ctl = -1;
  if (control_path && (ctl = listen_unix(control_path)) < 0) {
    long_poll_stop(lp);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 1;
  }
  if (bootstrap_file && write_file_atomic(bootstrap_file, bootstraps) != 0) {
    fprintf(stderr, "saga-kafka-mock: could not write %s: %s\n",
            bootstrap_file, strerror(errno));
    long_poll_stop(lp);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 1;
  }
  printf("%s\n", bootstraps);
  fflush(stdout);

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  while (!stop_requested) {
    struct pollfd pfd = {.fd = ctl, .events = POLLIN};
    int n = poll(&pfd, ctl >= 0 ? 1 : 0, 500);
    if (n <= 0 || !(pfd.revents & POLLIN))
      continue;
    int c = accept(ctl, NULL, NULL);
    if (c < 0)
      continue;
    /* One short-lived client at a time: read lines until EOF. */
    char buf[1024];
    size_t used = 0;
    for (;;) {
      struct pollfd cp = {.fd = c, .events = POLLIN};
      if (poll(&cp, 1, 5000) <= 0)
        break;
      ssize_t r = read(c, buf + used, sizeof buf - 1 - used);
      if (r <= 0)
        break;
      used += (size_t)r;
      buf[used] = '\0';
      char *nl;
      while ((nl = strchr(buf, '\n')) != NULL) {
        *nl = '\0';
        char out[1024];
        control_exec(mc, buf, out, sizeof out);
        if (write(c, out, strlen(out)) < 0)
          break;
        size_t rest = used - (size_t)(nl + 1 - buf);
        memmove(buf, nl + 1, rest);
        used = rest;
        buf[used] = '\0';
      }
      if (used == sizeof buf - 1)
        used = 0; /* over-long line: drop it */
    }
    close(c);
  }

  if (ctl >= 0) {
    close(ctl);
    unlink(control_path);
  }
  if (bootstrap_file)
    unlink(bootstrap_file);
  long_poll_stop(lp);
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(rk);
  return 0;
}
