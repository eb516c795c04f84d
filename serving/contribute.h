/*
 * contribute.h — POST /api/contribute: a visitor's sketch, validated on the
 * loop and written to the spool on the threadpool; the 202 goes out only once
 * the file is durable, so an accepted contribution survives a crash of the
 * node. The uplink (uplink.c) delivers it to atelierd later.
 */
#ifndef SERVE_CONTRIBUTE_H
#define SERVE_CONTRIBUTE_H

#include "http.h"

/* POST /api/contribute (multipart: image, consent=true, contributor). */
void contribute_post(http_req_t *req);

#endif
