/*
 * multipart.h — a strict, bounded, zero-copy multipart/form-data parser
 * (RFC 7578 over RFC 2046).
 *
 * Every pointer in a part points into the caller's content type or body
 * (borrowed: valid while they are). Nothing is allocated. Strict means: CRLF
 * line ends only, a closing boundary is required, every part needs a
 * Content-Disposition of form-data with a name, header blocks and the number
 * of parts are capped. Quoted parameter values are taken verbatim up to the
 * closing quote (browsers percent-encode quotes in names; backslashes in old
 * Windows file names stay as they are).
 */
#ifndef ATELIER_MULTIPART_H
#define ATELIER_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define MULTIPART_MAX_HEADER_BYTES 8192 /* one part's header block */
#define MULTIPART_MAX_HEADERS 16        /* header lines in one part */

struct multipart_part {
	const char *name; /* the form field name (not NUL-terminated) */
	size_t name_len;
	const char *filename; /* NULL when the part has none */
	size_t filename_len;
	const char *content_type; /* NULL when the part has none */
	size_t content_type_len;
	const uint8_t *data;
	size_t len;
};

/*
 * Parses body as multipart/form-data with the boundary from content_type (the
 * whole Content-Type header value). Fills up to max_parts parts and *nparts.
 * Errors: AT_EPARSE (malformed; `why` says where), AT_ETOOBIG (more than
 * max_parts parts or a header block over the cap), AT_EINVAL (bad arguments).
 */
int multipart_parse(const char *content_type, size_t ctlen, const uint8_t *body, size_t len,
		    struct multipart_part *parts, size_t max_parts, size_t *nparts, char *why,
		    size_t whylen) AT_MUST_CHECK;

/* The first part whose name is exactly `name`, or NULL. */
const struct multipart_part *multipart_get(const struct multipart_part *parts, size_t n, const char *name);

#endif
