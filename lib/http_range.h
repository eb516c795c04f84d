/*
 * http_range.h — the Range request header (RFC 9110 §14), as artifact
 * downloads read it: one byte range of a file of known size.
 *
 * A pure function over the header's bytes, apart from the server so that it
 * can be unit-tested and fuzzed (tests/fuzz/fuzz_range.c).
 */
#ifndef ATELIER_HTTP_RANGE_H
#define ATELIER_HTTP_RANGE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/*
 * Reads a Range header value (len bytes, not NUL-terminated) against a
 * representation of size bytes. Forms: "bytes=N-M", "bytes=N-" (to the end)
 * and "bytes=-S" (the last S bytes, the whole file when it is shorter); the
 * unit is case-insensitive; a last position past the end is cut to it
 * (§14.1.2). Numbers are ASCII digits only: no sign, no blank (blanks only
 * around the commas of a list), nothing after them; a number too large for
 * 64 bits counts as past any end.
 *
 * Returns
 *   1  one range, *first..*last (inclusive, inside the file): answer 206;
 *   0  a header to ignore, serve the whole file with 200 (§14.2 lets a server
 *      ignore Range): another unit than bytes, several ranges (we send no
 *      multipart/byteranges), or a suffix range of an empty file;
 *   AT_EUNSATISFIABLE  no byte of the file is asked for (N at or past the
 *      end, or "bytes=-0"): answer 416, its Content-Range giving the size;
 *   AT_EINVAL  not a Range header (M < N, a sign, "0--1", no '='...): 400.
 * *first and *last are set only when it returns 1.
 */
int http_range_parse(const char *h, size_t len, uint64_t size, uint64_t *first, uint64_t *last) AT_MUST_CHECK;

#endif
