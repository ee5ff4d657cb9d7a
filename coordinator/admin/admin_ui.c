/* The timeline page's routes (admin_ui.h): the embedded files as they
 * are. */
#include "admin_ui.h"

#include <stddef.h>

extern const unsigned char admin_web_index_html[];
extern const size_t admin_web_index_html_len;
extern const unsigned char admin_web_app_js[];
extern const size_t admin_web_app_js_len;
extern const unsigned char admin_web_app_css[];
extern const size_t admin_web_app_css_len;

typedef struct {
  const unsigned char *data;
  const size_t *len;
  const char *type;
} file_t;

static file_t page = {admin_web_index_html, &admin_web_index_html_len,
                            "text/html; charset=utf-8"};
static file_t script = {admin_web_app_js, &admin_web_app_js_len,
                              "text/javascript; charset=utf-8"};
static file_t style = {admin_web_app_css, &admin_web_app_css_len,
                             "text/css; charset=utf-8"};

static void serve(admin_http_req_t *req, void *arg) {
  const file_t *f = arg;
  admin_http_respond(req, 200, f->type, (const char *)f->data, *f->len);
}

static void to_ui(admin_http_req_t *req, void *arg) {
  (void)arg;
  admin_http_redirect(req, "/ui");
}

int admin_ui_register(admin_http_t *s) {
  /* The routes' args are static (never written): nothing to free. */
  int rc = admin_http_route(s, "GET", "/", to_ui, NULL);
  rc |= admin_http_route(s, "GET", "/ui", serve, &page);
  rc |= admin_http_route(s, "GET", "/ui/saga/{id}", serve, &page);
  rc |= admin_http_route(s, "GET", "/ui/app.js", serve, &script);
  rc |= admin_http_route(s, "GET", "/ui/app.css", serve, &style);
  return rc ? -1 : 0;
}
