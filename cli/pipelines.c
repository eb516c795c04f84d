/*
 * pipelines.c — `atelier apply -f FILE`, `atelier pipelines`, `atelier run
 * PIPELINE`, `atelier runs [--watch]`, `atelier run show ID`, `atelier cancel
 * RUN`. Tables for people, --json for scripts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"

static void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2));
	if (s)
		puts(s);
	free(s);
}

static char *url_escape(const char *s)
{
	size_t n = strlen(s);
	char *out = malloc(3 * n + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-_.~/", c))
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, 4, "%%%02X", c);
	}
	out[o] = 0;
	return out;
}

int cmd_apply(struct cli *c, int argc, char **argv)
{
	const char *file = NULL;
	for (int i = 0; i < argc; i++) {
		if ((!strcmp(argv[i], "-f") || !strcmp(argv[i], "--file")) && i + 1 < argc)
			file = argv[++i];
		else {
			fprintf(stderr, "atelier apply: unexpected argument %s\n", argv[i]);
			return 2;
		}
	}
	if (!file) {
		fprintf(stderr, "usage: atelier apply -f FILE\n");
		return 2;
	}
	struct at_buf b;
	at_buf_init(&b, (size_t)1 << 20);
	int rc = at_buf_add_file(&b, file);
	if (rc < 0) {
		fprintf(stderr, "atelier apply: %s: %s\n", file, rc == AT_ETOOBIG ? "too large" : "cannot read");
		at_buf_free(&b);
		return 1;
	}
	char *esc = url_escape(file);
	char path[4200];
	snprintf(path, sizeof path, "/v1/pipelines?filename=%s", esc ? esc : "pipeline.yaml");
	free(esc);
	struct http_client_resp r;
	rc = cli_request(c, "POST", path, "application/yaml", b.data ? b.data : "", b.len, &r);
	at_buf_free(&b);
	json_t *j = cli_response_json(&r);
	int exit_code = 0;
	if (rc < 0 || r.status == 0) {
		exit_code = cli_fail("apply", &r);
	} else if (r.status == 422 || r.status == 413) {
		/* the server's message is already file:line:column: message */
		const char *msg = j ? json_string_value(json_object_get(j, "error")) : NULL;
		fprintf(stderr, "%s\n", msg ? msg : "invalid pipeline");
		exit_code = 1;
	} else if (r.status >= 400) {
		exit_code = cli_fail("apply", &r);
	} else if (c->json) {
		print_json(j);
	} else {
		int created = json_is_true(json_object_get(j, "created"));
		printf("pipeline %s: version %lld %s (sha256 %.12s)\n", json_string_value(json_object_get(j, "pipeline")),
		       (long long)json_integer_value(json_object_get(j, "version")), created ? "created" : "unchanged",
		       json_string_value(json_object_get(j, "sha256")));
	}
	json_decref(j);
	http_client_resp_free(&r);
	return exit_code;
}

int cmd_pipelines(struct cli *c, int argc, char **argv)
{
	json_t *out;
	long st;
	if (cli_json(c, "GET", "/v1/pipelines", NULL, &st, &out) < 0)
		return 1;
	if (c->json) {
		print_json(out);
	} else {
		printf("%-20s %-8s %-16s %-10s %s\n", "PIPELINE", "VERSION", "MODEL", "LAST RUN", "STATE");
		size_t i;
		json_t *p;
		json_array_foreach(json_object_get(out, "pipelines"), i, p)
		{
			json_t *lr = json_object_get(p, "last_run");
			char last[32] = "-";
			if (json_is_object(lr))
				snprintf(last, sizeof last, "#%lld", (long long)json_integer_value(json_object_get(lr, "id")));
			printf("%-20s %-8lld %-16s %-10s %s\n", json_string_value(json_object_get(p, "name")),
			       (long long)json_integer_value(json_object_get(p, "version")),
			       json_string_value(json_object_get(p, "model")), last,
			       json_is_object(lr) ? json_string_value(json_object_get(lr, "state")) : "-");
		}
	}
	json_decref(out);
	return 0;
}

int cmd_run(struct cli *c, int argc, char **argv)
{
	if (argc != 1) {
		fprintf(stderr, "usage: atelier run PIPELINE | atelier run show ID\n");
		return 2;
	}
	char *esc = url_escape(argv[0]);
	char path[512];
	snprintf(path, sizeof path, "/v1/pipelines/%s/runs", esc ? esc : "");
	free(esc);
	json_t *out;
	long st;
	if (cli_json(c, "POST", path, NULL, &st, &out) < 0)
		return 1;
	if (c->json)
		print_json(out);
	else
		printf("run #%lld of %s %s\n", (long long)json_integer_value(json_object_get(out, "run")), argv[0],
		       json_is_true(json_object_get(out, "coalesced")) ? "(already queued: coalesced)" : "queued");
	json_decref(out);
	return 0;
}

static void bar(double f, char *out, int width)
{
	int filled = (int)(f * width + 0.5);
	for (int i = 0; i < width; i++)
		out[i] = i < filled ? '#' : '.';
	out[width] = 0;
}

