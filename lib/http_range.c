/*
 * http_range.c — the Range request header (see http_range.h).
 *
 * Written by hand rather than with strtoull: strtoull takes a sign and
 * leading blanks, so "bytes=0--1" read as 0 to 2^64-1 and was served as a
 * 206 of the whole file. Every byte here is checked against RFC 9110's
 * grammar; numbers saturate at UINT64_MAX instead of wrapping.
 */
#include "http_range.h"

#include <string.h>
#include <strings.h>

struct spec {
	int suffix;     /* "-S" */
	int has_last;   /* "N-M" rather than "N-" */
	uint64_t first; /* N, or S for a suffix */
	uint64_t last;  /* M */
};

/* Digits from *p up to end, saturating; returns how many were read. */
static size_t read_digits(const char **p, const char *end, uint64_t *v)
{
	const char *s = *p;
	uint64_t x = 0;
	while (s < end && *s >= '0' && *s <= '9') {
		unsigned d = (unsigned)(*s - '0');
		x = x > (UINT64_MAX - d) / 10 ? UINT64_MAX : x * 10 + d;
		s++;
	}
	size_t n = (size_t)(s - *p);
	*p = s;
	*v = x;
	return n;
}

/* One range-spec of the bytes unit, s..end exactly. */
static int parse_spec(const char *s, const char *end, struct spec *out)
{
	memset(out, 0, sizeof *out);
	if (s < end && *s == '-') {
		s++;
		out->suffix = 1;
		if (!read_digits(&s, end, &out->first) || s != end)
			return AT_EINVAL;
		return 0;
	}
	if (!read_digits(&s, end, &out->first) || s == end || *s != '-')
		return AT_EINVAL;
	s++;
	if (s == end)
		return 0;
	out->has_last = 1;
	if (!read_digits(&s, end, &out->last) || s != end || out->last < out->first)
		return AT_EINVAL;
	return 0;
}

static int is_ows(char c) { return c == ' ' || c == '\t'; }

int http_range_parse(const char *h, size_t len, uint64_t size, uint64_t *first, uint64_t *last)
{
	const char *end = h + len;
	const char *eq = memchr(h, '=', len);
	if (!eq || eq == h)
		return AT_EINVAL;
	/* A unit we do not know must be ignored (RFC 9110 §14.2). */
	if ((size_t)(eq - h) != 5 || strncasecmp(h, "bytes", 5) != 0)
		return 0;
	const char *s = eq + 1;
	int multi = memchr(s, ',', (size_t)(end - s)) != NULL;
	int n = 0;
	struct spec one = {0};
	for (;;) {
		const char *comma = memchr(s, ',', (size_t)(end - s));
		const char *stop = comma ? comma : end;
		const char *a = s, *b = stop;
		if (multi) {
			/* a list: blanks around commas and empty elements are allowed (RFC 9110 §5.6.1) */
			while (a < b && is_ows(*a))
				a++;
			while (b > a && is_ows(b[-1]))
				b--;
		}
		if (a < b || !multi) {
			struct spec sp;
			if (parse_spec(a, b, &sp) < 0)
				return AT_EINVAL;
			if (n++ == 0)
				one = sp;
		}
		if (!comma)
			break;
		s = comma + 1;
	}
	if (n == 0)
		return AT_EINVAL;
	if (n > 1)
		return 0; /* no multipart/byteranges: the whole file, which holds every range asked for */
	if (one.suffix) {
		if (one.first == 0)
			return AT_EUNSATISFIABLE;
		if (size == 0)
			return 0; /* a suffix of nothing: no byte to name in a Content-Range */
		*first = one.first >= size ? 0 : size - one.first;
		*last = size - 1;
		return 1;
	}
	if (one.first >= size)
		return AT_EUNSATISFIABLE;
	*first = one.first;
	*last = one.has_last && one.last < size - 1 ? one.last : size - 1;
	return 1;
}
