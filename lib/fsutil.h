/*
 * fsutil.h — small file helpers several binaries share: `mkdir -p`, the
 * sha256 of a file or of a buffer, and the lowercase hex form every digest is
 * written in. One copy each, so they cannot drift (there were three, three
 * and five; and three of sha256-of-a-buffer-then-hex).
 *
 * Blocking file I/O: call from threads, CLIs or a uv threadpool job, never
 * from an event loop thread.
 */
#ifndef ATELIER_FSUTIL_H
#define ATELIER_FSUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Creates path and every missing parent (mode 0755). A folder that already
 * exists is success; a component that exists but is not a folder is AT_EIO
 * with errno ENOTDIR, as is any other mkdir failure (errno tells which);
 * "" or a path of PATH_MAX bytes or more is AT_EINVAL. */
int at_mkdir_p(const char *path) AT_MUST_CHECK;

/* sha256 of a file's bytes as 64 lowercase hex digits; size (may be NULL)
 * gets the byte count. Reads through a 64 KiB buffer whatever the file's
 * size. AT_ENOTFOUND when there is no such file, AT_EIO when it cannot be
 * read; hex is left untouched on failure. */
int at_file_sha256(const char *path, char hex[65], uint64_t *size) AT_MUST_CHECK;

/* sha256 of len bytes at data as 64 lowercase hex digits and a NUL (the form
 * artifacts, pipeline hashes and cache keys are stored in). AT_ENOMEM when
 * OpenSSL cannot set up the digest; out is left untouched then. */
int at_sha256_hex(const void *data, size_t len, char out[65]) AT_MUST_CHECK;

/* The folder that holds path, into dir (len bytes): "a/b/c" -> "a/b", "c"
 * -> "." (truncated to fit, like snprintf). */
void at_dirname(const char *path, char *dir, size_t len);

/* Writes 2 * len lowercase hex digits and a NUL: dst holds 2 * len + 1. */
void at_hex_encode(char *dst, const void *src, size_t len);

#endif
