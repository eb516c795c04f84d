/*
 * am_file.cpp — the two file kinds the shim writes: training checkpoints and
 * serving exports. Both share one layout (all integers little-endian):
 *
 *   off  size  field
 *     0     8  magic: "ATLRCKPT" (checkpoint) or "ATLRMODL" (serving export)
 *     8     4  format version (AM_FILE_VERSION)
 *    12     4  length C of the config JSON
 *    16     8  length P of the payload
 *    24    32  sha256 over the C + P bytes that follow the header
 *    56     C  model config, JSON text (am_config_to_json)
 *  56+C     P  payload: a torch::serialize archive of named tensors
 *
 * The file is exactly 56 + C + P bytes; anything else is truncated or padded
 * and rejected before torch sees a byte. Writes go to a temp file in the same
 * folder, are fsync'ed, renamed over the target and the folder is fsync'ed,
 * so a reader sees the old file or the new one, never half of one. The
 * payload is streamed to disk and hashed on the way, never held twice.
 */
#include <cerrno>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include "am_internal.hpp"
#include "err.h"

#define AM_FILE_VERSION 1u
#define AM_HEADER_SIZE 56
#define AM_CONFIG_MAX (1u << 20)

static const char *magic_of(am_file_kind k) { return k == AM_FILE_CHECKPOINT ? "ATLRCKPT" : "ATLRMODL"; }

static const char *name_of(am_file_kind k)
{
	return k == AM_FILE_CHECKPOINT ? "training checkpoint" : "serving export";
}

