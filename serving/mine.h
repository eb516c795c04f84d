/*
 * mine.h — GET and DELETE /api/sketches/mine: a contributor's status and
 * withdrawal of the sketch their receipt names (X-Atelier-Receipt header).
 * While the contribution waits in this node's spool the node answers itself
 * (pending; DELETE removes the file); afterwards it forwards the request with
 * its node token to atelierd (GET|DELETE /v1/sketches/by-receipt).
 */
#ifndef SERVE_MINE_H
#define SERVE_MINE_H

#include "http.h"

void mine_get(http_req_t *req);
void mine_delete(http_req_t *req);

#endif
