/*
 * spool.c — the on-disk contribution spool and POST /api/contribute (see
 * spool.h). The handler validates on the loop, builds the file image in
 * memory, reserves room, and writes on the threadpool; the answer (202) is
 * sent only once the file is durable, so an accepted contribution survives a
 * crash of the node.
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
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "image.h"
#include "log.h"
#include "multipart.h"
#include "serve.h"
#include "uplink.h"

#define SPOOL_MAGIC "ATSPOOL1\n"
#define SPOOL_SUFFIX ".sk"

struct spool {
	char *dir;
	int max_files;
	size_t max_bytes;
	pthread_mutex_t mu;
	int files;    /* written or reserved */
	int ready;    /* written (what the uplink can send) */
	size_t bytes;
	uint32_t seq;
	uint64_t accepted, full, written_failed, removed;
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

int spool_write(struct spool *s, const void *data, size_t len)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	pthread_mutex_lock(&s->mu);
	uint32_t seq = s->seq++;
	pthread_mutex_unlock(&s->mu);
	/* Names sort by arrival: 16 hex digits of nanoseconds, then a counter
	 * for contributions within the same nanosecond tick, then the pid. */
	char name[96], tmp[4200], final[4200];
	snprintf(name, sizeof name, "%016llx-%08x-%d", (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec,
		 seq, (int)getpid());
	snprintf(tmp, sizeof tmp, "%s/.tmp-%s", s->dir, name);
	snprintf(final, sizeof final, "%s/%s%s", s->dir, name, SPOOL_SUFFIX);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		goto fail;
	const char *p = data;
	size_t left = len;
	while (left) {
		ssize_t w = write(fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			goto fail_fd;
		p += w;
		left -= (size_t)w;
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
	size_t ml = strlen(SPOOL_MAGIC);
	if (n < ml || memcmp(buf, SPOOL_MAGIC, ml) != 0)
		goto out;
	char *nl = memchr(buf + ml, '\n', n - ml);
	if (!nl)
		goto out;
	*meta = json_loadb(buf + ml, (size_t)(nl - buf) - ml, 0, NULL);
	if (!json_is_object(*meta))
		goto out;
	*len = n - (size_t)(nl + 1 - buf);
	memmove(buf, nl + 1, *len);
	*img = (uint8_t *)buf;
	buf = NULL;
	rc = 0;
out:
	if (rc < 0) {
		json_decref(*meta);
		*meta = NULL;
	}
	free(buf);
	fclose(f);
	return rc;
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
	int rc = at_buf_printf(b,
			       "# HELP atelier_serve_spool_depth Contributions waiting for atelierd.\n"
			       "# TYPE atelier_serve_spool_depth gauge\natelier_serve_spool_depth %d\n"
			       "# HELP atelier_serve_spool_bytes Bytes waiting in the spool.\n"
			       "# TYPE atelier_serve_spool_bytes gauge\natelier_serve_spool_bytes %zu\n"
			       "# HELP atelier_serve_spool_full_total Contributions refused because the spool was full.\n"
			       "# TYPE atelier_serve_spool_full_total counter\natelier_serve_spool_full_total %llu\n"
			       "# HELP atelier_serve_contributions_accepted_total Contributions written to the spool.\n"
			       "# TYPE atelier_serve_contributions_accepted_total counter\natelier_serve_contributions_accepted_total %llu\n",
			       s->files, s->bytes, (unsigned long long)s->full, (unsigned long long)s->accepted);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* ---- POST /api/contribute ---- */

struct contribution {
	uv_work_t work;
	struct serve_app *app;
	http_req_t *req;
	char *data;
	size_t len;
	int rc;
};

static void contribute_work(uv_work_t *w)
{
	struct contribution *c = w->data;
	c->rc = spool_write(c->app->spool, c->data, c->len);
}

static void contribute_done(uv_work_t *w, int status)
{
	struct contribution *c = w->data;
	struct spool *s = c->app->spool;
	if (c->rc < 0) {
		spool_unreserve(s, c->len);
		http_reply_error(c->req, 503, "could not store the contribution", NULL);
	} else {
		int files;
		pthread_mutex_lock(&s->mu);
		s->accepted++;
		files = s->files;
		pthread_mutex_unlock(&s->mu);
		uplink_notify(c->app->uplink);
		http_reply_json(c->req, 202, json_pack("{ss,si}", "status", "queued", "spool_depth", files));
	}
	free(c->data);
	free(c);
}

static int consent_given(const struct multipart_part *p)
{
	static const char *const yes[] = {"true", "on", "1", "yes"};
	for (size_t i = 0; p && i < sizeof yes / sizeof yes[0]; i++)
		if (p->len == strlen(yes[i]) && strncasecmp((const char *)p->data, yes[i], p->len) == 0)
			return 1;
	return 0;
}

void spool_post_contribute(http_req_t *req)
{
	struct serve_app *app = http_req_app(req);
	if (!app->cfg.atelierd || !app->spool) {
		http_reply_error(req, 503, "contributions are off: this node has no atelierd to send them to", NULL);
		return;
	}
	size_t ctlen = 0, blen;
	const char *ct = http_req_header(req, "content-type", &ctlen);
	const uint8_t *body = http_req_body(req, &blen);
	if (!ct || ctlen < 19 || strncasecmp(ct, "multipart/form-data", 19) != 0) {
		http_reply_error(req, 415, "expected multipart/form-data with an image field", NULL);
		return;
	}
	struct multipart_part parts[8];
	size_t nparts = 0;
	char why[160] = "";
	int rc = multipart_parse(ct, ctlen, body, blen, parts, 8, &nparts, why, sizeof why);
	if (rc < 0) {
		http_reply_error(req, rc == AT_ETOOBIG ? 413 : 400, "malformed multipart body",
				 json_pack("{ss}", "reason", why[0] ? why : at_strerror(rc)));
		return;
	}
	const struct multipart_part *img = multipart_get(parts, nparts, "image");
	if (!img) {
		http_reply_error(req, 400, "missing field image (the sketch, PNG or JPEG)", json_pack("{ss}", "field", "image"));
		return;
	}
	int fmt = image_sniff(img->data, img->len);
	if (fmt < 0) {
		http_reply_error(req, 415, "image must be PNG or JPEG", json_pack("{ss}", "field", "image"));
		return;
	}
	/* The spool keeps the bytes undecoded; the header alone shows the caps
	 * atelierd's ingest would refuse it for (its default pixel cap, the side
	 * cap), so the sender hears it now. */
	if ((rc = image_probe(img->data, img->len, 0, NULL, NULL, why, sizeof why)) < 0) {
		http_reply_error(req, at_err_http_status(rc), why, json_pack("{ss}", "field", "image"));
		return;
	}
	if (!consent_given(multipart_get(parts, nparts, "consent"))) {
		http_reply_error(req, 422, "consent is required to contribute a sketch",
				 json_pack("{ss}", "field", "consent"));
		return;
	}
	const struct multipart_part *who = multipart_get(parts, nparts, "contributor");
	if (who && who->len > 128) {
		http_reply_error(req, 422, "contributor is at most 128 bytes", json_pack("{ss}", "field", "contributor"));
		return;
	}
	json_t *meta = json_pack("{ss,sI}", "content_type", fmt == IMAGE_PNG ? "image/png" : "image/jpeg",
				 "received_at", (json_int_t)time(NULL));
	if (meta && who && who->len) {
		json_t *name = json_stringn((const char *)who->data, who->len);
		if (!name) {
			json_decref(meta);
			http_reply_error(req, 422, "contributor must be UTF-8 text", json_pack("{ss}", "field", "contributor"));
			return;
		}
		json_object_set_new(meta, "contributor", name);
	}
	char *mj = meta ? json_dumps(meta, JSON_COMPACT) : NULL;
	json_decref(meta);
	struct contribution *c = calloc(1, sizeof *c);
	size_t ml = strlen(SPOOL_MAGIC), jl = mj ? strlen(mj) : 0;
	if (c && mj) {
		c->len = ml + jl + 1 + img->len;
		c->data = malloc(c->len);
	}
	if (!c || !mj || !c->data) {
		free(mj);
		if (c)
			free(c->data);
		free(c);
		http_reply_error(req, 503, "out of memory", NULL);
		return;
	}
	memcpy(c->data, SPOOL_MAGIC, ml);
	memcpy(c->data + ml, mj, jl);
	c->data[ml + jl] = '\n';
	memcpy(c->data + ml + jl + 1, img->data, img->len);
	free(mj);
	if (spool_reserve(app->spool, c->len) < 0) {
		int files;
		size_t bytes;
		spool_depth(app->spool, &files, &bytes);
		free(c->data);
		free(c);
		http_req_add_header(req, "Retry-After", "60");
		http_reply_error(req, 503, "the contribution spool is full; try again later",
				 json_pack("{si,sI}", "files", files, "bytes", (json_int_t)bytes));
		return;
	}
	c->app = app;
	c->req = req;
	c->work.data = c;
	if (uv_queue_work(app->loop, &c->work, contribute_work, contribute_done) != 0) {
		spool_unreserve(app->spool, c->len);
		free(c->data);
		free(c);
		http_reply_error(req, 503, "cannot schedule the write", NULL);
	}
}
