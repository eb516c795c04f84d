/*
 * client.h — the CLI's calls to atelierd (through lib/http_client) and shared
 * output helpers. Every command is a client of atelierd's HTTP API; none
 * touches the database.
 */
#ifndef ATELIER_CLI_CLIENT_H
#define ATELIER_CLI_CLIENT_H

#include <jansson.h>
#include <stddef.h>

#include "http_client.h"

struct cli {
	const char *url;   /* base URL, e.g. http://127.0.0.1:8080 */
	const char *token; /* bearer token or NULL */
	int json;          /* --json: print raw JSON */
	int version;       /* --version: print it and exit */
};

/* One request to atelierd (lib/http_client.h does the work): body may be
 * NULL; the answer's body is capped at 64 MiB. Returns 0 when an HTTP status
 * came back (any status), < 0 on transport failure (message in resp->error).
 * resp is initialised here; the caller frees it with http_client_resp_free
 * whatever the result. */
int cli_request(const struct cli *c, const char *method, const char *path, const char *content_type, const void *body,
		size_t len, struct http_client_resp *resp) AT_MUST_CHECK;

/* Parse the body as JSON (NULL if not JSON). */
json_t *cli_response_json(const struct http_client_resp *r);
/* Print an API error ("error" and "detail") or transport error to stderr; returns exit code 1. */
int cli_fail(const char *what, const struct http_client_resp *r);
/* JSON request helper: sends obj (not consumed) and returns the parsed reply in *out (may be NULL). */
int cli_json(const struct cli *c, const char *method, const char *path, json_t *obj, long *status, json_t **out);
/* Prints j indented by 2, with a newline (what --json shows); nothing when it
 * cannot be serialised. */
void cli_print_json(const json_t *j);

/* A one-line progress bar on stderr when it is a terminal. */
void cli_progress(const char *label, size_t done, size_t total);

#endif
