/*
 * artifact_s3.c — the s3:// back end of the artifact store: objects
 * PREFIX/sha256/ab/<hex> in one bucket of an S3-compatible store (AWS S3,
 * MinIO, Ceph RGW). See artifact.h; docs/artifacts.md has the settings.
 *
 * Requests are libcurl easy calls signed by libcurl itself
 * (CURLOPT_AWS_SIGV4). libcurl 7.88 does not add S3's x-amz-content-sha256
 * header, which S3 requires, so every request sets it: the artifact's own
 * sha256 for a PUT (the server then refuses bytes that do not match their
 * name), the part's for a multipart part, the empty string's otherwise.
 * libcurl signs query strings as written, so each query here is written
 * already canonical: keys sorted, values encoded the SigV4 way.
 *
 * Integrity: a whole read is hashed as it arrives and compared with the
 * name (AT_ECORRUPT; one fresh download is tried first, since a flipped bit
 * on the wire and a bad object look the same from here). Retries: a
 * connection failure, a timeout, 429 or 5xx is retried with exponential
 * backoff; a download that broke after some bytes resumes with a Range from
 * where it stopped (the hash carries on over the bytes already kept).
 *
 * Large files go up as a multipart upload (threshold and part size are
 * settings); a failed one is aborted so no orphan parts stay billed.
 * Presigned GET URLs (SigV4 query signing, written here with OpenSSL's HMAC
 * since libcurl only signs headers) let atelierd redirect a download to the
 * store instead of carrying the bytes itself.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "artifact_impl.h"
#include "buf.h"
#include "config.h"
#include "fsutil.h"
#include "log.h"

#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define MAX_XML (8u << 20)  /* a list page or an upload answer */
#define MAX_ERRBODY 4096    /* an error answer kept for the log */
#define MAX_PARTS 10000     /* S3's limit */
#define MIN_PART (5u << 20) /* S3's smallest part but the last */

/* ---- settings ---- */

struct s3_settings {
	const char *endpoint, *region, *key_id, *secret, *token;
	int path_style, retries;
	size_t threshold, part_size;
	double backoff_s, timeout_s;
};

#define S(f) offsetof(struct s3_settings, f)
/* Read from the environment only (every program that opens a store: atelierd,
 * workers, the CLI); docs/artifacts.md lists them. Endpoint and region fall
 * back to the AWS SDKs' own variables when the ATELIER_S3_ ones are unset. */
static const struct config_opt s3_table[] = {
	{"s3-endpoint", "ATELIER_S3_ENDPOINT", CFG_STR, S(endpoint), NULL, 1, 0,
	 "http(s)://host[:port] of the S3 API (else AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, AWS's for the region)"},
	{"s3-region", "ATELIER_S3_REGION", CFG_STR, S(region), NULL, 1, 0,
	 "signing region (else AWS_REGION, AWS_DEFAULT_REGION, us-east-1)"},
	{"s3-access-key-id", "AWS_ACCESS_KEY_ID", CFG_STR, S(key_id), NULL, 1, 0, "access key id"},
	{"s3-secret-access-key", "AWS_SECRET_ACCESS_KEY", CFG_STR, S(secret), NULL, 1, 0, "secret access key"},
	{"s3-session-token", "AWS_SESSION_TOKEN", CFG_STR, S(token), NULL, 1, 0,
	 "session token (temporary credentials)"},
	{"s3-path-style", "ATELIER_S3_PATH_STYLE", CFG_BOOL, S(path_style), "false", 1, 0,
	 "address objects as ENDPOINT/BUCKET/KEY (MinIO, Ceph RGW, s3rver) instead of BUCKET.HOST/KEY"},
	{"s3-multipart-threshold", "ATELIER_S3_MULTIPART_THRESHOLD", CFG_SIZE, S(threshold), "64MiB", MIN_PART,
	 5.0 * (1ull << 30), "files this large or larger go up as a multipart upload"},
	{"s3-part-size", "ATELIER_S3_PART_SIZE", CFG_SIZE, S(part_size), "16MiB", MIN_PART, 5.0 * (1ull << 30),
	 "multipart part size"},
	{"s3-retries", "ATELIER_S3_RETRIES", CFG_INT, S(retries), "4", 0, 20,
	 "retries of a request after a connection failure, timeout, 429 or 5xx"},
	{"s3-backoff", "ATELIER_S3_BACKOFF", CFG_DOUBLE, S(backoff_s), "0.2", 0, 60,
	 "seconds before the first retry; doubles each time"},
	{"s3-timeout", "ATELIER_S3_TIMEOUT", CFG_DOUBLE, S(timeout_s), "30", 1, 3600,
	 "seconds without a byte moving (or to connect) before a request is given up and retried"},
};
#undef S

struct s3_store {
	struct artifact_store base;
	CURL *h; /* one handle: its connection is reused; one thread at a time */
	char scheme[8];
	char authority[256]; /* host[:port] as the Host header carries it */
	char bucket[64];
	char prefix[1024]; /* "" or "a/b" (no slash at either end) */
	char region[64];
	char key_id[256], secret[256], token[4096];
	char sigv4[96];
	char userpwd[520];
	int path_style, retries;
	uint64_t threshold, part_size;
	double backoff_s;
	long timeout_s;
};

