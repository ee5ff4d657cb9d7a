/* The saga timeline page of sagad's admin endpoint: static HTML, JS and
 * CSS (coordinator/admin/web/, embedded into the binary at build time) that
 * draw the saga list and one saga's steps on a time axis from the admin
 * API's JSON (GET /sagas, GET /sagas/{id}). No state, no I/O of its own;
 * loop thread only, like the server it registers on. */
#ifndef SAGAD_ADMIN_UI_H
#define SAGAD_ADMIN_UI_H

#include "admin_http.h"

/* Register GET / (a redirect to /ui), GET /ui (the list, filters in the
 * query: state, type, stuck, after), GET /ui/saga/{id} (the timeline),
 * GET /ui/app.js and GET /ui/app.css on s. The page reads the API routes of
 * admin_api_register on the same server. Returns 0, or -1 when out of
 * memory. */
int admin_ui_register(admin_http_t *s);

#endif
