/*
 * publish.h — published works on the node (issue 15's gallery; docs/gallery.md).
 *
 * POST /api/publish takes a work from the drawing page (sketch, painting as
 * shown, style, model version, title, name, consent to display), checks it
 * with lib/works.h and the sketch with the same normalisation atelierd will
 * run, makes its receipt, and writes it to the works spool (a second
 * spool.c instance, <spool>/works): the 202 carries the receipt once the
 * file is durable, whether atelierd is up or not. The uplink thread calls
 * publish_drain() to deliver the spool to POST /v1/works; atelierd keys works
 * by the receipt's hash, so a resend (an answer lost, a crash before the
 * unlink) is still one work.
 *
 * GET and DELETE /api/works/mine: the work whose receipt the header
 * X-Atelier-Receipt names, forwarded to atelierd (GET|DELETE
 * /v1/works/by-receipt); a work still in this node's spool is found (and
 * withdrawn) there.
 */
#ifndef SERVE_PUBLISH_H
#define SERVE_PUBLISH_H

#include "buf.h"
#include "err.h"
#include "http.h"
#include "http_client.h"

struct serve_app;
struct publish;

/* Opens <dir> as the works spool (blocking). */
int publish_open(const char *dir, int max_files, size_t max_bytes, struct publish **out) AT_MUST_CHECK;
void publish_free(struct publish *p);

void publish_post(http_req_t *req);
void publish_get_mine(http_req_t *req);
void publish_delete_mine(http_req_t *req);

/* Works written and not yet delivered (any thread; NULL: 0). */
int publish_waiting(struct publish *p);
/* Delivers the spool oldest first (the uplink thread). 0 once it is empty;
 * AT_EUNAVAILABLE when atelierd did not take one (retry later);
 * AT_ECANCELLED when the client's stop flag ended a call. */
int publish_drain(struct serve_app *app, struct http_client *c) AT_MUST_CHECK;
int publish_metrics(struct publish *p, struct at_buf *b) AT_MUST_CHECK;

#endif
