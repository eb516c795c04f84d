/*
 * stylize.h — POST /api/stylize: sketch in, 512×512 JPEG painting out.
 *
 * Compatible with the original Flask endpoint (multipart contentImage + an
 * integer style), plus a reference painting (styleImage) and mixing of two
 * styles (style/styleImage with style2/styleImage2 and alpha). Requests are
 * admitted on the loop (cheap checks, model reference acquired, queue bound),
 * then decoded, run and JPEG-encoded on the uv threadpool, at most
 * cfg.threads at once; the rest wait in a FIFO of at most cfg.max_queue.
 */
#ifndef SERVE_STYLIZE_H
#define SERVE_STYLIZE_H

#include "buf.h"
#include "err.h"
#include "http.h"

struct serve_app;
struct stylize_queue;

int stylize_queue_new(struct stylize_queue **out) AT_MUST_CHECK;
void stylize_queue_free(struct stylize_queue *q);
/* Requests admitted and not yet answered (waiting + running). */
int stylize_queue_depth(const struct stylize_queue *q);
/* Prometheus lines: inferences started, jobs dropped because their client left. */
int stylize_metrics(const struct stylize_queue *q, struct at_buf *b) AT_MUST_CHECK;

void stylize_post(http_req_t *req);

#endif
