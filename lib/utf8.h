/*
 * utf8.h — checking and cutting text that came from the network before it
 * reaches PostgreSQL (whose text type refuses invalid UTF-8 and NUL) or a
 * JSON document.
 *
 * Valid means RFC 3629: shortest form, no surrogates (U+D800..U+DFFF), nothing
 * above U+10FFFF. NUL is refused as well: PostgreSQL text cannot hold it and a
 * C string would silently end there.
 */
#ifndef ATELIER_UTF8_H
#define ATELIER_UTF8_H

#include <stddef.h>

#include "err.h"

/* 0 when s[0..len) is valid UTF-8 without NUL; else AT_EUNPROCESSABLE, with
 * the offset of the first byte that is not part of a valid character in
 * *bad_at (bad_at may be NULL). */
int utf8_check(const void *s, size_t len, size_t *bad_at) AT_MUST_CHECK;

/* The longest prefix of s[0..len), at most max bytes, that does not end inside
 * a character: len when len <= max, else max backed off over up to three
 * continuation bytes. For valid UTF-8 the prefix is valid UTF-8. */
size_t utf8_cut(const void *s, size_t len, size_t max);

#endif
