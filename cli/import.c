/*
 * import.c — `atelier import DIR --domain sketch|painting`: upload every
 * PNG/JPEG in a folder through the API, with a progress bar and a summary
 * (accepted, duplicate, rejected counted by reason). Files are sent in name
 * order. Exits 1 when any file was rejected or could not be sent.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "commands.h"

static int is_image_name(const char *n)
{
	const char *dot = strrchr(n, '.');
	return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int cmd_import(struct cli *c, const struct cli_args *a)
{
	const char *dir = a->pos[0], *domain = cli_arg(a, "domain");
	if (!domain)
		domain = "sketch";
	if (strcmp(domain, "sketch") && strcmp(domain, "painting")) {
		fprintf(stderr, "atelier import: --domain is sketch or painting, not \"%s\"\n", domain);
		return 2;
	}
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "atelier import: cannot open %s\n", dir);
		return 1;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!is_image_name(e->d_name))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			char **nn = realloc(names, cap * sizeof *nn);
			if (!nn)
				break;
			names = nn;
		}
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof *names, name_cmp);

	const char *path = strcmp(domain, "sketch") == 0 ? "/v1/sketches" : "/v1/paintings";
	size_t accepted = 0, duplicate = 0, rejected = 0, failed = 0;
	json_t *report = json_array();
	json_t *by_reason = json_object(); /* reason -> count of rejected files */
	for (size_t i = 0; i < n; i++) {
		char full[4096];
		snprintf(full, sizeof full, "%s/%s", dir, names[i]);
		struct at_buf data;
		at_buf_init(&data, (size_t)256 << 20);
		const char *dot = strrchr(names[i], '.');
		const char *ct = !strcasecmp(dot, ".png") ? "image/png" : "image/jpeg";
		struct http_client_resp r;
		int rc = at_buf_add_file(&data, full);
		if (rc < 0) {
			fprintf(stderr, "\natelier import: cannot read %s\n", full);
			failed++;
			at_buf_free(&data);
			continue;
		}
		rc = cli_request(c, "POST", path, ct, data.data, data.len, &r);
		at_buf_free(&data);
		json_t *j = cli_response_json(&r);
		if (rc < 0 || r.status == 0 || r.status == 401 || r.status == 403 || r.status >= 500) {
			/* Not a verdict on this file: the server or our credentials are the problem. */
			cli_fail(names[i], &r);
			failed++;
			json_decref(j);
			http_client_resp_free(&r);
			if (r.status == 401 || r.status == 403 || rc < 0)
				break;
			continue;
		}
		const char *verdict;
		if (r.status == 201) {
			accepted++;
			verdict = "accepted";
		} else if (r.status == 200) {
			duplicate++;
			verdict = "duplicate";
		} else {
			rejected++;
			verdict = "rejected";
			const char *err = j ? json_string_value(json_object_get(j, "error")) : NULL;
			json_t *det = j ? json_object_get(j, "detail") : NULL;
			const char *why = det ? json_string_value(json_object_get(det, "reason")) : NULL;
			const char *key = why ? why : err ? err : "no reason given";
			json_object_set_new(by_reason, key,
					    json_integer(json_integer_value(json_object_get(by_reason, key)) + 1));
			if (!c->json) {
				if (isatty(2))
					fputc('\n', stderr);
				fprintf(stderr, "rejected %s: %s%s%s\n", names[i], err ? err : "?", why ? ": " : "",
					why ? why : "");
			}
		}
		json_array_append_new(report, json_pack("{ss,ss,si,sO?}", "file", names[i], "verdict", verdict,
							"status", (int)r.status, "response", j));
		json_decref(j);
		http_client_resp_free(&r);
		cli_progress("import", i + 1, n);
	}
	if (c->json) {
		json_t *o = json_pack("{sI,sI,sI,sI,so,sO}", "accepted", (json_int_t)accepted, "duplicate",
				      (json_int_t)duplicate, "rejected", (json_int_t)rejected, "failed",
				      (json_int_t)failed, "files", report, "rejected_by_reason", by_reason);
		cli_print_json(o);
		json_decref(o);
	} else {
		json_decref(report);
		printf("%zu files: %zu accepted, %zu duplicate, %zu rejected%s", n, accepted, duplicate, rejected,
		       failed ? ", " : "\n");
		if (failed)
			printf("%zu failed\n", failed);
		const char *why;
		json_t *cnt;
		json_object_foreach(by_reason, why, cnt)
			printf("  rejected %lld: %s\n", (long long)json_integer_value(cnt), why);
	}
	json_decref(by_reason);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	/* a rejected file is data that did not get in: scripts must see it */
	return failed || rejected ? 1 : 0;
}
