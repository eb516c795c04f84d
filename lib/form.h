/*
 * form.h — a request's multipart/form-data body, for the handlers that take
 * one (contributions and published works on the node, works on atelierd):
 * the Content-Type check, the parse (lib/multipart) and the error replies,
 * written once so that every such route refuses the same input the same way.
 */
#ifndef ATELIER_FORM_H
#define ATELIER_FORM_H

#include <stddef.h>

#include "err.h"
#include "http.h"
#include "multipart.h"

/* Parses req's body into parts (at most cap; *n set). On failure it has
 * replied — 415 naming what the route expects (fields, e.g. "an image
 * field") when the body is not multipart/form-data, or the parser's code
 * (400, or 413 for too many parts) with its reason — and returns the code. */
int form_parse(http_req_t *req, struct multipart_part *parts, size_t cap, size_t *n, const char *fields) AT_MUST_CHECK;

#endif
