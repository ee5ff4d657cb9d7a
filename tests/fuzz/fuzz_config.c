/* Fuzz target: the sagad config loader. The input is a config file, read
 * through sagad_config_load_file from a scratch file; what loads is
 * finalized, written back with sagad_config_write, and that text must load
 * again (the header promises it is "readable back") into the same
 * effective configuration. sagad_config_mask_conninfo gets the raw input
 * as a conninfo too. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"

static char in_path[64];
static char out_path[64];

static void remove_scratch(void) {
  if (in_path[0])
    unlink(in_path);
  if (out_path[0])
    unlink(out_path);
}

static void make_scratch(char *path, size_t len) {
  snprintf(path, len, "/tmp/saga-fuzz-config-XXXXXX");
  int fd = mkstemp(path);
  FUZZ_ASSERT(fd >= 0);
  close(fd);
}

static void write_file(const char *path, const uint8_t *data, size_t size) {
  int fd = open(path, O_WRONLY | O_TRUNC);
  FUZZ_ASSERT(fd >= 0);
  size_t off = 0;
  while (off < size) {
    ssize_t n = write(fd, data + off, size - off);
    FUZZ_ASSERT(n > 0);
    off += (size_t)n;
  }
  close(fd);
}

/* The effective config as text, in a malloc'd string (free()). */
static char *dump(const sagad_config_t *cfg) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  FUZZ_ASSERT(f != NULL);
  sagad_config_write(cfg, f);
  FUZZ_ASSERT(fclose(f) == 0);
  return text;
}

/* Drop the "# from <origin>" lines, which differ between two loads. */
static void strip_origins(char *text) {
  char *w = text;
  for (char *r = text; *r;) {
    char *nl = strchr(r, '\n');
    size_t n = nl ? (size_t)(nl - r) + 1 : strlen(r);
    if (strncmp(r, "# from ", 7) != 0) {
      memmove(w, r, n);
      w += n;
    }
    r += n;
  }
  *w = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!in_path[0]) {
    make_scratch(in_path, sizeof in_path);
    make_scratch(out_path, sizeof out_path);
    atexit(remove_scratch);
  }
  char err[512];
  char *conninfo = malloc(size + 1);
  FUZZ_ASSERT(conninfo != NULL);
  memcpy(conninfo, data, size);
  conninfo[size] = '\0';
  char masked[256];
  FUZZ_ASSERT(sagad_config_mask_conninfo(conninfo, masked, sizeof masked) ==
              masked);
  FUZZ_ASSERT(memchr(masked, '\0', sizeof masked) != NULL);
  free(conninfo);

  write_file(in_path, data, size);
  sagad_config_t *cfg = sagad_config_new();
  FUZZ_ASSERT(cfg != NULL);
  err[0] = '\0';
  int rc = sagad_config_load_file(cfg, in_path, err, sizeof err);
  FUZZ_ASSERT(rc <= 0);
  FUZZ_ASSERT(rc == 0 || err[0] != '\0');
  (void)sagad_config_err_name(rc);
  (void)sagad_config_strerror(rc);
  if (rc == 0) {
    (void)sagad_config_finalize(cfg, err, sizeof err);
    char *first = dump(cfg);
    write_file(out_path, (const uint8_t *)first, strlen(first));
    sagad_config_t *again = sagad_config_new();
    FUZZ_ASSERT(again != NULL);
    rc = sagad_config_load_file(again, out_path, err, sizeof err);
    if (rc != 0)
      fprintf(stderr, "written config does not load back: %s\n", err);
    FUZZ_ASSERT(rc == 0);
    char *second = dump(again);
    strip_origins(first);
    strip_origins(second);
    FUZZ_ASSERT(strcmp(first, second) == 0);
    free(first);
    free(second);
    sagad_config_free(again);
  }
  sagad_config_free(cfg);
  return 0;
}
