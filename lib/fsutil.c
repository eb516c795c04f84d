/*
 * fsutil.c — see fsutil.h.
 */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHA_CHUNK ((size_t)64 << 10)

static int is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int at_mkdir_p(const char *path)
{
	char tmp[PATH_MAX];
	size_t n = path ? strlen(path) : 0;
	if (n == 0 || n >= sizeof tmp) {
		errno = n ? ENAMETOOLONG : EINVAL;
		return AT_EINVAL;
	}
	memcpy(tmp, path, n + 1);
	/* Each prefix that ends at a '/' (and the whole path) in turn; the
	 * first character is skipped so that "/x" does not try to create "". */
	for (char *p = tmp + 1;; p++) {
		if (*p && *p != '/')
			continue;
		char c = *p;
		*p = 0;
		if (mkdir(tmp, 0755) != 0) {
			/* EEXIST also answers for a file of that name: only a
			 * folder lets the walk (or the caller) go on. */
			if (errno != EEXIST)
				return AT_EIO;
			if (!is_dir(tmp)) {
				errno = ENOTDIR;
				return AT_EIO;
			}
		}
		if (!c)
			return 0;
		*p = c;
	}
}

int at_file_sha256(const char *path, char hex[65], uint64_t *size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? AT_ENOTFOUND : AT_EIO;
	/* On the heap: callers run on threads whose stacks we do not size. */
	unsigned char *buf = malloc(SHA_CHUNK);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int rc = buf && md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 ? 0 : AT_ENOMEM;
	uint64_t total = 0;
	while (rc == 0) {
		ssize_t n = read(fd, buf, SHA_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rc = AT_EIO;
		if (n <= 0)
			break;
		if (EVP_DigestUpdate(md, buf, (size_t)n) != 1)
			rc = AT_EINTERNAL;
		total += (uint64_t)n;
	}
	unsigned char d[32];
	if (rc == 0 && EVP_DigestFinal_ex(md, d, NULL) != 1)
		rc = AT_EINTERNAL;
	if (rc == 0) {
		at_hex_encode(hex, d, sizeof d);
		if (size)
			*size = total;
	}
	EVP_MD_CTX_free(md);
	free(buf);
	close(fd);
	return rc;
}

int at_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char d[32];
	if (EVP_Digest(data, len, d, NULL, EVP_sha256(), NULL) != 1)
		return AT_ENOMEM;
	at_hex_encode(out, d, sizeof d);
	return 0;
}

void at_dirname(const char *path, char *dir, size_t len)
{
	snprintf(dir, len, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	else
		snprintf(dir, len, ".");
}

void at_hex_encode(char *dst, const void *src, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *s = src;
	for (size_t i = 0; i < len; i++) {
		dst[2 * i] = digits[s[i] >> 4];
		dst[2 * i + 1] = digits[s[i] & 15];
	}
	dst[2 * len] = 0;
}
