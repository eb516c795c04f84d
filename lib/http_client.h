/*
 * http_client.h — the one HTTP client of Atelier's programs that call atelierd:
 * the CLI (blocking calls from main) and the serving node's puller and uplink
 * threads (long-polls, artifact downloads into a file, multipart uploads).
 *
 * Each call is blocking (libcurl easy) and uses its own easy handle: these
 * calls are rare (a long-poll every 30 s, a heartbeat every few seconds, one
 * CLI command), so a handle shared across threads is not worth its locking.
 * The response keeps the handle until http_client_resp_free(), so headers are
 * read with curl_easy_header() and never parsed by hand. Every response body
 * has a cap (the buffer's, or max_file when it goes to a file). With a stop
 * flag, a call ends within about a second of it being set: libcurl's
 * progress callback runs at least once a second, even on an idle long-poll,
 * so threads can be joined promptly at shutdown. A GET follows up to 3
 * redirects (atelierd's artifact downloads from an s3:// store are 302s to
 * presigned URLs); the bearer token is not sent to another host or port.
 *
 * curl_global_init() is the program's job, once, before the first call.
 */
#ifndef ATELIER_HTTP_CLIENT_H
#define ATELIER_HTTP_CLIENT_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdio.h>

#include "buf.h"
#include "err.h"

/*
 * Several atelierd: base may be a comma-separated list of base URLs
 * ("http://10.0.0.3:8080,http://10.0.0.4:8080"), the replicas of one
 * system. Calls go to one of them (the current one) and stay there while it
 * answers. When it cannot be reached (connection refused or timed out, the
 * transfer broke) or answers 502/503/504, the next one becomes current; the
 * same call is sent there at once only if the first cannot have acted on it:
 * nothing of the request went out, or the answer was 502/503/504, or it is a
 * GET/HEAD that writes no file. Otherwise the call returns its failure and
 * the caller's own retry (with its backoff) goes to the next one. After every
 * base failed once in a call, the call returns the last failure. A single
 * URL behaves as before.
 */
#define HTTP_CLIENT_MAX_BASES 8

struct http_client {
	const char *base;       /* "http://host:port" or a list (above); paths are appended. Borrowed */
	const char *token;      /* bearer token or NULL. Borrowed */
	const int *stop;        /* NULL, or a flag read with __atomic_load_n */
	long connect_timeout_s; /* http_client_init: 10 */
	char user_agent[64];    /* "" sends none */
	/* http_client_init's parse of base: each entry trimmed of blanks and
	 * trailing slashes (a slash would double the one every path starts with) */
	int nbases;
	struct {
		const char *at;
		int len;
	} bases[HTTP_CLIENT_MAX_BASES];
	int cur;                 /* the base in use; read with __atomic_load_n from other threads */
	unsigned long failovers; /* times cur moved on (__atomic_load_n from other threads) */
	int *share_cur;          /* NULL, or where cur is also written (atomic) the moment it moves: a
				  * serving node's one-off clients start where its long-lived one is */
};

/* base and token are borrowed for the client's life; stop and user_agent
 * may be NULL. Entries past HTTP_CLIENT_MAX_BASES are ignored (check the
 * setting with http_client_check_base first). */
void http_client_init(struct http_client *c, const char *base, const char *token, const int *stop,
		      const char *user_agent);

/* Whether base (one URL or a comma-separated list) is fit for
 * http_client_init: 1..HTTP_CLIENT_MAX_BASES entries, each an http:// or
 * https:// URL of at most 512 bytes without blanks, quotes or backslashes
 * inside. AT_EINVAL with a message naming the entry in err otherwise. */
int http_client_check_base(const char *base, char *err, size_t errlen) AT_MUST_CHECK;

/* The base URL calls go to now, copied into out (cap bytes; "" when none). */
void http_client_current(const struct http_client *c, char *out, size_t cap);

struct http_client_req {
	const char *method;       /* NULL: POST when there is a body or a form, else GET */
	const char *path;         /* appended to base, query included */
	const char *content_type; /* of body */
	const void *body;         /* borrowed until the call returns */
	size_t len;
	/* A multipart body, built on the call's handle (the mime must be made
	 * with it); the call frees what build returns. */
	curl_mime *(*form)(CURL *h, void *arg);
	void *form_arg;
	long timeout_s;       /* the whole call; 0 = 600 */
	FILE *file;           /* a 200/206 body is appended here; another answer's
			     * body goes to r->body, cut at its cap */
	long long range_from; /* with file: ask for bytes range_from- (the file
			       * holds that many); a 200 answer starts it over */
	long long max_file;   /* with file: AT_ETOOBIG before it would pass this
			     * many bytes (0 = no cap) */
	/* one more request header (both set, value under 1000 bytes, no
	 * newline: a node forwards a contributor's X-Atelier-Receipt) */
	const char *header_name, *header_value;
};

struct http_client_resp {
	long status;        /* 0 unless a whole HTTP answer came back */
	struct at_buf body; /* capped at http_client_resp_init's cap */
	char error[512];    /* when a call fails: "METHOD URL: why" */
	CURL *h;            /* the last call's handle, for http_client_header() */
};

/* cap: the most body bytes kept (0 = at_buf's default, 64 MiB). */
void http_client_resp_init(struct http_client_resp *r, size_t cap);
void http_client_resp_free(struct http_client_resp *r);

/* One request. r must have been through http_client_resp_init (a second call
 * with the same r replaces its answer). Returns 0 when an HTTP answer came
 * back, whatever its status; AT_ETOOBIG when the body passed its cap;
 * AT_ECANCELLED when *stop ended the call; AT_ETIMEOUT past timeout_s;
 * AT_EIO when the file could not be written; AT_EUNAVAILABLE when the server
 * could not be reached or the transfer broke; AT_EINVAL for a URL over 2 KiB;
 * AT_ENOMEM. On failure r->error says why and r->status is 0. With several
 * bases, see above: the answer or failure is the last base's tried. Not
 * for use by two threads at once on one client. */
int http_client_call(struct http_client *c, const struct http_client_req *q, struct http_client_resp *r) AT_MUST_CHECK;

/* The value of response header name (any case) of r's last answer, the last
 * one when it is repeated; NULL when absent. Valid until the next call with r
 * or http_client_resp_free(r). */
const char *http_client_header(const struct http_client_resp *r, const char *name);

#endif
