/*
 * multipart.c — see multipart.h.
 *
 * The body is scanned once, left to right: delimiters are found with memmem
 * (linear in glibc), header blocks are parsed line by line inside their cap,
 * and a part's data is whatever lies between its blank line and the next
 * CRLF--boundary. No byte of the body is ever written or copied.
 */
#include "multipart.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MULTIPART_MAX_BOUNDARY 70 /* RFC 2046 5.1.1 */

static int fail(char *why, size_t whylen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *why, size_t whylen, int rc, const char *fmt, ...)
{
	if (why && whylen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static int is_ows(char c) { return c == ' ' || c == '\t'; }

/* RFC 7230 tchar */
static int is_tchar(unsigned char c) { return c > 0x20 && c < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", c); }

/* RFC 2046 bchars (space allowed, but not last) */
static int is_bchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || strchr("'()+_,-./:=? ", c);
}

/* A span of text. */
struct span {
	const char *p;
	size_t n;
};

static int span_ieq(struct span s, const char *lit)
{
	size_t n = strlen(lit);
	return s.n == n && strncasecmp(s.p, lit, n) == 0;
}

/*
 * Parameter walker over `; name=value` lists (Content-Type and
 * Content-Disposition share it). *pos starts after the main value. Returns 1
 * with a parameter, 0 at the end, <0 on a syntax error.
 */
static int next_param(const char *s, size_t n, size_t *pos, struct span *name, struct span *val)
{
	size_t i = *pos;
	while (i < n && is_ows(s[i]))
		i++;
	if (i == n)
		return 0;
	if (s[i] != ';')
		return -1;
	i++;
	while (i < n && is_ows(s[i]))
		i++;
	if (i == n)
		return 0; /* a trailing ';' is harmless */
	size_t a = i;
	while (i < n && is_tchar((unsigned char)s[i]))
		i++;
	if (i == a)
		return -1;
	name->p = s + a;
	name->n = i - a;
	while (i < n && is_ows(s[i]))
		i++;
	if (i == n || s[i] != '=')
		return -1;
	i++;
	while (i < n && is_ows(s[i]))
		i++;
	if (i < n && s[i] == '"') {
		a = ++i;
		while (i < n && s[i] != '"')
			i++;
		if (i == n)
			return -1;
		val->p = s + a;
		val->n = i - a;
		i++;
	} else {
		a = i;
		while (i < n && is_tchar((unsigned char)s[i]))
			i++;
		if (i == a)
			return -1;
		val->p = s + a;
		val->n = i - a;
	}
	*pos = i;
	return 1;
}

static int parse_boundary(const char *ct, size_t n, struct span *b, char *why, size_t whylen)
{
	static const char mt[] = "multipart/form-data";
	size_t i = 0;
	while (i < n && is_ows(ct[i]))
		i++;
	if (n - i < sizeof mt - 1 || strncasecmp(ct + i, mt, sizeof mt - 1) != 0)
		return fail(why, whylen, AT_EPARSE, "content type is not multipart/form-data");
	i += sizeof mt - 1;
	b->p = NULL;
	b->n = 0;
	struct span name, val;
	int r;
	while ((r = next_param(ct, n, &i, &name, &val)) > 0) {
		if (!span_ieq(name, "boundary"))
			continue;
		if (b->p)
			return fail(why, whylen, AT_EPARSE, "two boundary parameters");
		*b = val;
	}
	if (r < 0)
		return fail(why, whylen, AT_EPARSE, "bad content type parameters");
	if (!b->p)
		return fail(why, whylen, AT_EPARSE, "no boundary parameter");
	if (b->n == 0 || b->n > MULTIPART_MAX_BOUNDARY || b->p[b->n - 1] == ' ')
		return fail(why, whylen, AT_EPARSE, "boundary must be 1..70 characters, not ending in a space");
	for (size_t k = 0; k < b->n; k++)
		if (!is_bchar((unsigned char)b->p[k]))
			return fail(why, whylen, AT_EPARSE, "boundary has a character RFC 2046 does not allow");
	return 0;
}

/* Content-Disposition: form-data; name="..."; filename="..." */
static int parse_disposition(const char *v, size_t n, struct multipart_part *part, char *why, size_t whylen)
{
	static const char fd[] = "form-data";
	size_t i = 0;
	if (n < sizeof fd - 1 || strncasecmp(v, fd, sizeof fd - 1) != 0 ||
	    (n > sizeof fd - 1 && v[sizeof fd - 1] != ';' && !is_ows(v[sizeof fd - 1])))
		return fail(why, whylen, AT_EPARSE, "part disposition is not form-data");
	i = sizeof fd - 1;
	struct span name, val;
	int r;
	while ((r = next_param(v, n, &i, &name, &val)) > 0) {
		if (span_ieq(name, "name")) {
			if (part->name)
				return fail(why, whylen, AT_EPARSE, "part has two names");
			part->name = val.p;
			part->name_len = val.n;
		} else if (span_ieq(name, "filename")) {
			if (part->filename)
				return fail(why, whylen, AT_EPARSE, "part has two file names");
			part->filename = val.p;
			part->filename_len = val.n;
		}
	}
	if (r < 0)
		return fail(why, whylen, AT_EPARSE, "bad Content-Disposition parameters");
	if (!part->name || part->name_len == 0)
		return fail(why, whylen, AT_EPARSE, "part without a name");
	return 0;
}

/* Parses one header block starting at h (already past the boundary line);
 * *end is set past its blank line. */
static int parse_headers(const char *h, size_t avail, struct multipart_part *part, size_t *end, char *why,
			 size_t whylen)
{
	size_t i = 0, nlines = 0;
	size_t cap = avail < MULTIPART_MAX_HEADER_BYTES ? avail : MULTIPART_MAX_HEADER_BYTES;
	int have_cd = 0;
	for (;;) {
		const char *line = h + i;
		size_t lim = cap - i;
		const char *cr = memchr(line, '\r', lim);
		if (memchr(line, '\n', cr ? (size_t)(cr - line) : lim))
			return fail(why, whylen, AT_EPARSE, "bare LF in part headers");
		if (!cr || (size_t)(cr - line) + 1 >= lim) {
			if (cap == avail)
				return fail(why, whylen, AT_EPARSE, "part headers not terminated");
			return fail(why, whylen, AT_ETOOBIG, "part headers over %d bytes", MULTIPART_MAX_HEADER_BYTES);
		}
		if (cr[1] != '\n')
			return fail(why, whylen, AT_EPARSE, "bare CR in part headers");
		size_t len = (size_t)(cr - line);
		i += len + 2;
		if (len == 0)
			break;
		if (++nlines > MULTIPART_MAX_HEADERS)
			return fail(why, whylen, AT_ETOOBIG, "more than %d part headers", MULTIPART_MAX_HEADERS);
		if (is_ows(line[0]))
			return fail(why, whylen, AT_EPARSE, "folded part header");
		const char *colon = memchr(line, ':', len);
		if (!colon || colon == line)
			return fail(why, whylen, AT_EPARSE, "part header line without a name");
		struct span name = {line, (size_t)(colon - line)};
		for (size_t k = 0; k < name.n; k++)
			if (!is_tchar((unsigned char)name.p[k]))
				return fail(why, whylen, AT_EPARSE, "bad part header name");
		const char *v = colon + 1, *ve = line + len;
		while (v < ve && is_ows(*v))
			v++;
		while (ve > v && is_ows(ve[-1]))
			ve--;
		for (const char *p = v; p < ve; p++)
			if ((unsigned char)*p < 0x20 && *p != '\t')
				return fail(why, whylen, AT_EPARSE, "control character in a part header");
		if (span_ieq(name, "content-disposition")) {
			if (have_cd++)
				return fail(why, whylen, AT_EPARSE, "two Content-Disposition headers");
			int rc = parse_disposition(v, (size_t)(ve - v), part, why, whylen);
			if (rc < 0)
				return rc;
		} else if (span_ieq(name, "content-type")) {
			if (part->content_type)
				return fail(why, whylen, AT_EPARSE, "two Content-Type headers");
			part->content_type = v;
			part->content_type_len = (size_t)(ve - v);
		}
	}
	if (!have_cd)
		return fail(why, whylen, AT_EPARSE, "part without Content-Disposition");
	*end = i;
	return 0;
}

int multipart_parse(const char *content_type, size_t ctlen, const uint8_t *body, size_t len,
		    struct multipart_part *parts, size_t max_parts, size_t *nparts, char *why, size_t whylen)
{
	if (nparts)
		*nparts = 0;
	if (!content_type || (!body && len) || (!parts && max_parts) || !nparts)
		return fail(why, whylen, AT_EINVAL, "bad arguments");
	struct span b = {NULL, 0};
	int rc = parse_boundary(content_type, ctlen, &b, why, whylen);
	if (rc < 0)
		return rc;

	/* The delimiter is CRLF "--" boundary; the first one may start the
	 * body with no CRLF (and no preamble) before it. */
	char delim[4 + MULTIPART_MAX_BOUNDARY];
	memcpy(delim, "\r\n--", 4);
	memcpy(delim + 4, b.p, b.n);
	size_t dlen = 4 + b.n;
	const char *s = (const char *)body;
	size_t pos;
	if (len >= dlen - 2 && memcmp(s, delim + 2, dlen - 2) == 0) {
		pos = dlen - 2;
	} else {
		const char *d = memmem(s, len, delim, dlen);
		if (!d)
			return fail(why, whylen, AT_EPARSE, "no opening boundary");
		pos = (size_t)(d - s) + dlen;
	}

	size_t n = 0;
	for (;;) {
		/* pos is just past a boundary */
		if (len - pos >= 2 && s[pos] == '-' && s[pos + 1] == '-')
			break; /* close delimiter; the epilogue is ignored */
		while (pos < len && is_ows(s[pos]))
			pos++; /* transport padding */
		if (len - pos < 2 || s[pos] != '\r' || s[pos + 1] != '\n')
			return fail(why, whylen, AT_EPARSE,
				    len - pos < 2 ? "missing closing boundary" : "boundary not followed by CRLF");
		pos += 2;
		struct multipart_part part;
		memset(&part, 0, sizeof part);
		size_t hend = 0;
		rc = parse_headers(s + pos, len - pos, &part, &hend, why, whylen);
		if (rc < 0)
			return rc;
		pos += hend;
		const char *d = memmem(s + pos, len - pos, delim, dlen);
		if (!d)
			return fail(why, whylen, AT_EPARSE, "missing closing boundary");
		part.data = body + pos;
		part.len = (size_t)(d - (s + pos));
		if (n == max_parts)
			return fail(why, whylen, AT_ETOOBIG, "more than %zu parts", max_parts);
		parts[n++] = part;
		pos = (size_t)(d - s) + dlen;
	}
	*nparts = n;
	return 0;
}

const struct multipart_part *multipart_get(const struct multipart_part *parts, size_t n, const char *name)
{
	size_t nl = strlen(name);
	for (size_t i = 0; i < n; i++)
		if (parts[i].name_len == nl && memcmp(parts[i].name, name, nl) == 0)
			return &parts[i];
	return NULL;
}
