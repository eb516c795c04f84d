/*
 * works_api.h — the gallery's works in atelierd (issue 15; sql/013_gallery.sql,
 * docs/gallery.md): serving nodes deliver published works (POST /v1/works,
 * node token, idempotent by receipt), read the changes feed and the images;
 * operators list, hide and unhide; a receipt's holder (through a node) reads
 * and withdraws its work.
 */
#ifndef ATELIERD_WORKS_API_H
#define ATELIERD_WORKS_API_H

#include "app.h"
#include "http.h"

extern const struct http_route works_api_routes[];
extern const size_t works_api_nroutes;

#endif