/* ---- names ---- */

static int key_of(const struct s3_store *s, const char *sha, char *key, size_t len)
{
	int n = snprintf(key, len, "%s%ssha256/%.2s/%s", s->prefix, *s->prefix ? "/" : "", sha, sha);
	return n < 0 || (size_t)n >= len ? AT_EINVAL : 0;
}

/* SigV4's encoding: unreserved characters stay, everything else %XX (upper
 * case); '/' stays only in paths. */
static int uri_encode(struct at_buf *b, const char *s, int keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
			if (at_buf_add(b, s, 1) < 0)
				return AT_ENOMEM;
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};
			if (at_buf_add(b, e, 3) < 0)
				return AT_ENOMEM;
		}
	}
	return 0;
}

/* The request's path: /BUCKET/KEY path-style, /KEY virtual-hosted. key NULL:
 * the bucket itself. */
static int canonical_path(const struct s3_store *s, const char *key, struct at_buf *b)
{
	int rc = 0;
	if (s->path_style)
		rc = at_buf_printf(b, "/%s", s->bucket);
	if (rc == 0)
		rc = at_buf_addstr(b, "/");
	if (rc == 0 && key)
		rc = uri_encode(b, key, 1);
	return rc;
}

/* The full URL; query (canonical already) may be NULL. */
static int object_url(const struct s3_store *s, const char *key, const char *query, struct at_buf *b)
{
	int rc = s->path_style ? at_buf_printf(b, "%s://%s", s->scheme, s->authority)
			       : at_buf_printf(b, "%s://%s.%s", s->scheme, s->bucket, s->authority);
	if (rc == 0)
		rc = canonical_path(s, key, b);
	if (rc == 0 && query && *query)
		rc = at_buf_printf(b, "?%s", query);
	return rc;
}

/* ---- one request, with retries ---- */

struct s3_req {
	const char *method;
	const char *key;   /* NULL: the bucket */
	const char *query; /* canonical, or NULL */
	const char *payload_sha;
	/* request body: memory, or len bytes of fd from off */
	const char *data;
	int fd;
	uint64_t off, len;
	int has_body;
	/* response body of a 2xx: to sink (with resume by Range), or to xml */
	artifact_sink_fn sink;
	void *arg;
	int ranged; /* ask for [start, end] (end UINT64_MAX: to the end) */
	uint64_t start, end;
	struct at_buf *xml;
	int quiet_404; /* a HEAD that asks whether it exists */
	/* out */
	long status;
	uint64_t length; /* Content-Length of the answer */
	char etag[128];
	/* state */
	long cur_status; /* of the answer now arriving (a 100 comes first on PUT) */
	uint64_t sent, got;
	int sink_rc;
	struct at_buf err;
};

static size_t on_read(char *buf, size_t size, size_t n, void *arg)
{
	struct s3_req *q = arg;
	uint64_t left = q->len - q->sent;
	size_t want = size * n < left ? size * n : (size_t)left;
	if (want == 0)
		return 0;
	if (q->data) {
		memcpy(buf, q->data + q->sent, want);
	} else {
		ssize_t r = pread(q->fd, buf, want, (off_t)(q->off + q->sent));
		if (r <= 0)
			return CURL_READFUNC_ABORT;
		want = (size_t)r;
	}
	q->sent += want;
	return want;
}

static size_t on_header(char *buf, size_t size, size_t n, void *arg)
{
	struct s3_req *q = arg;
	size_t len = size * n;
	if (len > 9 && strncmp(buf, "HTTP/", 5) == 0) {
		const char *sp = memchr(buf, ' ', len);
		if (sp)
			q->cur_status = strtol(sp + 1, NULL, 10);
	} else if (len > 5 && strncasecmp(buf, "etag:", 5) == 0) {
		size_t i = 5, j = len;
		while (i < j && (buf[i] == ' ' || buf[i] == '\t'))
			i++;
		while (j > i && (buf[j - 1] == '\r' || buf[j - 1] == '\n' || buf[j - 1] == ' '))
			j--;
		if (j - i < sizeof q->etag) {
			memcpy(q->etag, buf + i, j - i);
			q->etag[j - i] = 0;
		}
	}
	return len;
}

static size_t on_write(char *buf, size_t size, size_t n, void *arg)
{
	struct s3_req *q = arg;
	size_t len = size * n;
	if (q->cur_status < 200 || q->cur_status > 299) {
		/* an error answer: keep its start for the log, drop the rest */
		if (q->err.len < MAX_ERRBODY &&
		    at_buf_add(&q->err, buf, len < MAX_ERRBODY - q->err.len ? len : MAX_ERRBODY - q->err.len) < 0)
			return len;
		return len;
	}
	if (q->sink) {
		if ((q->sink_rc = q->sink(buf, len, q->arg)) < 0)
			return 0;
		q->got += len;
		return len;
	}
	if (q->xml && at_buf_add(q->xml, buf, len) < 0)
		return 0;
	return len;
}

