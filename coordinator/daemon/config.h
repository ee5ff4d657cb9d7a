/* sagad configuration: one property table (name, type, bounds, default,
 * description, validator, secret flag) filled from command-line options,
 * SAGAD_* environment variables and a config file, in that order of
 * precedence. Values are validated as they are set; one finalize step checks
 * the rules that span fields. This module reads the config file and the
 * environment block it is given, and never logs or exits. */
#ifndef SAGAD_CONFIG_H
#define SAGAD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <librdkafka/rdkafka.h>

#define SAGAD_CONFIG_ERRNO_MAP(X)                                             \
  X(OK, 0, "success")                                                          \
  X(UNKNOWN, -1, "unknown property")                                           \
  X(INVALID, -2, "invalid value")                                              \
  X(SYNTAX, -3, "malformed config line or option")                             \
  X(FILE, -4, "could not read config file")                                    \
  X(MISSING, -5, "required property not set or properties inconsistent")      \
  X(NOMEM, -6, "out of memory")

typedef enum {
#define SAGAD_CONFIG_ENUM(name, code, text) SAGAD_CONFIG_##name = (code),
  SAGAD_CONFIG_ERRNO_MAP(SAGAD_CONFIG_ENUM)
#undef SAGAD_CONFIG_ENUM
} sagad_config_err_t;

/* Static description / name of an error code ("unknown error" / "UNKNOWN_CODE"
 * for codes outside the map). */
const char *sagad_config_strerror(int err);
const char *sagad_config_err_name(int err);

/* Values of log.format. AUTO means text when stderr is a terminal, JSON lines
 * otherwise (resolved by the log module at set-up). */
typedef enum {
  SAGAD_LOG_FORMAT_AUTO = 0,
  SAGAD_LOG_FORMAT_TEXT = 1,
  SAGAD_LOG_FORMAT_JSON = 2,
} sagad_log_format_t;

/* One librdkafka property passed through as-is (kafka.<name> = value). */
typedef struct {
  char *name;  /* librdkafka name, without the "kafka." prefix */
  char *value;
} sagad_kafka_prop_t;

typedef struct sagad_config_priv sagad_config_priv_t;

/* The effective configuration. Fields are read-only for callers: change them
 * only through sagad_config_set(). Strings are owned by the config and live
 * until sagad_config_free(). */
typedef struct {
  char *store_conninfo;           /* libpq conninfo; may hold a password */
  char *kafka_bootstrap_servers;  /* required */
  char *topic_inbox;
  char *topic_notifications;
  char *topic_progress; /* "" = no progress notes */
  char *topic_dlq;
  char *group_id;
  char *definitions_dir;          /* required, must be a directory */
  int log_level;                  /* sagad_log_level_t (log.h) */
  int log_level_kafka;            /* the same, or SAGAD_LOG_INHERIT */
  int log_format;                 /* sagad_log_format_t */
  bool log_timestamps;
  int64_t batch_max_events;
  int64_t input_max_held;         /* back-pressure: 0 = none */
  char *admin_listen;             /* "host:port" */
  char *admin_allowed_hosts;      /* Host names answered besides loopback's;
                                     "" = by admin.listen, "*" = any */
  int64_t shutdown_timeout_ms;
  int64_t payload_max_bytes;
  int64_t output_cache_bytes;
  int64_t stuck_default_ms;
  char *otlp_endpoint;            /* "" = no traces exported */
  int64_t start_wait_ms;          /* wait for PostgreSQL and Kafka at start */
  /* Further librdkafka properties in the order they were first set. */
  sagad_kafka_prop_t *kafka_props;
  size_t kafka_nprops;
  sagad_config_priv_t *priv;
} sagad_config_t;

/* What the command line asks sagad to do. */
typedef enum {
  SAGAD_MODE_RUN = 0,
  SAGAD_MODE_HELP,         /* --help, -h */
  SAGAD_MODE_VERSION,      /* --version, -V */
  SAGAD_MODE_CHECK,        /* --check-config */
  SAGAD_MODE_REFERENCE,    /* --config-reference */
  SAGAD_MODE_MIGRATE,      /* --migrate */
  SAGAD_MODE_PROBE,        /* --probe */
} sagad_mode_t;

