/*
 * client.h — blocking HTTP calls from a serving node to atelierd (libcurl
 * easy), for the puller and uplink threads. Every call carries the node
 * token, has a total timeout, and aborts within about a second once *stop is
 * set (libcurl's progress callback runs at least once a second, even while a
 * long-poll is idle), so threads can be joined promptly at shutdown.
 */
#ifndef SERVE_CLIENT_H
#define SERVE_CLIENT_H

#include <curl/curl.h>
#include <stdio.h>

#include "buf.h"
#include "err.h"

struct client {
	const char *base;  /* "http://host:port", no trailing slash needed */
	const char *token; /* node token or NULL */
	const int *stop;   /* read with __atomic_load_n */
	char user_agent[64];
};

/* The node's client for atelierd: base URL and node token from the settings,
 * a stop flag owned by the calling thread's struct, "atelier-serve/NAME". */
void client_init(struct client *c, const char *base, const char *token, const char *node, const int *stop);

struct client_resp {
	long status;         /* 0 when no HTTP answer came back */
	struct at_buf body;  /* when no file is given */
	char sha256[65];     /* x-content-sha256, "" if absent */
	long long max_file;  /* with a file: abort past this many bytes written (0 = no cap) */
	char error[CURL_ERROR_SIZE];
};

void client_resp_init(struct client_resp *r, size_t cap);
void client_resp_free(struct client_resp *r);

/* GET base+path; the body goes to r->body (capped) or, with f, appended to f.
 * range_from > 0 asks for bytes range_from- (206 expected). */
int client_get(const struct client *c, const char *path, long timeout_s, FILE *f, long long range_from,
	       struct client_resp *r) AT_MUST_CHECK;
/* POST a JSON text. */
int client_post_json(const struct client *c, const char *path, const char *json, long timeout_s,
		     struct client_resp *r) AT_MUST_CHECK;
/* POST a multipart form; takes nothing (mime stays the caller's). */
int client_post_mime(const struct client *c, const char *path, curl_mime *(*build)(CURL *, void *), void *arg,
		     long timeout_s, struct client_resp *r) AT_MUST_CHECK;

/* The return value of the calls above: 0 when an HTTP answer came back
 * (whatever its status), AT_EUNAVAILABLE when atelierd could not be reached
 * or the transfer broke, AT_ECANCELLED when *stop ended it. */

#endif
