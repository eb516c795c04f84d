/*
 * spool.c — the on-disk contribution spool (see spool.h). It owns the file
 * format: spool_write() lays out magic, metadata line and image, spool_read()
 * takes them apart, and nothing else knows the layout. It knows nothing of
 * HTTP, the uplink or the model (POST /api/contribute is contribute.c), so a
 * program that only needs the spool links it alone.
 */
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"

#define SPOOL_MAGIC "ATSPOOL1\n"
#define SPOOL_SUFFIX ".sk"

struct spool {
	char *dir;
	int max_files;
	size_t max_bytes;
	pthread_mutex_t mu;
	pthread_cond_t sent; /* signalled when the uplink ends a send */
	char sending[4200];  /* the path the uplink is sending, "" when none */
	int files;           /* written or reserved */
	int ready;           /* written (what the uplink can send) */
	size_t bytes;
	uint32_t seq;
	uint64_t accepted, full, written_failed, removed, withdrawn;
};

static int has_suffix(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);
	return n > m && strcmp(s + n - m, suf) == 0;
}

int spool_open(const char *dir, int max_files, size_t max_bytes, struct spool **out)
{
	if (at_mkdir_p(dir) < 0) {
		log_error("spool: cannot create %s: %s", dir, strerror(errno));
		return AT_EIO;
	}
	DIR *d = opendir(dir);
	if (!d)
		return AT_EIO;
	struct spool *s = calloc(1, sizeof *s);
	if (!s || !(s->dir = strdup(dir))) {
		free(s);
		closedir(d);
		return AT_ENOMEM;
	}
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->sent, NULL);
	s->max_files = max_files;
	s->max_bytes = max_bytes;
	struct dirent *e;
	while ((e = readdir(d))) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (strncmp(e->d_name, ".tmp-", 5) == 0) {
			/* a write that never reached its rename: never acknowledged */
			unlink(path);
			continue;
		}
		struct stat st;
		if (has_suffix(e->d_name, SPOOL_SUFFIX) && stat(path, &st) == 0) {
			s->files++;
			s->ready++;
			s->bytes += (size_t)st.st_size;
		}
	}
	closedir(d);
	if (s->files)
		log_info("spool: %d contribution(s) (%zu bytes) waiting from before", s->files, s->bytes);
	*out = s;
	return 0;
}

void spool_free(struct spool *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->sent);
	free(s->dir);
	free(s);
}