/* A new config holding every default. Returns NULL when out of memory.
 * Free with sagad_config_free(). */
sagad_config_t *sagad_config_new(void);

/* Free cfg and everything it owns. NULL is accepted. */
void sagad_config_free(sagad_config_t *cfg);

/* Set property `name` from its text form, validating it now. `origin` says
 * where the value came from ("sagad.conf:12", "environment SAGAD_X",
 * "option --x") and prefixes any error written to errbuf, e.g.
 * "sagad.conf:12: batch.max_events: must be between 1 and 100000, got 0".
 * Names "kafka.<p>" not in the table are librdkafka properties: checked with
 * rd_kafka_conf_set() and kept in order (a second set replaces the value in
 * place). On error cfg is unchanged. Returns 0, SAGAD_CONFIG_UNKNOWN (with a
 * "did you mean" hint), SAGAD_CONFIG_INVALID or SAGAD_CONFIG_NOMEM. Secret
 * values never appear in errbuf. */
int sagad_config_set(sagad_config_t *cfg, const char *name, const char *value,
                     const char *origin, char *errbuf, size_t errlen);

/* Read `name = value` lines from path with saga__conf_read (common/
 * conffile.h has the syntax: '#' comment lines, double-quoted values, no
 * inline comments). Errors name the file and line. Returns 0,
 * SAGAD_CONFIG_FILE, SAGAD_CONFIG_SYNTAX or a sagad_config_set() error. */
int sagad_config_load_file(sagad_config_t *cfg, const char *path,
                           char *errbuf, size_t errlen);

/* Apply SAGAD_<NAME> variables of envp (NULL-terminated "K=V" strings):
 * NAME is the property name upper-cased, dots and dashes as underscores.
 * Other SAGAD_KAFKA_* variables become librdkafka properties (lower-cased,
 * underscores as dots). SAGAD_CONFIG (the config file) is skipped; any other
 * SAGAD_* variable is an unknown property. */
int sagad_config_load_env(sagad_config_t *cfg, const char *const *envp,
                          char *errbuf, size_t errlen);

/* Cross-field rules and required properties; call once after all sources.
 * Returns 0 or SAGAD_CONFIG_MISSING / SAGAD_CONFIG_INVALID. */
int sagad_config_finalize(sagad_config_t *cfg, char *errbuf, size_t errlen);

/* The whole start-up sequence: parse argv, then defaults < config file
 * (--config FILE, else SAGAD_CONFIG) < environment < options, then finalize.
 * Options: --name=value, --set name=value, --config FILE, --help,
 * --version, --check-config, --migrate, --config-reference (--check-config
 * and --migrate together are refused). *mode says what to do;
 * for HELP, VERSION and REFERENCE no source is read and cfg keeps its
 * defaults. Returns 0 or the first error (errbuf says which and where). */
int sagad_config_load(sagad_config_t *cfg, int argc, const char *const *argv,
                      const char *const *envp, sagad_mode_t *mode, char *errbuf,
                      size_t errlen);

/* Write the effective config as `name = value` lines (readable back by
 * sagad_config_load_file), each non-default preceded by a "# from <origin>"
 * comment, librdkafka properties last. Secrets (store.conninfo's password,
 * kafka properties whose names hold "password", "secret", "key.pem" or
 * "oauthbearer.config") are masked. */
void sagad_config_write(const sagad_config_t *cfg, FILE *out);

/* Write the Markdown configuration reference (docs/configuration.md). */
void sagad_config_write_reference(FILE *out);

/* Write the --help text (options and a one-line list of properties). */
void sagad_config_write_usage(FILE *out, const char *argv0);

/* Apply kafka.bootstrap.servers and the passthrough properties, in order, to
 * conf (owned by the caller). Returns 0 or SAGAD_CONFIG_INVALID with the
 * librdkafka message in errbuf. Loop thread or any thread: reads cfg only. */
int sagad_config_kafka_apply(const sagad_config_t *cfg, rd_kafka_conf_t *conf,
                             char *errbuf, size_t errlen);

/* Copy store.conninfo into buf with any password replaced by "********"
 * (keyword and URI forms). Returns buf. */
char *sagad_config_mask_conninfo(const char *conninfo, char *buf, size_t len);

#endif