static int status_err(long status)
{
	switch (status) {
	case 404: return AT_ENOTFOUND;
	case 401:
	case 403: return AT_EFORBIDDEN;
	case 416: return AT_EUNSATISFIABLE;
	case 400: return AT_EINVAL;
	default: return status >= 500 || status == 429 ? AT_EUNAVAILABLE : AT_EIO;
	}
}

/* The <Code> of an S3 error answer, for the log. */
static void error_code(const struct at_buf *b, char *out, size_t len)
{
	snprintf(out, len, "-");
	const char *a = b->data ? strstr(b->data, "<Code>") : NULL;
	const char *e = a ? strstr(a, "</Code>") : NULL;
	if (a && e && (size_t)(e - a - 6) < len)
		snprintf(out, len, "%.*s", (int)(e - a - 6), a + 6);
}

static int perform_once(struct s3_store *s, struct s3_req *q, const char *url, CURLcode *cc)
{
	CURL *h = s->h;
	curl_easy_reset(h);
	struct curl_slist *hdrs = NULL, *t;
	char line[4200];
	snprintf(line, sizeof line, "x-amz-content-sha256: %s", q->payload_sha ? q->payload_sha : EMPTY_SHA);
	if (!(t = curl_slist_append(hdrs, line)))
		goto nomem;
	hdrs = t;
	if (*s->token) {
		snprintf(line, sizeof line, "x-amz-security-token: %s", s->token);
		if (!(t = curl_slist_append(hdrs, line)))
			goto nomem;
		hdrs = t;
	}
	char range[64];
	if (q->ranged || q->got > 0) {
		uint64_t from = (q->ranged ? q->start : 0) + q->got;
		if (q->ranged && q->end != UINT64_MAX)
			snprintf(range, sizeof range, "%llu-%llu", (unsigned long long)from,
				 (unsigned long long)q->end);
		else
			snprintf(range, sizeof range, "%llu-", (unsigned long long)from);
		curl_easy_setopt(h, CURLOPT_RANGE, range);
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_AWS_SIGV4, s->sigv4);
	curl_easy_setopt(h, CURLOPT_USERPWD, s->userpwd);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, s->timeout_s);
	/* a stall, not a slow big transfer, is what times a request out */
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, s->timeout_s);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, q);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, q);
	if (strcmp(q->method, "HEAD") == 0) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(q->method, "PUT") == 0) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, q);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)q->len);
	} else if (strcmp(q->method, "POST") == 0) {
		/* in memory: libcurl signs what it sends, and sends it whole */
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->data ? q->data : "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(q->data ? q->len : 0));
	} else if (strcmp(q->method, "GET") != 0) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
	}
	q->sent = 0;
	q->cur_status = 0;
	at_buf_reset(&q->err);
	*cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &q->status);
	curl_off_t cl = -1;
	curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
	q->length = cl > 0 ? (uint64_t)cl : 0;
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdrs);
	return 0;
nomem:
	curl_slist_free_all(hdrs);
	return AT_ENOMEM;
}

static int retryable(CURLcode cc, long status)
{
	if (cc == CURLE_OK)
		return status >= 500 || status == 429;
	return cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_COULDNT_CONNECT || cc == CURLE_SEND_ERROR ||
	       cc == CURLE_RECV_ERROR || cc == CURLE_PARTIAL_FILE || cc == CURLE_GOT_NOTHING ||
	       cc == CURLE_COULDNT_RESOLVE_HOST;
}

/* Perform q, retrying what may pass on a second try. 0 for a 2xx answer;
 * otherwise the status's or the transport's AT_E*, logged. */
static int s3_call(struct s3_store *s, struct s3_req *q)
{
	struct at_buf url;
	at_buf_init(&url, 8192);
	int rc = object_url(s, q->key, q->query, &url);
	if (rc < 0) {
		at_buf_free(&url);
		return AT_EINVAL;
	}
	at_buf_init(&q->err, MAX_ERRBODY + 1);
	double wait = s->backoff_s;
	for (int attempt = 0;; attempt++) {
		CURLcode cc;
		if ((rc = perform_once(s, q, url.data, &cc)) < 0)
			break;
		if (q->sink_rc < 0) {
			rc = q->sink_rc;
			break;
		}
		if (cc == CURLE_OK && q->status >= 200 && q->status <= 299) {
			rc = 0;
			break;
		}
		/* xml answers start over; a sink resumes where it stopped */
		if (q->xml)
			at_buf_reset(q->xml);
		char code[64];
		error_code(&q->err, code, sizeof code);
		int again = retryable(cc, q->status) && attempt < s->retries;
		if (cc != CURLE_OK)
			log_warn("artifacts: s3 %s %s: %s (attempt %d%s)", q->method, url.data, curl_easy_strerror(cc),
				 attempt + 1, again ? ", retrying" : "");
		else if (q->status != 404 || !q->quiet_404)
			log_warn("artifacts: s3 %s %s: HTTP %ld %s (attempt %d%s)", q->method, url.data, q->status,
				 code, attempt + 1, again ? ", retrying" : "");
		if (!again) {
			rc = cc == CURLE_OPERATION_TIMEDOUT ? AT_ETIMEOUT
			     : cc != CURLE_OK               ? AT_EUNAVAILABLE
							    : status_err(q->status);
			break;
		}
		struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
		nanosleep(&ts, NULL);
		wait = wait * 2 > 30 ? 30 : wait * 2;
	}
	at_buf_free(&q->err);
	at_buf_free(&url);
	return rc;
}

