/*
 * artifact_fs.c — the fs:// back end of the artifact store: files under
 * ROOT/sha256/ab/<hex>, written to ROOT/tmp first and renamed into place
 * after an fsync, so a reader sees a whole file or none. See artifact.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifact_impl.h"
#include "fsutil.h"
#include "log.h"

struct fs_store {
	struct artifact_store base;
	char root[3072];
};

static const char *root_of(const struct artifact_store *s) { return ((const struct fs_store *)s)->root; }

static int fs_path(const struct artifact_store *s, const char *sha, char *path, size_t len)
{
	if ((size_t)snprintf(path, len, "%s/sha256/%.2s/%s", root_of(s), sha, sha) >= len)
		return AT_EINVAL;
	return 0;
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

static int publish(struct fs_store *s, const char *tmp, const char *sha)
{
	char dir[3200], path[4096];
	snprintf(dir, sizeof dir, "%s/sha256/%.2s", s->root, sha);
	if (at_mkdir_p(dir) < 0) {
		unlink(tmp);
		return AT_EIO;
	}
	if (fs_path(&s->base, sha, path, sizeof path) < 0) {
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

static int fs_put_file(struct artifact_store *base, const char *src, char sha[65], uint64_t *size)
{
	struct fs_store *s = (struct fs_store *)base;
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

static int fs_put_bytes(struct artifact_store *base, const void *data, size_t len, char sha[65])
{
	struct fs_store *s = (struct fs_store *)base;
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

static int fs_get_file(const struct artifact_store *s, const char *sha, const char *dst)
{
	char path[4096];
	int rc = fs_path(s, sha, path, sizeof path);
	if (rc < 0)
		return rc;
	int in = open(path, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return AT_ENOTFOUND;
	char dir[4096];
	at_dirname(dst, dir, sizeof dir);
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

static int fs_uri(const struct artifact_store *s, const char *sha, char *uri, size_t len)
{
	if ((size_t)snprintf(uri, len, "fs://%s/sha256/%.2s/%s", root_of(s), sha, sha) >= len)
		return AT_EINVAL;
	return 0;
}

static int fs_stat(const struct artifact_store *s, const char *sha, uint64_t *size)
{
	char p[4096];
	struct stat st;
	if (fs_path(s, sha, p, sizeof p) < 0)
		return AT_EINVAL;
	if (stat(p, &st) != 0)
		return errno == ENOENT || errno == ENOTDIR ? AT_ENOTFOUND : AT_EIO;
	if (!S_ISREG(st.st_mode))
		return AT_ENOTFOUND;
	*size = (uint64_t)st.st_size;
	return 0;
}

static int fs_read_range(const struct artifact_store *s, const char *sha, uint64_t start, uint64_t end,
			 artifact_sink_fn fn, void *arg)
{
	char p[4096];
	if (fs_path(s, sha, p, sizeof p) < 0)
		return AT_EINVAL;
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? AT_ENOTFOUND : AT_EIO;
	char buf[1 << 16];
	uint64_t pos = start;
	int rc = 0;
	while (pos <= end) {
		uint64_t left = end - pos + 1;
		ssize_t n = pread(fd, buf, left < sizeof buf ? (size_t)left : sizeof buf, (off_t)pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* past the end of the file: the range was not satisfiable */
			rc = n < 0 ? AT_EIO : pos == start ? AT_EUNSATISFIABLE : 0;
			break;
		}
		if ((rc = fn(buf, (size_t)n, arg)) < 0)
			break;
		pos += (uint64_t)n;
	}
	close(fd);
	return rc;
}

static int fs_list(const struct artifact_store *base, int (*fn)(const struct artifact_info *, void *), void *arg)
{
	char top[3200];
	snprintf(top, sizeof top, "%s/sha256", root_of(base));
	DIR *d = opendir(top);
	if (!d)
		return errno == ENOENT ? 0 : AT_EIO;
	int rc = 0;
	struct dirent *e;
	while (rc == 0 && (e = readdir(d))) {
		if (strlen(e->d_name) != 2 || e->d_name[0] == '.')
			continue;
		char sub[3300];
		snprintf(sub, sizeof sub, "%s/%s", top, e->d_name);
		DIR *d2 = opendir(sub);
		if (!d2)
			continue;
		struct dirent *f;
		while (rc == 0 && (f = readdir(d2))) {
			/* only <hex> under its own two-digit folder is an artifact */
			if (!artifact_valid_sha(f->d_name) || strncmp(f->d_name, e->d_name, 2) != 0)
				continue;
			char p[3400];
			struct stat st;
			snprintf(p, sizeof p, "%s/%s", sub, f->d_name);
			if (stat(p, &st) != 0 || !S_ISREG(st.st_mode))
				continue;
			struct artifact_info in = {.size = (uint64_t)st.st_size, .mtime = (int64_t)st.st_mtime};
			memcpy(in.sha, f->d_name, 65);
			rc = fn(&in, arg);
		}
		closedir(d2);
	}
	closedir(d);
	return rc;
}

static int fs_delete(struct artifact_store *s, const char *sha)
{
	char p[4096];
	if (fs_path(s, sha, p, sizeof p) < 0)
		return AT_EINVAL;
	if (unlink(p) != 0 && errno != ENOENT)
		return AT_EIO;
	return 0;
}

static void fs_close(struct artifact_store *s) { free(s); }

static const struct artifact_ops fs_ops = {
	.close = fs_close,
	.put_file = fs_put_file,
	.put_bytes = fs_put_bytes,
	.path = fs_path,
	.uri = fs_uri,
	.stat = fs_stat,
	.get_file = fs_get_file,
	.read_range = fs_read_range,
	.list = fs_list,
	.del = fs_delete,
};

int artifact_fs_open(const char *path, struct artifact_store **out)
{
	if (!*path || strlen(path) >= 3000)
		return AT_EINVAL;
	struct fs_store *s = calloc(1, sizeof *s);
	if (!s)
		return AT_ENOMEM;
	s->base.ops = &fs_ops;
	snprintf(s->root, sizeof s->root, "%s", path);
	snprintf(s->base.uri, sizeof s->base.uri, "fs://%s", path);
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
	*out = &s->base;
	return 0;
}
