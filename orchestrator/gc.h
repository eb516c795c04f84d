/*
 * gc.h — POST /v1/gc: remove artifacts nothing in the database refers to
 * from the artifact store (fs:// or s3://), or with dry_run list what would
 * go. `atelier gc [--dry-run]` calls it.
 */
#ifndef ATELIER_ORCH_GC_H
#define ATELIER_ORCH_GC_H

#include "http.h"

extern const struct http_route gc_routes[];
extern const size_t gc_nroutes;

#endif
