/* Fuzz target: the admin endpoint's HTTP/1.1 request parser
 * (admin_http_parse), the code that reads bytes from any client that can
 * reach the admin port. Oracles: the answer is one of the documented ones
 * (a length within the input, 0 = more bytes needed, or -400, -413, -431,
 * -501, -505); a complete request has a method and a path and a head no
 * longer than itself; and the parse is prefix-stable: every prefix of a
 * complete request asks for more bytes or is refused, and the same bytes
 * followed by more (a pipelined request) give the same length. */
#include <string.h>

#include "admin_http.h"
#include "fuzz.h"

static int parse(const uint8_t *data, size_t size,
                 const admin_http_limits_t *lim) {
  static admin_http_req_t req; /* large: keep it off the stack */
  memset(&req, 0, sizeof req);
  int rc = admin_http_parse(&req, (const char *)data, size, lim);
  FUZZ_ASSERT(rc == 0 || rc == -400 || rc == -413 || rc == -431 ||
              rc == -501 || rc == -505 || (rc > 0 && (size_t)rc <= size));
  if (rc > 0) {
    FUZZ_ASSERT(req.method != NULL && req.path != NULL);
    FUZZ_ASSERT(req.head_len > 0 && req.head_len <= (size_t)rc);
  }
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* sagad's defaults, and small limits so the ceilings get exercised. */
  admin_http_limits_t dflt = {.max_head = 8192, .max_body = 1 << 20};
  admin_http_limits_t small = {.max_head = 256, .max_body = 64};
  const admin_http_limits_t *limits[] = {&dflt, &small};
  for (size_t l = 0; l < 2; l++) {
    int rc = parse(data, size, limits[l]);
    if (rc <= 0)
      continue;
    /* a shorter prefix is never a complete request of another length */
    int pre = parse(data, (size_t)rc - 1, limits[l]);
    FUZZ_ASSERT(pre <= 0);
    /* a pipelined request after it does not change where it ends */
    uint8_t *more = malloc((size_t)rc + 16);
    FUZZ_ASSERT(more != NULL);
    memcpy(more, data, (size_t)rc);
    memcpy(more + rc, "GET / HTTP/1.1\r\n", 16);
    FUZZ_ASSERT(parse(more, (size_t)rc + 16, limits[l]) == rc);
    free(more);
  }
  return 0;
}