/* ---- reads ---- */

/* The sink of a whole read: into a file, hashing on the way. */
struct hashing_sink {
	int fd;
	EVP_MD_CTX *md;
};

static int to_file_hashing(const void *data, size_t len, void *arg)
{
	struct hashing_sink *k = arg;
	EVP_DigestUpdate(k->md, data, len);
	for (size_t off = 0; off < len;) {
		ssize_t w = write(k->fd, (const char *)data + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return AT_EIO;
		off += (size_t)w;
	}
	return 0;
}

static int s3_stat(const struct artifact_store *base, const char *sha, uint64_t *size)
{
	struct s3_store *s = (struct s3_store *)base;
	char key[1200];
	if (key_of(s, sha, key, sizeof key) < 0)
		return AT_EINVAL;
	struct s3_req q = {.method = "HEAD", .key = key, .quiet_404 = 1};
	int rc = s3_call(s, &q);
	if (rc == 0)
		*size = q.length;
	return rc;
}

/* One download of the whole object into a new temp file beside dst. */
static int get_once(struct s3_store *s, const char *key, const char *sha, const char *dst, char *tmp, size_t tmplen)
{
	char dir[4096];
	at_dirname(dst, dir, sizeof dir);
	snprintf(tmp, tmplen, "%s/get.XXXXXX", dir);
	struct hashing_sink k = {.fd = mkstemp(tmp), .md = EVP_MD_CTX_new()};
	if (k.fd < 0 || !k.md) {
		if (k.fd >= 0) {
			close(k.fd);
			unlink(tmp);
		}
		EVP_MD_CTX_free(k.md);
		return k.fd < 0 ? AT_EIO : AT_ENOMEM;
	}
	EVP_DigestInit_ex(k.md, EVP_sha256(), NULL);
	struct s3_req q = {.method = "GET", .key = key, .sink = to_file_hashing, .arg = &k};
	int rc = s3_call(s, &q);
	unsigned char d[32];
	char got[65];
	EVP_DigestFinal_ex(k.md, d, NULL);
	EVP_MD_CTX_free(k.md);
	at_hex_encode(got, d, sizeof d);
	if (rc == 0 && strcmp(got, sha) != 0) {
		log_error("artifacts: s3 object %s does not match its sha256 (got %s, %llu bytes)", key, got,
			  (unsigned long long)q.got);
		rc = AT_ECORRUPT;
	}
	if (rc == 0 && fsync(k.fd) < 0)
		rc = AT_EIO;
	close(k.fd);
	if (rc < 0)
		unlink(tmp);
	return rc;
}

static int s3_get_file(const struct artifact_store *base, const char *sha, const char *dst)
{
	struct s3_store *s = (struct s3_store *)base;
	char key[1200], tmp[4200];
	if (key_of(s, sha, key, sizeof key) < 0)
		return AT_EINVAL;
	int rc = get_once(s, key, sha, dst, tmp, sizeof tmp);
	if (rc == AT_ECORRUPT) /* the wire or the object: a second download tells */
		rc = get_once(s, key, sha, dst, tmp, sizeof tmp);
	if (rc < 0)
		return rc;
	chmod(tmp, 0644);
	if (rename(tmp, dst) < 0) {
		unlink(tmp);
		return AT_EIO;
	}
	return 0;
}

static int s3_read_range(const struct artifact_store *base, const char *sha, uint64_t start, uint64_t end,
			 artifact_sink_fn fn, void *arg)
{
	struct s3_store *s = (struct s3_store *)base;
	char key[1200];
	if (key_of(s, sha, key, sizeof key) < 0)
		return AT_EINVAL;
	struct s3_req q =
		{.method = "GET", .key = key, .sink = fn, .arg = arg, .ranged = 1, .start = start, .end = end};
	return s3_call(s, &q);
}

/* ---- writes ---- */

static int put_object(struct s3_store *s, const char *key, const char *sha, const char *data, int fd, uint64_t len)
{
	struct s3_req q =
		{.method = "PUT", .key = key, .payload_sha = sha, .data = data, .fd = fd, .len = len, .has_body = 1};
	return s3_call(s, &q);
}

/* The text between <tag> and </tag> in xml from *pos on; *pos moves past it. */
static int xml_field(const char *xml, const char *tag, const char **pos, char *out, size_t len)
{
	char open[64], close[64];
	snprintf(open, sizeof open, "<%s>", tag);
	snprintf(close, sizeof close, "</%s>", tag);
	const char *a = strstr(pos ? *pos : xml, open);
	if (!a)
		return AT_ENOTFOUND;
	a += strlen(open);
	const char *e = strstr(a, close);
	if (!e || (size_t)(e - a) >= len)
		return AT_EPARSE;
	/* the five XML entities: continuation tokens and ETags carry them */
	size_t o = 0;
	for (const char *p = a; p < e; p++) {
		static const struct {
			const char *ent, c;
		} ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
		char c = *p;
		for (size_t i = 0; *p == '&' && i < sizeof ents / sizeof ents[0]; i++) {
			size_t n = strlen(ents[i].ent);
			if ((size_t)(e - p) >= n && strncmp(p, ents[i].ent, n) == 0) {
				c = ents[i].c;
				p += n - 1;
				break;
			}
		}
		out[o++] = c;
	}
	out[o] = 0;
	if (pos)
		*pos = e + strlen(close);
	return 0;
}

static void abort_upload(struct s3_store *s, const char *key, const char *qid)
{
	struct s3_req q = {.method = "DELETE", .key = key, .query = qid};
	if (s3_call(s, &q) < 0)
		log_warn("artifacts: s3: could not abort the multipart upload of %s", key);
}

/* Parts of part_size (the last one shorter), each signed with its own
 * sha256, then one CompleteMultipartUpload. */
static int put_multipart(struct s3_store *s, const char *key, int fd, uint64_t size)
{
	uint64_t part = s->part_size;
	while ((size + part - 1) / part > MAX_PARTS)
		part *= 2;
	uint64_t nparts = (size + part - 1) / part;
	struct at_buf xml, done, qs;
	at_buf_init(&xml, MAX_XML);
	at_buf_init(&done, (size_t)nparts * 200 + 256);
	at_buf_init(&qs, 2048);
	char *buf = malloc((size_t)part);
	char upload_id[1024], qid[1200];
	int rc = buf ? 0 : AT_ENOMEM;
	struct s3_req q = {.method = "POST", .key = key, .query = "uploads=", .xml = &xml};
	if (rc == 0)
		rc = s3_call(s, &q);
	if (rc == 0 && xml_field(xml.data ? xml.data : "", "UploadId", NULL, upload_id, sizeof upload_id) < 0)
		rc = AT_EPARSE;
	if (rc < 0)
		goto out;
	at_buf_reset(&qs);
	if ((rc = at_buf_addstr(&qs, "uploadId=")) < 0 || (rc = uri_encode(&qs, upload_id, 0)) < 0)
		goto out;
	snprintf(qid, sizeof qid, "%s", qs.data);
	rc = at_buf_addstr(&done, "<CompleteMultipartUpload>");
	for (uint64_t i = 0; rc == 0 && i < nparts; i++) {
		uint64_t off = i * part, len = size - off < part ? size - off : part;
		/* read the part once: it is hashed, then sent from memory */
		for (uint64_t got = 0; got < len;) {
			ssize_t r = pread(fd, buf + got, (size_t)(len - got), (off_t)(off + got));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				rc = AT_EIO;
				break;
			}
			got += (uint64_t)r;
		}
		char psha[65], pq[1300];
		if (rc == 0)
			rc = at_sha256_hex(buf, (size_t)len, psha);
		if (rc < 0)
			break;
		/* partNumber sorts before uploadId: the query is canonical as written */
		snprintf(pq, sizeof pq, "partNumber=%llu&%s", (unsigned long long)(i + 1), qid);
		struct s3_req p = {.method = "PUT",
				   .key = key,
				   .query = pq,
				   .payload_sha = psha,
				   .data = buf,
				   .len = len,
				   .has_body = 1};
		if ((rc = s3_call(s, &p)) < 0)
			break;
		if (!*p.etag) {
			rc = AT_EPARSE;
			break;
		}
		/* the ETag goes back as sent, quotes included, XML-escaped */
		rc = at_buf_printf(&done, "<Part><PartNumber>%llu</PartNumber><ETag>", (unsigned long long)(i + 1));
		for (const char *c = p.etag; rc == 0 && *c; c++)
			rc = *c == '"' ? at_buf_addstr(&done, "&quot;") : at_buf_add(&done, c, 1);
		if (rc == 0)
			rc = at_buf_addstr(&done, "</ETag></Part>");
	}
	if (rc == 0)
		rc = at_buf_addstr(&done, "</CompleteMultipartUpload>");
	if (rc == 0) {
		char dsha[65];
		at_buf_reset(&xml);
		rc = at_sha256_hex(done.data, done.len, dsha);
		struct s3_req c = {.method = "POST",
				   .key = key,
				   .query = qid,
				   .payload_sha = dsha,
				   .data = done.data,
				   .len = done.len,
				   .has_body = 1,
				   .xml = &xml};
		if (rc == 0)
			rc = s3_call(s, &c);
		/* S3 may answer 200 and put the failure in the body */
		if (rc == 0 && xml.data && strstr(xml.data, "<Error>")) {
			log_error("artifacts: s3: completing the upload of %s failed: %.300s", key, xml.data);
			rc = AT_EIO;
		}
	}
	if (rc < 0)
		abort_upload(s, key, qid);
out:
	free(buf);
	at_buf_free(&qs);
	at_buf_free(&done);
	at_buf_free(&xml);
	return rc;
}

