/*
 * client.c — see client.h.
 */
#include "client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_request(const struct cli *c, const char *method, const char *path, const char *content_type, const void *body,
		size_t len, struct http_client_resp *resp)
{
	struct http_client hc;
	http_client_init(&hc, c->url, c->token, NULL, NULL);
	http_client_resp_init(resp, (size_t)64 << 20);
	struct http_client_req q = {.method = method,
				    .path = path,
				    .content_type = content_type,
				    .body = body,
				    .len = len};
	return http_client_call(&hc, &q, resp);
}

json_t *cli_response_json(const struct http_client_resp *r)
{
	if (!r->body.data)
		return NULL;
	return json_loadb(r->body.data, r->body.len, 0, NULL);
}

int cli_fail(const char *what, const struct http_client_resp *r)
{
	if (r->status == 0) {
		fprintf(stderr, "atelier: %s: %s\n", what, r->error);
		return 1;
	}
	json_t *j = cli_response_json(r);
	const char *msg = j ? json_string_value(json_object_get(j, "error")) : NULL;
	json_t *d = j ? json_object_get(j, "detail") : NULL;
	char *ds = d ? json_dumps(d, JSON_COMPACT) : NULL;
	fprintf(stderr, "atelier: %s: HTTP %ld: %s%s%s\n", what, r->status,
		msg ? msg : (r->body.data ? r->body.data : ""), ds ? " " : "", ds ? ds : "");
	free(ds);
	json_decref(j);
	return 1;
}

void cli_print_json(const json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2));
	if (s)
		puts(s);
	free(s);
}

int cli_json(const struct cli *c, const char *method, const char *path, json_t *obj, long *status, json_t **out)
{
	char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
	struct http_client_resp r;
	int rc = cli_request(c, method, path, s ? "application/json" : NULL, s, s ? strlen(s) : 0, &r);
	free(s);
	*status = r.status;
	if (out)
		*out = NULL;
	if (rc < 0) {
		cli_fail(path, &r);
		http_client_resp_free(&r);
		return rc;
	}
	if (r.status >= 400) {
		cli_fail(path, &r);
		http_client_resp_free(&r);
		return AT_EINVAL;
	}
	if (out)
		*out = cli_response_json(&r);
	http_client_resp_free(&r);
	return 0;
}

void cli_progress(const char *label, size_t done, size_t total)
{
	if (!isatty(STDERR_FILENO) || total == 0)
		return;
	int width = 30, filled = (int)((double)done / (double)total * width);
	char bar[64];
	for (int i = 0; i < width; i++)
		bar[i] = i < filled ? '#' : '.';
	bar[width] = 0;
	fprintf(stderr, "\r%s [%s] %zu/%zu", label, bar, done, total);
	if (done == total)
		fputc('\n', stderr);
	fflush(stderr);
}
