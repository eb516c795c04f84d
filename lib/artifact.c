/*
 * artifact.c — the fs:// back end of the artifact store. See artifact.h.
 */
#include "artifact.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"

struct artifact_store {
	char root[3072];
	char uri[3100];
};

int artifact_store_open(const char *uri, struct artifact_store **out)
{
	if (!uri || !*uri)
		uri = "fs://var/artifacts";
	if (strncmp(uri, "s3://", 5) == 0)
		return AT_EUNSUPPORTED;
	const char *path = strncmp(uri, "fs://", 5) == 0 ? uri + 5 : uri;
	if (!*path || strlen(path) >= 3000)
		return AT_EINVAL;
	struct artifact_store *s = calloc(1, sizeof *s);
	if (!s)
		return AT_ENOMEM;
	snprintf(s->root, sizeof s->root, "%s", path);
	snprintf(s->uri, sizeof s->uri, "fs://%s", path);
	char sub[3200];
	snprintf(sub, sizeof sub, "%s/tmp", s->root);
	int rc = at_mkdir_p(sub);
	if (rc == 0) {
		snprintf(sub, sizeof sub, "%s/sha256", s->root);
		rc = at_mkdir_p(sub);
	}
	if (rc < 0) {
		log_error("artifacts: cannot create %s", s->root);
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void artifact_store_close(struct artifact_store *s) { free(s); }
const char *artifact_store_uri(const struct artifact_store *s) { return s->uri; }

int artifact_valid_sha(const char *h)
{
	if (!h || strlen(h) != 64)
		return 0;
	for (int i = 0; i < 64; i++)
		if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
			return 0;
	return 1;
}

int artifact_path(const struct artifact_store *s, const char *sha, char *path, size_t len)
{
	if (!artifact_valid_sha(sha))
		return AT_EINVAL;
	snprintf(path, len, "%s/sha256/%.2s/%s", s->root, sha, sha);
	return 0;
}

int artifact_exists(const struct artifact_store *s, const char *sha)
{
	char p[4096];
	struct stat st;
	return artifact_path(s, sha, p, sizeof p) == 0 && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Read in to EOF, hashing and writing everything to out. */
static int hash_stream(int in, int out, char sha[65], uint64_t *size)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!md)
		return AT_ENOMEM;
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	char buf[1 << 16];
	uint64_t total = 0;
	int rc = 0;
	for (;;) {
		ssize_t n = read(in, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? AT_EIO : 0;
			break;
		}
		EVP_DigestUpdate(md, buf, (size_t)n);
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				rc = AT_EIO;
				break;
			}
			off += w;
		}
		if (rc < 0)
			break;
		total += (uint64_t)n;
	}
	unsigned char d[32];
	EVP_DigestFinal_ex(md, d, NULL);
	EVP_MD_CTX_free(md);
	if (rc == 0) {
		at_hex_encode(sha, d, sizeof d);
		if (size)
			*size = total;
	}
	return rc;
}

/* Copy in to a new temp file in tmpdir while hashing, and fsync it. */
static int copy_hashing(int in, const char *tmpdir, char sha[65], uint64_t *size, char *tmp_out, size_t tmplen)
{
	snprintf(tmp_out, tmplen, "%s/put.XXXXXX", tmpdir);
	int out = mkstemp(tmp_out);
	if (out < 0)
		return AT_EIO;
	int rc = hash_stream(in, out, sha, size);
	if (rc == 0 && fsync(out) < 0)
		rc = AT_EIO;
	close(out);
	if (rc < 0)
		unlink(tmp_out);
	return rc;
}

static int publish(struct artifact_store *s, const char *tmp, const char *sha)
{
	char dir[3200], path[4096];
	snprintf(dir, sizeof dir, "%s/sha256/%.2s", s->root, sha);
	if (at_mkdir_p(dir) < 0) {
		unlink(tmp);
		return AT_EIO;
	}
	if (artifact_path(s, sha, path, sizeof path) < 0) {
		unlink(tmp);
		return AT_EINVAL;
	}
	if (access(path, F_OK) == 0) {
		/* same name = same bytes: keep the one that is there */
		unlink(tmp);
		return 0;
	}
	chmod(tmp, 0644);
	if (rename(tmp, path) < 0) {
		unlink(tmp);
		return AT_EIO;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

int artifact_put_file(struct artifact_store *s, const char *src, char sha[65], uint64_t *size)
{
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return AT_EIO;
	char tmpdir[3200], tmp[3300];
	snprintf(tmpdir, sizeof tmpdir, "%s/tmp", s->root);
	int rc = copy_hashing(in, tmpdir, sha, size, tmp, sizeof tmp);
	close(in);
	if (rc < 0)
		return rc;
	return publish(s, tmp, sha);
}

int artifact_put_bytes(struct artifact_store *s, const void *data, size_t len, char sha[65])
{
	char tmp[3300];
	snprintf(tmp, sizeof tmp, "%s/tmp/put.XXXXXX", s->root);
	int fd = mkstemp(tmp);
	if (fd < 0)
		return AT_EIO;
	const char *p = data;
	size_t off = 0;
	int rc = 0;
	while (off < len) {
		ssize_t w = write(fd, p + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = AT_EIO;
			break;
		}
		off += (size_t)w;
	}
	if (rc == 0 && fsync(fd) < 0)
		rc = AT_EIO;
	close(fd);
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	rc = at_sha256_hex(data, len, sha);
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	return publish(s, tmp, sha);
}

int artifact_get_file(const struct artifact_store *s, const char *sha, const char *dst)
{
	char path[4096];
	int rc = artifact_path(s, sha, path, sizeof path);
	if (rc < 0)
		return rc;
	int in = open(path, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return AT_ENOTFOUND;
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", dst);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	else
		snprintf(dir, sizeof dir, ".");
	char tmp[4200], got[65];
	rc = copy_hashing(in, dir, got, NULL, tmp, sizeof tmp);
	close(in);
	if (rc < 0)
		return rc;
	if (strcmp(got, sha) != 0) {
		unlink(tmp);
		log_error("artifacts: %s does not match its sha256 (got %s)", path, got);
		return AT_ECORRUPT;
	}
	if (rename(tmp, dst) < 0) {
		unlink(tmp);
		return AT_EIO;
	}
	return 0;
}