static int s3_put_file(struct artifact_store *base, const char *src, char sha[65], uint64_t *size)
{
	struct s3_store *s = (struct s3_store *)base;
	uint64_t len = 0, have;
	int rc = at_file_sha256(src, sha, &len);
	if (rc < 0)
		return rc;
	if (size)
		*size = len;
	char key[1200];
	if (key_of(s, sha, key, sizeof key) < 0)
		return AT_EINVAL;
	/* same name = same bytes: an object already there is kept */
	if (s3_stat(base, sha, &have) == 0 && have == len)
		return 0;
	int fd = open(src, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return AT_EIO;
	/* the file is read again to send it: if it changed since it was hashed,
	 * the server refuses a single PUT (x-amz-content-sha256 mismatch) and
	 * each part of a multipart one the same way */
	rc = len >= s->threshold ? put_multipart(s, key, fd, len) : put_object(s, key, sha, NULL, fd, len);
	close(fd);
	return rc;
}

static int s3_put_bytes(struct artifact_store *base, const void *data, size_t len, char sha[65])
{
	struct s3_store *s = (struct s3_store *)base;
	int rc = at_sha256_hex(data, len, sha);
	if (rc < 0)
		return rc;
	char key[1200];
	uint64_t have;
	if (key_of(s, sha, key, sizeof key) < 0)
		return AT_EINVAL;
	if (s3_stat(base, sha, &have) == 0 && have == len)
		return 0;
	return put_object(s, key, sha, data, -1, len);
}

static int s3_delete(struct artifact_store *base, const char *sha)
{
	struct s3_store *s = (struct s3_store *)base;
	char key[1200];
	if (key_of(s, sha, key, sizeof key) < 0)
		return AT_EINVAL;
	struct s3_req q = {.method = "DELETE", .key = key};
	int rc = s3_call(s, &q);
	return rc == AT_ENOTFOUND ? 0 : rc;
}

/* ---- list ---- */

/* "2026-12-03T15:38:39.000Z" → seconds since the epoch (0 when malformed) */
static int64_t parse_iso8601(const char *t)
{
	struct tm tm = {0};
	if (sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
		   &tm.tm_sec) != 6)
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (int64_t)timegm(&tm);
}

