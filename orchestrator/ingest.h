/*
 * ingest.h — image upload and read handlers (see ingest.c).
 */
#ifndef ATELIERD_INGEST_H
#define ATELIERD_INGEST_H

#include "app.h"
#include "buf.h"
#include "http.h"

void ingest_post_sketch(http_req_t *req);
void ingest_post_painting(http_req_t *req);
void ingest_get_sketch(http_req_t *req);
void ingest_get_sketch_png(http_req_t *req);
void ingest_get_painting(http_req_t *req);
void ingest_get_painting_png(http_req_t *req);
int ingest_metrics(const struct app *app, struct at_buf *b) AT_MUST_CHECK;

#endif