int spool_reserve(struct spool *s, size_t bytes)
{
	int rc = 0;
	pthread_mutex_lock(&s->mu);
	if (s->files + 1 > s->max_files || s->bytes + bytes > s->max_bytes) {
		s->full++;
		rc = AT_ETOOBIG;
	} else {
		s->files++;
		s->bytes += bytes;
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

void spool_unreserve(struct spool *s, size_t bytes)
{
	pthread_mutex_lock(&s->mu);
	s->files--;
	s->bytes -= bytes;
	pthread_mutex_unlock(&s->mu);
}

size_t spool_file_size(size_t meta_len, size_t img_len) { return strlen(SPOOL_MAGIC) + meta_len + 1 + img_len; }

static int key_valid(const char *key)
{
	size_t n = key ? strlen(key) : 0;
	return n >= 16 && n <= 64 && strspn(key, "0123456789abcdef") == n;
}

int spool_write(struct spool *s, const char *meta, const void *img, size_t img_len)
{
	return spool_write_keyed(s, NULL, meta, img, img_len);
}

int spool_write_keyed(struct spool *s, const char *key, const char *meta, const void *img, size_t img_len)
{
	if (key && !key_valid(key))
		return AT_EINVAL;
	/* the metadata is one line: a newline inside would end it early */
	size_t meta_len = strlen(meta);
	if (memchr(meta, '\n', meta_len))
		return AT_EINVAL;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	pthread_mutex_lock(&s->mu);
	uint32_t seq = s->seq++;
	pthread_mutex_unlock(&s->mu);
	/* Names sort by arrival: 16 hex digits of nanoseconds, then a counter
	 * for contributions within the same nanosecond tick, then the pid. */
	char name[160], tmp[4200], final[4200];
	snprintf(name, sizeof name, "%016llx-%08x-%d%s%s",
		 (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec, seq, (int)getpid(),
		 key ? "-" : "", key ? key : "");
	snprintf(tmp, sizeof tmp, "%s/.tmp-%s", s->dir, name);
	snprintf(final, sizeof final, "%s/%s%s", s->dir, name, SPOOL_SUFFIX);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		goto fail;
	struct iovec iov[4] = {{SPOOL_MAGIC, strlen(SPOOL_MAGIC)},
			       {(void *)meta, meta_len},
			       {"\n", 1},
			       {(void *)img, img_len}};
	int at = 0;
	while (at < 4) {
		ssize_t w = writev(fd, iov + at, 4 - at);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			goto fail_fd;
		/* a short write: step past what went out and write the rest */
		size_t done = (size_t)w;
		while (at < 4 && done >= iov[at].iov_len)
			done -= iov[at++].iov_len;
		if (at < 4) {
			iov[at].iov_base = (char *)iov[at].iov_base + done;
			iov[at].iov_len -= done;
		}
	}
	if (fsync(fd) != 0)
		goto fail_fd;
	close(fd);
	if (rename(tmp, final) != 0)
		goto fail_tmp;
	/* the rename itself must reach the disk before we acknowledge */
	int dfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		if (fsync(dfd) != 0)
			log_warn("spool: fsync of %s: %s", s->dir, strerror(errno));
		close(dfd);
	}
	pthread_mutex_lock(&s->mu);
	s->ready++;
	s->accepted++;
	pthread_mutex_unlock(&s->mu);
	return 0;
fail_fd:
	close(fd);
fail_tmp:
	unlink(tmp);
fail:
	log_error("spool: cannot write %s: %s", final, strerror(errno));
	return AT_EIO;
}

int spool_oldest(struct spool *s, char *path, size_t len)
{
	DIR *d = opendir(s->dir);
	if (!d)
		return AT_EIO;
	char best[256] = "";
	struct dirent *e;
	while ((e = readdir(d)))
		if (has_suffix(e->d_name, SPOOL_SUFFIX) && strlen(e->d_name) < sizeof best &&
		    (!best[0] || strcmp(e->d_name, best) < 0))
			snprintf(best, sizeof best, "%s", e->d_name);
	closedir(d);
	if (!best[0])
		return AT_ENOTFOUND;
	snprintf(path, len, "%s/%s", s->dir, best);
	return 0;
}

int spool_read(const char *path, json_t **meta, uint8_t **img, size_t *len)
{
	*meta = NULL;
	*img = NULL;
	FILE *f = fopen(path, "rb");
	if (!f)
		return AT_EIO;
	int rc = AT_ECORRUPT;
	char *buf = NULL;
	struct stat st;
	if (fstat(fileno(f), &st) != 0 || st.st_size <= 0 || st.st_size > (1 << 30))
		goto out;
	size_t n = (size_t)st.st_size;
	buf = malloc(n);
	if (!buf) {
		rc = AT_ENOMEM;
		goto out;
	}
	if (fread(buf, 1, n, f) != n)
		goto out;
	size_t off;
	rc = spool_decode((const uint8_t *)buf, n, meta, &off);
	if (rc < 0)
		goto out;
	*len = n - off;
	memmove(buf, buf + off, *len);
	*img = (uint8_t *)buf;
	buf = NULL;
out:
	free(buf);
	fclose(f);
	return rc;
}

int spool_decode(const uint8_t *buf, size_t n, json_t **meta, size_t *img_off)
{
	*meta = NULL;
	size_t ml = strlen(SPOOL_MAGIC);
	if (n < ml || memcmp(buf, SPOOL_MAGIC, ml) != 0)
		return AT_ECORRUPT;
	const uint8_t *nl = memchr(buf + ml, '\n', n - ml);
	if (!nl)
		return AT_ECORRUPT;
	*meta = json_loadb((const char *)buf + ml, (size_t)(nl - buf) - ml, 0, NULL);
	if (!json_is_object(*meta)) {
		json_decref(*meta);
		*meta = NULL;
		return AT_ECORRUPT;
	}
	*img_off = (size_t)(nl + 1 - buf);
	return 0;
}

void spool_remove(struct spool *s, const char *path)
{
	struct stat st;
	size_t size = stat(path, &st) == 0 ? (size_t)st.st_size : 0;
	if (unlink(path) != 0) {
		log_error("spool: cannot remove %s: %s", path, strerror(errno));
		return;
	}
	pthread_mutex_lock(&s->mu);
	s->files--;
	s->ready--;
	s->bytes -= size <= s->bytes ? size : s->bytes;
	s->removed++;
	pthread_mutex_unlock(&s->mu);
}

/* Under s->mu or not: a listing of the folder. */
static int find_locked(struct spool *s, const char *key, char *path, size_t len)
{
	if (!key_valid(key))
		return AT_ENOTFOUND;
	char tail[80];
	snprintf(tail, sizeof tail, "-%s%s", key, SPOOL_SUFFIX);
	DIR *d = opendir(s->dir);
	if (!d)
		return AT_EIO;
	int rc = AT_ENOTFOUND;
	struct dirent *e;
	while (rc == AT_ENOTFOUND && (e = readdir(d)))
		if (e->d_name[0] != '.' && has_suffix(e->d_name, tail)) {
			snprintf(path, len, "%s/%s", s->dir, e->d_name);
			rc = 0;
		}
	closedir(d);
	return rc;
}

int spool_find(struct spool *s, const char *key, char *path, size_t len) { return find_locked(s, key, path, len); }

int spool_withdraw(struct spool *s, const char *key, int wait_s)
{
	char path[4200];
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += wait_s;
	pthread_mutex_lock(&s->mu);
	int rc;
	/* Found and being sent: wait for the answer, then look again (it is
	 * gone when delivered, back in the queue when the send failed). */
	while ((rc = find_locked(s, key, path, sizeof path)) == 0 && strcmp(path, s->sending) == 0)
		if (pthread_cond_timedwait(&s->sent, &s->mu, &until) != 0) {
			rc = AT_EBUSY;
			break;
		}
	if (rc == 0) {
		struct stat st;
		size_t size = stat(path, &st) == 0 ? (size_t)st.st_size : 0;
		if (unlink(path) == 0) {
			s->files--;
			s->ready--;
			s->bytes -= size <= s->bytes ? size : s->bytes;
			s->withdrawn++;
		} else {
			rc = AT_EIO;
		}
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int spool_send_begin(struct spool *s, const char *path)
{
	struct stat st;
	pthread_mutex_lock(&s->mu);
	/* under the lock: a withdrawal either removed it already or waits for us */
	int rc = stat(path, &st) == 0 ? 0 : AT_ENOTFOUND;
	if (rc == 0)
		snprintf(s->sending, sizeof s->sending, "%s", path);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

void spool_send_end(struct spool *s)
{
	pthread_mutex_lock(&s->mu);
	s->sending[0] = 0;
	pthread_cond_broadcast(&s->sent);
	pthread_mutex_unlock(&s->mu);
}

void spool_depth(struct spool *s, int *files, size_t *bytes)
{
	pthread_mutex_lock(&s->mu);
	if (files)
		*files = s->files;
	if (bytes)
		*bytes = s->bytes;
	pthread_mutex_unlock(&s->mu);
}

int spool_ready(struct spool *s)
{
	pthread_mutex_lock(&s->mu);
	int n = s->ready;
	pthread_mutex_unlock(&s->mu);
	return n;
}

int spool_metrics(struct spool *s, struct at_buf *b)
{
	if (!s)
		return 0;
	pthread_mutex_lock(&s->mu);
	int rc = at_buf_printf(
		b,
		"# HELP atelier_serve_spool_depth Contributions waiting for atelierd.\n"
		"# TYPE atelier_serve_spool_depth gauge\natelier_serve_spool_depth %d\n"
		"# HELP atelier_serve_spool_bytes Bytes waiting in the spool.\n"
		"# TYPE atelier_serve_spool_bytes gauge\natelier_serve_spool_bytes %zu\n"
		"# HELP atelier_serve_spool_full_total Contributions refused because the spool was full.\n"
		"# TYPE atelier_serve_spool_full_total counter\natelier_serve_spool_full_total %llu\n"
		"# HELP atelier_serve_contributions_accepted_total Contributions written to the spool.\n"
		"# TYPE atelier_serve_contributions_accepted_total counter\natelier_serve_contributions_accepted_total %llu\n"
		"# HELP atelier_serve_spool_withdrawn_total Contributions withdrawn by receipt before delivery.\n"
		"# TYPE atelier_serve_spool_withdrawn_total counter\natelier_serve_spool_withdrawn_total %llu\n",
		s->files, s->bytes, (unsigned long long)s->full, (unsigned long long)s->accepted,
		(unsigned long long)s->withdrawn);
	pthread_mutex_unlock(&s->mu);
	return rc;
}