static void print_runs_table(json_t *out)
{
	printf("%-6s %-16s %-10s %-12s %-22s %8s  %s\n", "RUN", "PIPELINE", "STATE", "TRIGGER", "PROGRESS", "SECONDS",
	       "STAGES");
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(out, "runs"), i, r)
	{
		char b[24];
		double prog = json_number_value(json_object_get(r, "progress"));
		bar(prog, b, 20);
		const char *running = json_string_value(json_object_get(r, "running_stages"));
		const char *state = json_string_value(json_object_get(r, "state"));
		/* a skipped run's reason is the point of the line ("no new data: ...") */
		const char *reason = state && !strcmp(state, "skipped") ? json_string_value(json_object_get(r, "error")) : NULL;
		printf("%-6lld %-16s %-10s %-12s [%s] %8.1f  %lld/%lld%s%s%s%s\n",
		       (long long)json_integer_value(json_object_get(r, "run_id")),
		       json_string_value(json_object_get(r, "pipeline")), state,
		       json_string_value(json_object_get(r, "trigger")), b,
		       json_number_value(json_object_get(r, "seconds")),
		       (long long)json_integer_value(json_object_get(r, "stages_succeeded")),
		       (long long)json_integer_value(json_object_get(r, "stages_total")), running ? " running: " : "",
		       running ? running : "", reason ? " skipped: " : "", reason ? reason : "");
	}
}

int cmd_runs(struct cli *c, int argc, char **argv)
{
	int watch = 0;
	char query[512] = "";
	size_t q = 0;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--watch"))
			watch = 1;
		else if ((!strcmp(argv[i], "--pipeline") || !strcmp(argv[i], "--state") || !strcmp(argv[i], "--limit") ||
			  !strcmp(argv[i], "--since")) &&
			 i + 1 < argc) {
			char *esc = url_escape(argv[i + 1]);
			q += (size_t)snprintf(query + q, sizeof query - q, "%s%s=%s", q ? "&" : "?", argv[i] + 2,
					      esc ? esc : "");
			free(esc);
			i++;
		} else {
			fprintf(stderr, "usage: atelier runs [--pipeline P] [--state S] [--since T] [--limit N] [--watch]\n");
			return 2;
		}
	}
	char path[600];
	snprintf(path, sizeof path, "/v1/runs%s", query);
	for (;;) {
		json_t *out;
		long st;
		if (cli_json(c, "GET", path, NULL, &st, &out) < 0)
			return 1;
		if (watch && isatty(STDOUT_FILENO))
			printf("\033[H\033[2J");
		if (c->json)
			print_json(out);
		else
			print_runs_table(out);
		json_decref(out);
		if (!watch)
			return 0;
		fflush(stdout);
		sleep(1);
	}
}

int cmd_run_show(struct cli *c, int argc, char **argv)
{
	if (argc != 1) {
		fprintf(stderr, "usage: atelier run show ID\n");
		return 2;
	}
	char path[128];
	snprintf(path, sizeof path, "/v1/runs/%s", argv[0]);
	json_t *out;
	long st;
	if (cli_json(c, "GET", path, NULL, &st, &out) < 0)
		return 1;
	if (c->json) {
		print_json(out);
		json_decref(out);
		return 0;
	}
	json_t *r = json_object_get(out, "run");
	printf("run #%lld  %s v%lld  %s  (trigger %s, %.1f s)\n", (long long)json_integer_value(json_object_get(r, "run_id")),
	       json_string_value(json_object_get(r, "pipeline")),
	       (long long)json_integer_value(json_object_get(r, "pipeline_version")),
	       json_string_value(json_object_get(r, "state")), json_string_value(json_object_get(r, "trigger")),
	       json_number_value(json_object_get(r, "seconds")));
	if (json_string_value(json_object_get(r, "error")))
		printf("%s: %s\n", strcmp(json_string_value(json_object_get(r, "state")), "skipped") ? "error" : "skipped",
		       json_string_value(json_object_get(r, "error")));
	printf("%-10s %-10s %-10s %-8s %-24s %-22s %s\n", "STAGE", "KIND", "STATE", "ATTEMPT", "WORKER", "PROGRESS",
	       "MESSAGE");
	size_t i;
	json_t *j;
	json_array_foreach(json_object_get(out, "jobs"), i, j)
	{
		char b[24], att[16];
		bar(json_number_value(json_object_get(j, "progress")), b, 20);
		snprintf(att, sizeof att, "%lld/%lld", (long long)json_integer_value(json_object_get(j, "attempts")),
			 (long long)json_integer_value(json_object_get(j, "max_attempts")));
		const char *msg = json_string_value(json_object_get(j, "error"));
		if (!msg)
			msg = json_string_value(json_object_get(j, "message"));
		const char *w = json_string_value(json_object_get(j, "worker"));
		const char *state = json_string_value(json_object_get(j, "state"));
		/* a stage served by the step cache shows as cached, and from where */
		json_t *src = json_object_get(j, "cached_from");
		char from[96];
		if (json_is_object(src) && state && !strcmp(state, "succeeded")) {
			state = "cached";
			snprintf(from, sizeof from, "from job %lld (run %lld)",
				 (long long)json_integer_value(json_object_get(src, "job")),
				 (long long)json_integer_value(json_object_get(src, "run")));
			msg = from;
		}
		printf("%-10s %-10s %-10s %-8s %-24s [%s] %s\n", json_string_value(json_object_get(j, "stage")),
		       json_string_value(json_object_get(j, "kind")), state, att, w ? w : "-", b, msg ? msg : "");
	}
	json_decref(out);
	return 0;
}

int cmd_cancel(struct cli *c, int argc, char **argv)
{
	if (argc != 1) {
		fprintf(stderr, "usage: atelier cancel RUN\n");
		return 2;
	}
	char path[128];
	snprintf(path, sizeof path, "/v1/runs/%s/cancel", argv[0]);
	json_t *out;
	long st;
	if (cli_json(c, "POST", path, NULL, &st, &out) < 0)
		return 1;
	if (c->json)
		print_json(out);
	else
		printf("run #%s: %s\n", argv[0], json_string_value(json_object_get(out, "state")));
	json_decref(out);
	return 0;
}
