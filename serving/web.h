/*
 * web.h — the drawing page and its script and style sheet, embedded in the
 * binary at build time (web.c, .incbin of the web folder), or read once at start from
 * --web-dir for work on the page without rebuilding.
 */
#ifndef SERVE_WEB_H
#define SERVE_WEB_H

#include "err.h"
#include "http.h"

/* Before the loop starts; dir NULL = the embedded copies. Blocking. */
int web_init(const char *dir) AT_MUST_CHECK;
void web_free(void);
/* GET /, /app.js, /style.css */
void web_get(http_req_t *req);

#endif
