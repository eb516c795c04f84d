/*
 * utf8.c — see utf8.h. A byte-at-a-time decoder after the table in RFC 3629
 * section 4 (the second byte's range depends on the first to exclude
 * overlong forms, surrogates and code points above U+10FFFF).
 */
#include "utf8.h"

#include <stdint.h>

int utf8_check(const void *s, size_t len, size_t *bad_at)
{
	const uint8_t *p = s;
	size_t i = 0;
	while (i < len) {
		uint8_t c = p[i];
		size_t n;                     /* continuation bytes that follow */
		uint8_t lo = 0x80, hi = 0xBF; /* the second byte's range */
		if (c == 0)
			goto bad;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF) {
			n = 1;
		} else if (c >= 0xE0 && c <= 0xEF) {
			n = 2;
			if (c == 0xE0)
				lo = 0xA0; /* overlong below U+0800 */
			else if (c == 0xED)
				hi = 0x9F; /* surrogates */
		} else if (c >= 0xF0 && c <= 0xF4) {
			n = 3;
			if (c == 0xF0)
				lo = 0x90; /* overlong below U+10000 */
			else if (c == 0xF4)
				hi = 0x8F; /* above U+10FFFF */
		} else {
			goto bad; /* a continuation byte, C0/C1 (overlong) or F5..FF */
		}
		if (len - i <= n)
			goto bad; /* cut short */
		if (p[i + 1] < lo || p[i + 1] > hi)
			goto bad;
		for (size_t k = 2; k <= n; k++)
			if ((p[i + k] & 0xC0) != 0x80)
				goto bad;
		i += n + 1;
	}
	return 0;
bad:
	if (bad_at)
		*bad_at = i;
	return AT_EUNPROCESSABLE;
}

size_t utf8_cut(const void *s, size_t len, size_t max)
{
	const uint8_t *p = s;
	if (len <= max)
		return len;
	size_t n = max;
	/* p[n] is the first byte dropped: while it continues a character,
	 * that character started inside the prefix and must go too. */
	for (int k = 0; k < 3 && n > 0 && (p[n] & 0xC0) == 0x80; k++)
		n--;
	return n;
}