static int s3_list(const struct artifact_store *base, int (*fn)(const struct artifact_info *, void *), void *arg)
{
	struct s3_store *s = (struct s3_store *)base;
	struct at_buf xml, qs;
	at_buf_init(&xml, MAX_XML);
	at_buf_init(&qs, 4096);
	char prefix[1100], token[1024] = "";
	snprintf(prefix, sizeof prefix, "%s%ssha256/", s->prefix, *s->prefix ? "/" : "");
	int rc = 0;
	for (;;) {
		at_buf_reset(&qs);
		at_buf_reset(&xml);
		/* continuation-token < list-type < prefix: sorted as SigV4 wants */
		if (*token && ((rc = at_buf_addstr(&qs, "continuation-token=")) < 0 ||
			       (rc = uri_encode(&qs, token, 0)) < 0 || (rc = at_buf_addstr(&qs, "&")) < 0))
			break;
		if ((rc = at_buf_addstr(&qs, "list-type=2&prefix=")) < 0 || (rc = uri_encode(&qs, prefix, 0)) < 0)
			break;
		struct s3_req q = {.method = "GET", .query = qs.data, .xml = &xml};
		if ((rc = s3_call(s, &q)) < 0)
			break;
		const char *pos = xml.data ? xml.data : "";
		char item[4096];
		while (rc == 0 && xml_field(xml.data, "Contents", &pos, item, sizeof item) == 0) {
			char k[1200], size[32], mod[64];
			if (xml_field(item, "Key", NULL, k, sizeof k) < 0 ||
			    xml_field(item, "Size", NULL, size, sizeof size) < 0 ||
			    xml_field(item, "LastModified", NULL, mod, sizeof mod) < 0)
				continue;
			/* PREFIX/sha256/ab/<hex>, ab the hex's first two digits */
			size_t kl = strlen(k), pl = strlen(prefix);
			if (kl != pl + 3 + 64 || strncmp(k, prefix, pl) != 0 || k[pl + 2] != '/' ||
			    !artifact_valid_sha(k + pl + 3) || strncmp(k + pl, k + pl + 3, 2) != 0)
				continue;
			struct artifact_info in = {.size = strtoull(size, NULL, 10), .mtime = parse_iso8601(mod)};
			memcpy(in.sha, k + pl + 3, 65);
			rc = fn(&in, arg);
		}
		if (rc < 0)
			break;
		char trunc[16] = "";
		if (xml_field(xml.data ? xml.data : "", "IsTruncated", NULL, trunc, sizeof trunc) < 0 ||
		    strcmp(trunc, "true") != 0)
			break;
		if (xml_field(xml.data, "NextContinuationToken", NULL, token, sizeof token) < 0) {
			rc = AT_EPARSE;
			break;
		}
	}
	at_buf_free(&qs);
	at_buf_free(&xml);
	return rc;
}

