/*
 * client.h — the CLI's HTTP client (libcurl) and shared output helpers. Every
 * command is a client of atelierd's HTTP API; none touches the database.
 */
#ifndef ATELIER_CLI_CLIENT_H
#define ATELIER_CLI_CLIENT_H

#include <jansson.h>
#include <stddef.h>

#include "buf.h"

struct cli {
	const char *url;   /* base URL, e.g. http://127.0.0.1:8080 */
	const char *token; /* bearer token or NULL */
	int json;          /* --json: print raw JSON */
};

struct cli_response {
	long status;
	struct at_buf body;
	char content_type[128];
	char error[256]; /* transport error, when status == 0 */
};

/* One request. body may be NULL. Returns 0 when an HTTP status came back (any
 * status); < 0 on transport failure (message in resp->error). */
int cli_request(const struct cli *c, const char *method, const char *path, const char *content_type,
		const void *body, size_t len, struct cli_response *resp) AT_MUST_CHECK;
void cli_response_free(struct cli_response *r);

/* Parse the body as JSON (NULL if not JSON). */
json_t *cli_response_json(const struct cli_response *r);
/* Print an API error ("error" and "detail") or transport error to stderr; returns exit code 1. */
int cli_fail(const char *what, const struct cli_response *r);
/* JSON request helper: sends obj (not consumed) and returns the parsed reply in *out (may be NULL). */
int cli_json(const struct cli *c, const char *method, const char *path, json_t *obj, long *status, json_t **out);

/* A one-line progress bar on stderr when it is a terminal. */
void cli_progress(const char *label, size_t done, size_t total);

#endif