static void put_le(unsigned char *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static std::string errno_text(const char *what, const char *path)
{
	return std::string(what) + " " + path + ": " + strerror(errno);
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = (const char *)buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- writing ---- */

namespace
{
/* Owns the temp file until commit(); removes it on every other exit. */
struct temp_file {
	std::string path;
	int fd = -1;
	bool committed = false;
	~temp_file()
	{
		if (fd >= 0)
			close(fd);
		if (!path.empty() && !committed)
			unlink(path.c_str());
	}
};

struct sha256 {
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	~sha256() { EVP_MD_CTX_free(ctx); }
};
} // namespace

static int fsync_dir_of(const char *path)
{
	std::string copy(path);
	const char *dir = dirname(&copy[0]);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	close(fd);
	return rc;
}

static int file_write(const char *path, am_file_kind kind, const std::string &config, const am_payload_writer &payload,
		      am_status_t *st)
{
	if (config.size() > AM_CONFIG_MAX)
		return am_fail(st, AT_EINVAL, "config JSON too large");
	temp_file tmp;
	tmp.path = std::string(path) + ".tmp.XXXXXX";
	tmp.fd = mkostemp(&tmp.path[0], O_CLOEXEC);
	if (tmp.fd < 0) {
		int rc = errno == ENOENT ? AT_ENOTFOUND : AT_EIO;
		std::string msg = errno_text("cannot create a temp file next to", path);
		tmp.path.clear();
		return am_fail(st, rc, msg);
	}
	sha256 h;
	if (!h.ctx || EVP_DigestInit_ex(h.ctx, EVP_sha256(), nullptr) != 1)
		return am_fail(st, AT_ENOMEM, "sha256 init failed");

	unsigned char header[AM_HEADER_SIZE];
	memset(header, 0, sizeof header);
	if (write_all(tmp.fd, header, sizeof header) < 0 || write_all(tmp.fd, config.data(), config.size()) < 0)
		return am_fail(st, AT_EIO, errno_text("cannot write", tmp.path.c_str()));
	EVP_DigestUpdate(h.ctx, config.data(), config.size());

	uint64_t payload_len = 0;
	int write_errno = 0;
	/* torch's writer ignores a short count in some paths; the flag is what we trust. */
	am_sink sink = [&](const void *buf, size_t n) -> size_t {
		if (write_errno)
			return 0;
		if (write_all(tmp.fd, buf, n) < 0) {
			write_errno = errno ? errno : EIO;
			return 0;
		}
		EVP_DigestUpdate(h.ctx, buf, n);
		payload_len += n;
		return n;
	};
	payload(sink);
	if (write_errno) {
		errno = write_errno;
		return am_fail(st, AT_EIO, errno_text("cannot write", tmp.path.c_str()));
	}

	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	if (EVP_DigestFinal_ex(h.ctx, digest, &dlen) != 1 || dlen != 32)
		return am_fail(st, AT_EINTERNAL, "sha256 failed");
	memcpy(header, magic_of(kind), 8);
	put_le(header + 8, AM_FILE_VERSION, 4);
	put_le(header + 12, config.size(), 4);
	put_le(header + 16, payload_len, 8);
	memcpy(header + 24, digest, 32);
	if (pwrite(tmp.fd, header, sizeof header, 0) != (ssize_t)sizeof header)
		return am_fail(st, AT_EIO, errno_text("cannot write", tmp.path.c_str()));
	if (fsync(tmp.fd) < 0)
		return am_fail(st, AT_EIO, errno_text("cannot fsync", tmp.path.c_str()));
	int fd = tmp.fd;
	tmp.fd = -1;
	if (close(fd) < 0)
		return am_fail(st, AT_EIO, errno_text("cannot close", tmp.path.c_str()));
	if (rename(tmp.path.c_str(), path) < 0)
		return am_fail(st, AT_EIO, errno_text("cannot rename onto", path));
	tmp.committed = true;
	/* The rename is durable only once the folder is. */
	if (fsync_dir_of(path) < 0)
		return am_fail(st, AT_EIO, errno_text("cannot fsync the folder of", path));
	return am_ok(st);
}

int am_file_write(const char *path, am_file_kind kind, const std::string &config_json, const am_payload_writer &payload,
		  am_status_t *st)
{
	if (!path || !*path)
		return am_fail(st, AT_EINVAL, "path is empty");
	try {
		return file_write(path, kind, config_json, payload, st);
	} catch (...) {
		return am_fail_current_exception(st, (std::string("writing ") + path).c_str());
	}
}

/* ---- reading ---- */

static int read_file(const char *path, std::string *out, am_status_t *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return am_fail(st, errno == ENOENT ? AT_ENOTFOUND : AT_EIO, errno_text("cannot open", path));
	struct stat sb;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return am_fail(st, AT_EIO, std::string(path) + ": not a regular file");
	}
	out->resize((size_t)sb.st_size);
	size_t got = 0;
	while (got < out->size()) {
		ssize_t n = read(fd, &(*out)[got], out->size() - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			std::string m = errno_text("cannot read", path);
			close(fd);
			return am_fail(st, AT_EIO, m);
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	out->resize(got);
	return 0;
}

static int check_magic(const char *path, const unsigned char *p, size_t len, am_file_kind want, am_status_t *st)
{
	if (len < 8 || (memcmp(p, "ATLRCKPT", 8) != 0 && memcmp(p, "ATLRMODL", 8) != 0))
		return am_fail(st, AT_EUNSUPPORTED, std::string(path) + ": not an Atelier model file (bad magic)");
	if (memcmp(p, magic_of(want), 8) != 0) {
		am_file_kind got = want == AM_FILE_CHECKPOINT ? AM_FILE_MODEL : AM_FILE_CHECKPOINT;
		return am_fail(st, AT_EUNSUPPORTED,
			       std::string(path) + ": is a " + name_of(got) + ", expected a " + name_of(want) +
				       " (bad magic)");
	}
	return 0;
}

static int file_parse(const char *path, am_file_kind kind, const std::string &data, std::string *config, size_t *off,
		      size_t *len, am_status_t *st)
{
	const unsigned char *p = (const unsigned char *)data.data();
	size_t size = data.size();
	int rc = check_magic(path, p, size, kind, st);
	if (rc < 0)
		return rc;
	if (size < AM_HEADER_SIZE)
		return am_fail(st, AT_ECORRUPT,
			       std::string(path) + ": truncated header (" + std::to_string(size) + " bytes)");
	uint32_t version = (uint32_t)get_le(p + 8, 4);
	if (version != AM_FILE_VERSION)
		return am_fail(st, AT_EUNSUPPORTED,
			       std::string(path) + ": unsupported format version " + std::to_string(version) +
				       " (this build reads " + std::to_string(AM_FILE_VERSION) + ")");
	uint64_t clen = get_le(p + 12, 4), plen = get_le(p + 16, 8);
	if (clen > AM_CONFIG_MAX || plen > (uint64_t)1 << 50)
		return am_fail(st, AT_ECORRUPT, std::string(path) + ": corrupt header (absurd lengths)");
	uint64_t want = AM_HEADER_SIZE + clen + plen;
	if (size < want)
		return am_fail(st, AT_ECORRUPT,
			       std::string(path) + ": truncated (" + std::to_string(size) + " bytes, header says " +
				       std::to_string(want) + ")");
	if (size > want)
		return am_fail(st, AT_ECORRUPT,
			       std::string(path) + ": trailing bytes (" + std::to_string(size) +
				       " bytes, header says " + std::to_string(want) + ")");
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	if (EVP_Digest(p + AM_HEADER_SIZE, clen + plen, digest, &dlen, EVP_sha256(), nullptr) != 1 || dlen != 32)
		return am_fail(st, AT_EINTERNAL, "sha256 failed");
	if (memcmp(digest, p + 24, 32) != 0)
		return am_fail(st, AT_ECORRUPT, std::string(path) + ": sha256 mismatch (corrupt file)");
	config->assign((const char *)p + AM_HEADER_SIZE, clen);
	*off = AM_HEADER_SIZE + clen;
	*len = plen;
	return 0;
}

int am_file_parse(const char *name, am_file_kind kind, const std::string &data, std::string *config_json,
		  size_t *payload_off, size_t *payload_len, am_status_t *st)
{
	try {
		return file_parse(name, kind, data, config_json, payload_off, payload_len, st);
	} catch (...) {
		return am_fail_current_exception(st, (std::string("reading ") + name).c_str());
	}
}

int am_file_read(const char *path, am_file_kind kind, std::string *config_json, std::string *data, size_t *payload_off,
		 size_t *payload_len, am_status_t *st)
{
	if (!path || !*path)
		return am_fail(st, AT_EINVAL, "path is empty");
	try {
		int rc = read_file(path, data, st);
		if (rc < 0)
			return rc;
		return file_parse(path, kind, *data, config_json, payload_off, payload_len, st);
	} catch (...) {
		return am_fail_current_exception(st, (std::string("reading ") + path).c_str());
	}
}

int am_file_peek_kind(const char *path, am_file_kind *kind, am_status_t *st)
{
	if (!path || !*path)
		return am_fail(st, AT_EINVAL, "path is empty");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return am_fail(st, errno == ENOENT ? AT_ENOTFOUND : AT_EIO, errno_text("cannot open", path));
	unsigned char m[8];
	ssize_t n = read(fd, m, sizeof m);
	close(fd);
	if (n == 8 && !memcmp(m, "ATLRCKPT", 8)) {
		*kind = AM_FILE_CHECKPOINT;
		return 0;
	}
	if (n == 8 && !memcmp(m, "ATLRMODL", 8)) {
		*kind = AM_FILE_MODEL;
		return 0;
	}
	return am_fail(st, AT_EUNSUPPORTED, std::string(path) + ": not an Atelier model file (bad magic)");
}