/* ---- presigned URLs ---- */

static void hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
	unsigned int n = 32;
	HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &n);
}

static int s3_presign(const struct artifact_store *base, const char *sha, int ttl_s, char *url, size_t len)
{
	const struct s3_store *s = (const struct s3_store *)base;
	char key[1200], date[9], stamp[17];
	if (key_of(s, sha, key, sizeof key) < 0)
		return AT_EINVAL;
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof date, "%Y%m%d", &tm);
	strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
	struct at_buf q, path, creq, out;
	at_buf_init(&q, 8192);
	at_buf_init(&path, 4096);
	at_buf_init(&creq, 16384);
	at_buf_init(&out, 16384);
	char cred[512], scope[128];
	snprintf(scope, sizeof scope, "%s/%s/s3/aws4_request", date, s->region);
	snprintf(cred, sizeof cred, "%s/%s", s->key_id, scope);
	/* the query, sorted: Algorithm, Credential, Date, Expires, Security-Token, SignedHeaders */
	int rc = at_buf_addstr(&q, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=");
	if (rc == 0)
		rc = uri_encode(&q, cred, 0);
	if (rc == 0)
		rc = at_buf_printf(&q, "&X-Amz-Date=%s&X-Amz-Expires=%d", stamp, ttl_s);
	if (rc == 0 && *s->token && (rc = at_buf_addstr(&q, "&X-Amz-Security-Token=")) == 0)
		rc = uri_encode(&q, s->token, 0);
	if (rc == 0)
		rc = at_buf_addstr(&q, "&X-Amz-SignedHeaders=host");
	if (rc == 0)
		rc = canonical_path(s, key, &path);
	const char *host = s->path_style ? s->authority : NULL;
	char vhost[400];
	if (!host) {
		snprintf(vhost, sizeof vhost, "%s.%s", s->bucket, s->authority);
		host = vhost;
	}
	if (rc == 0)
		rc = at_buf_printf(&creq, "GET\n%s\n%s\nhost:%s\n\nhost\nUNSIGNED-PAYLOAD", path.data, q.data, host);
	char creq_sha[65], sts[512];
	if (rc == 0)
		rc = at_sha256_hex(creq.data, creq.len, creq_sha);
	if (rc == 0) {
		snprintf(sts, sizeof sts, "AWS4-HMAC-SHA256\n%s\n%s\n%s", stamp, scope, creq_sha);
		char k0[300];
		unsigned char k1[32], k2[32], k3[32], k4[32], sig[32];
		snprintf(k0, sizeof k0, "AWS4%s", s->secret);
		hmac(k0, strlen(k0), date, k1);
		hmac(k1, 32, s->region, k2);
		hmac(k2, 32, "s3", k3);
		hmac(k3, 32, "aws4_request", k4);
		hmac(k4, 32, sts, sig);
		char sighex[65];
		at_hex_encode(sighex, sig, sizeof sig);
		rc = at_buf_printf(&out, "%s://%s%s?%s&X-Amz-Signature=%s", s->scheme, host, path.data, q.data, sighex);
		OPENSSL_cleanse(k0, sizeof k0);
	}
	if (rc == 0 && out.len >= len)
		rc = AT_ETOOBIG;
	if (rc == 0)
		memcpy(url, out.data, out.len + 1);
	at_buf_free(&q);
	at_buf_free(&path);
	at_buf_free(&creq);
	at_buf_free(&out);
	return rc;
}

/* ---- the store ---- */

static int s3_uri(const struct artifact_store *base, const char *sha, char *uri, size_t len)
{
	const struct s3_store *s = (const struct s3_store *)base;
	char key[1200];
	if (key_of(s, sha, key, sizeof key) < 0)
		return AT_EINVAL;
	int n = snprintf(uri, len, "s3://%s/%s", s->bucket, key);
	return n < 0 || (size_t)n >= len ? AT_EINVAL : 0;
}

static void s3_close(struct artifact_store *base)
{
	struct s3_store *s = (struct s3_store *)base;
	if (s->h)
		curl_easy_cleanup(s->h);
	OPENSSL_cleanse(s->secret, sizeof s->secret);
	OPENSSL_cleanse(s->userpwd, sizeof s->userpwd);
	free(s);
}

static const struct artifact_ops s3_ops = {
	.close = s3_close,
	.put_file = s3_put_file,
	.put_bytes = s3_put_bytes,
	.path = NULL,
	.uri = s3_uri,
	.stat = s3_stat,
	.get_file = s3_get_file,
	.read_range = s3_read_range,
	.list = s3_list,
	.del = s3_delete,
	.presign = s3_presign,
};

static const char *first_env(const char *a, const char *b)
{
	const char *v = getenv(a);
	if (v && *v)
		return v;
	v = b ? getenv(b) : NULL;
	return v && *v ? v : NULL;
}

static int valid_bucket(const char *b, size_t n)
{
	if (n < 3 || n > 63)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!(islower((unsigned char)b[i]) || isdigit((unsigned char)b[i]) || b[i] == '-' || b[i] == '.'))
			return 0;
	return 1;
}

