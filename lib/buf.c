/*
 * buf.c — see buf.h. Growth doubles up to the cap; a failed append leaves the
 * buffer as it was.
 */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUF_DEFAULT_CAP ((size_t)64 << 20)

void at_buf_init(struct at_buf *b, size_t cap)
{
	memset(b, 0, sizeof *b);
	b->cap = cap ? cap : BUF_DEFAULT_CAP;
}

void at_buf_free(struct at_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->alloc = 0;
}

void at_buf_reset(struct at_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = 0;
}

static int buf_reserve(struct at_buf *b, size_t extra)
{
	size_t cap = b->cap ? b->cap : BUF_DEFAULT_CAP;
	if (extra > cap || b->len > cap - extra)
		return AT_ETOOBIG;
	size_t need = b->len + extra + 1;
	if (need <= b->alloc)
		return 0;
	size_t n = b->alloc ? b->alloc : 256;
	while (n < need)
		n *= 2;
	if (n > cap + 1)
		n = cap + 1;
	char *p = realloc(b->data, n);
	if (!p)
		return AT_ENOMEM;
	b->data = p;
	b->alloc = n;
	return 0;
}

int at_buf_add(struct at_buf *b, const void *data, size_t len)
{
	int rc = buf_reserve(b, len);
	if (rc < 0)
		return rc;
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = 0;
	return 0;
}

int at_buf_addstr(struct at_buf *b, const char *s) { return at_buf_add(b, s, strlen(s)); }

int at_buf_printf(struct at_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char small[512];
	int n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		return AT_EINVAL;
	if ((size_t)n < sizeof small)
		return at_buf_add(b, small, (size_t)n);
	int rc = buf_reserve(b, (size_t)n);
	if (rc < 0)
		return rc;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

int at_buf_add_file(struct at_buf *b, const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return AT_EIO;
	char chunk[65536];
	size_t n;
	int rc = 0;
	while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
		rc = at_buf_add(b, chunk, n);
	if (rc == 0 && ferror(f))
		rc = AT_EIO;
	fclose(f);
	return rc;
}

char *at_buf_steal(struct at_buf *b, size_t *len)
{
	char *p = b->data;
	if (len)
		*len = b->len;
	b->data = NULL;
	b->len = b->alloc = 0;
	return p;
}
