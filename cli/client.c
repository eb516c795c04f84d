/*
 * client.c — see client.h. Response bodies are capped (64 MiB) by at_buf.
 */
#include "client.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
	struct cli_response *r = arg;
	return at_buf_add(&r->body, p, sz * n) < 0 ? 0 : sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
	struct cli_response *r = arg;
	size_t len = sz * n;
	if (len > 13 && strncasecmp(p, "content-type:", 13) == 0) {
		const char *v = p + 13;
		while (*v == ' ')
			v++;
		size_t vl = len - (size_t)(v - p);
		while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
			vl--;
		snprintf(r->content_type, sizeof r->content_type, "%.*s", (int)vl, v);
	}
	return len;
}

int cli_request(const struct cli *c, const char *method, const char *path, const char *content_type,
		const void *body, size_t len, struct cli_response *resp)
{
	memset(resp, 0, sizeof *resp);
	at_buf_init(&resp->body, (size_t)64 << 20);
	CURL *h = curl_easy_init();
	if (!h) {
		snprintf(resp->error, sizeof resp->error, "cannot initialise libcurl");
		return AT_ENOMEM;
	}
	char url[2048];
	snprintf(url, sizeof url, "%s%s", c->url, path);
	struct curl_slist *hdrs = NULL;
	char line[512];
	if (c->token) {
		snprintf(line, sizeof line, "Authorization: Bearer %s", c->token);
		hdrs = curl_slist_append(hdrs, line);
	}
	if (content_type) {
		snprintf(line, sizeof line, "Content-Type: %s", content_type);
		hdrs = curl_slist_append(hdrs, line);
	}
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, resp);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 600L);
	if (body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	}
	CURLcode cc = curl_easy_perform(h);
	int rc = 0;
	if (cc != CURLE_OK) {
		snprintf(resp->error, sizeof resp->error, "%s: %s", url, curl_easy_strerror(cc));
		rc = AT_EUNAVAILABLE;
	} else {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
	}
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	return rc;
}

void cli_response_free(struct cli_response *r) { at_buf_free(&r->body); }

json_t *cli_response_json(const struct cli_response *r)
{
	if (!r->body.data)
		return NULL;
	return json_loadb(r->body.data, r->body.len, 0, NULL);
}

int cli_fail(const char *what, const struct cli_response *r)
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

int cli_json(const struct cli *c, const char *method, const char *path, json_t *obj, long *status, json_t **out)
{
	char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
	struct cli_response r;
	int rc = cli_request(c, method, path, s ? "application/json" : NULL, s, s ? strlen(s) : 0, &r);
	free(s);
	*status = r.status;
	if (out)
		*out = NULL;
	if (rc < 0) {
		cli_fail(path, &r);
		cli_response_free(&r);
		return rc;
	}
	if (r.status >= 400) {
		cli_fail(path, &r);
		cli_response_free(&r);
		return AT_EINVAL;
	}
	if (out)
		*out = cli_response_json(&r);
	cli_response_free(&r);
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