/* The prefix is kept to characters that need no encoding anywhere (a key
 * signed by libcurl as written and by the server as decoded must agree). */
static int valid_prefix(const char *p)
{
	for (; *p; p++)
		if (!(isalnum((unsigned char)*p) || strchr("-_.~/", *p)))
			return 0;
	return 1;
}

int artifact_s3_open(const char *spec, struct artifact_store **out)
{
	struct s3_settings set;
	char err[256];
	int argi;
	if (config_parse(s3_table, sizeof s3_table / sizeof s3_table[0], &set, 0, NULL, &argi, err, sizeof err) < 0) {
		log_error("artifacts: %s", err);
		return AT_EINVAL;
	}
	const char *slash = strchr(spec, '/');
	size_t blen = slash ? (size_t)(slash - spec) : strlen(spec);
	const char *prefix = slash ? slash + 1 : "";
	if (!valid_bucket(spec, blen) || !valid_prefix(prefix) || strlen(prefix) >= 1000) {
		log_error("artifacts: s3://%s: want s3://BUCKET[/PREFIX], a bucket of 3-63 [a-z0-9.-], a prefix of "
			  "[A-Za-z0-9._~/-]",
			  spec);
		return AT_EINVAL;
	}
	const char *region = set.region ? set.region : first_env("AWS_REGION", "AWS_DEFAULT_REGION");
	const char *endpoint = set.endpoint ? set.endpoint : first_env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL");
	if (!region)
		region = "us-east-1";
	if (!set.key_id || !set.secret) {
		log_error("artifacts: s3://%s: no credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)", spec);
		return AT_EINVAL;
	}
	struct s3_store *s = calloc(1, sizeof *s);
	if (!s)
		return AT_ENOMEM;
	s->base.ops = &s3_ops;
	int rc = AT_EINVAL;
	char aws[300];
	if (!endpoint) {
		snprintf(aws, sizeof aws, "https://s3.%s.amazonaws.com", region);
		endpoint = aws;
	}
	const char *sep = strstr(endpoint, "://");
	if (!sep || (size_t)(sep - endpoint) >= sizeof s->scheme || strlen(region) >= sizeof s->region ||
	    strlen(set.key_id) >= sizeof s->key_id || strlen(set.secret) >= sizeof s->secret ||
	    (set.token && strlen(set.token) >= sizeof s->token)) {
		log_error("artifacts: s3: bad endpoint \"%s\" or an over-long region or credential", endpoint);
		goto fail;
	}
	snprintf(s->scheme, sizeof s->scheme, "%.*s", (int)(sep - endpoint), endpoint);
	if (strcmp(s->scheme, "http") != 0 && strcmp(s->scheme, "https") != 0)
		goto fail;
	const char *auth = sep + 3;
	size_t alen = strcspn(auth, "/?#");
	if (alen == 0 || alen >= sizeof s->authority || (auth[alen] && strcmp(auth + alen, "/") != 0)) {
		log_error("artifacts: s3: endpoint \"%s\": want http(s)://host[:port] (no path)", endpoint);
		goto fail;
	}
	snprintf(s->authority, sizeof s->authority, "%.*s", (int)alen, auth);
	/* the Host header libcurl sends drops a default port: so must a presigned URL's */
	size_t al = strlen(s->authority);
	if (strcmp(s->scheme, "http") == 0 && al > 3 && strcmp(s->authority + al - 3, ":80") == 0)
		s->authority[al - 3] = 0;
	if (strcmp(s->scheme, "https") == 0 && al > 4 && strcmp(s->authority + al - 4, ":443") == 0)
		s->authority[al - 4] = 0;
	snprintf(s->bucket, sizeof s->bucket, "%.*s", (int)blen, spec);
	snprintf(s->prefix, sizeof s->prefix, "%s", prefix);
	for (size_t n = strlen(s->prefix); n > 0 && s->prefix[n - 1] == '/'; n--)
		s->prefix[n - 1] = 0;
	snprintf(s->region, sizeof s->region, "%s", region);
	snprintf(s->key_id, sizeof s->key_id, "%s", set.key_id);
	snprintf(s->secret, sizeof s->secret, "%s", set.secret);
	snprintf(s->token, sizeof s->token, "%s", set.token ? set.token : "");
	snprintf(s->sigv4, sizeof s->sigv4, "aws:amz:%s:s3", s->region);
	snprintf(s->userpwd, sizeof s->userpwd, "%s:%s", s->key_id, s->secret);
	s->path_style = set.path_style;
	s->retries = set.retries;
	s->backoff_s = set.backoff_s;
	s->timeout_s = (long)(set.timeout_s + 0.5);
	s->threshold = set.threshold;
	s->part_size = set.part_size;
	snprintf(s->base.uri, sizeof s->base.uri, "s3://%s%s%s", s->bucket, *s->prefix ? "/" : "", s->prefix);
	if (!(s->h = curl_easy_init())) {
		rc = AT_ENOMEM;
		goto fail;
	}
	*out = &s->base;
	return 0;
fail:
	s3_close(&s->base);
	return rc;
}
