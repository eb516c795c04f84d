/*
 * buf.h — a growable byte buffer with a hard cap (curl's dynbuf idea): every
 * append checks the cap, so data fed from the network can never grow past it.
 */
#ifndef ATELIER_BUF_H
#define ATELIER_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "err.h"

struct at_buf {
	char *data; /* always NUL-terminated when non-NULL */
	size_t len;
	size_t alloc;
	size_t cap; /* 0 = default cap (64 MiB) */
};

void at_buf_init(struct at_buf *b, size_t cap);
void at_buf_free(struct at_buf *b);
void at_buf_reset(struct at_buf *b);
int at_buf_add(struct at_buf *b, const void *data, size_t len) AT_MUST_CHECK; /* AT_ETOOBIG past cap */
int at_buf_addstr(struct at_buf *b, const char *s) AT_MUST_CHECK;
int at_buf_printf(struct at_buf *b, const char *fmt, ...) AT_MUST_CHECK __attribute__((format(printf, 2, 3)));
/* Append a whole file (AT_EIO if unreadable, AT_ETOOBIG past the cap). */
int at_buf_add_file(struct at_buf *b, const char *path) AT_MUST_CHECK;
/* Hand the data to the caller (who frees it); the buffer is left empty. */
char *at_buf_steal(struct at_buf *b, size_t *len);

#endif
