/*
 * browse.h — the operator's read side of the image store (issue 13): lists
 * of sketches and paintings with filters and cursor pagination, and the
 * record of rejected uploads (written off the request's path, listed here).
 */
#ifndef ATELIERD_BROWSE_H
#define ATELIERD_BROWSE_H

#include <stddef.h>

#include "app.h"

extern const struct http_route browse_routes[];
extern const size_t browse_nroutes;

/* Record that an upload of domain (0 sketch, 1 painting) was refused with err
 * (an AT_E* code; its name is the stored reason) and msg, size bytes of body,
 * from source/contributor (either may be NULL). Never the pixels. The insert
 * is sent asynchronously and its outcome ignored (a lost record costs less
 * than a slower reply); while BROWSE_REJECT_INFLIGHT inserts are pending,
 * further records are dropped (and logged), so a flood of bad uploads cannot
 * queue unbounded work on the database. The content type is read from req. */
#define BROWSE_REJECT_INFLIGHT 32
void browse_record_rejection(http_req_t *req, int domain, int err, const char *msg, size_t size, const char *source,
			     const char *contributor);

#endif
