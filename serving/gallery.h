/*
 * gallery.h — the public gallery every serving node shows (issue 15;
 * docs/gallery.md): GET /gallery (a wall of works, newest first, by style,
 * paged), GET /gallery/works/{id} (sketch beside painting), thumbnails and
 * images, and GET /api/gallery (the same wall as JSON).
 *
 * The node holds no database: a thread reads atelierd's changes feed
 * (GET /v1/works/changes?after=REV, every --gallery-poll seconds) into an
 * in-memory index of published works (metadata only, sorted newest first),
 * so a page is built from memory. A work hidden or withdrawn leaves the
 * index, and its cached images leave the cache, at the next poll.
 *
 * Images come from atelierd on first request (GET /v1/works/{id}/painting
 * and /sketch, on the threadpool), thumbnails are made from the painting
 * once (fitted into --gallery-thumb pixels, JPEG), and both are kept in a
 * memory cache bounded by --gallery-cache bytes (least recently used first
 * out). They are served with an ETag, Cache-Control and 304 on If-None-Match.
 */
#ifndef SERVE_GALLERY_H
#define SERVE_GALLERY_H

#include "buf.h"
#include "err.h"
#include "http.h"

struct serve_app;
struct gallery;

/* Starts the feed thread (app->cfg.atelierd set). */
int gallery_start(struct serve_app *app, struct gallery **out) AT_MUST_CHECK;
void gallery_stop(struct gallery *g);
/* Stops, joins and frees; NULL is a no-op. */
void gallery_free(struct gallery *g);

void gallery_get_wall(http_req_t *req);
void gallery_get_work(http_req_t *req);
void gallery_get_thumb(http_req_t *req);
void gallery_get_image(http_req_t *req);
void gallery_api_list(http_req_t *req);
int gallery_metrics(struct gallery *g, struct at_buf *b) AT_MUST_CHECK;

#endif
