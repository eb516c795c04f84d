/*
 * pipelines.c — `atelier apply -f FILE`, `atelier pipelines`, `atelier run
 * PIPELINE`, `atelier runs [--since T] [--watch]`, `atelier run show RUN
 * [--watch]`, `atelier cancel RUN`. Tables for people (progress and ETA),
 * --json for scripts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"

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

int cmd_apply(struct cli *c, const struct cli_args *a)
{
	const char *file = cli_arg(a, "file");
	if (!file) {
		fprintf(stderr, "atelier apply: -f FILE is required\n");
		cli_args_usage(stderr, a->cmd);
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
		cli_print_json(j);
	} else {
		int created = json_is_true(json_object_get(j, "created"));
		printf("pipeline %s: version %lld %s (sha256 %.12s)\n",
		       json_string_value(json_object_get(j, "pipeline")),
		       (long long)json_integer_value(json_object_get(j, "version")), created ? "created" : "unchanged",
		       json_string_value(json_object_get(j, "sha256")));
	}
	json_decref(j);
	http_client_resp_free(&r);
	return exit_code;
}

int cmd_pipelines(struct cli *c, const struct cli_args *a)
{
	json_t *out;
	long st;
	if (cli_json(c, "GET", "/v1/pipelines", NULL, &st, &out) < 0)
		return 1;
	if (c->json) {
		cli_print_json(out);
	} else {
		printf("%-20s %-8s %-16s %-10s %s\n", "PIPELINE", "VERSION", "MODEL", "LAST RUN", "STATE");
		size_t i;
		json_t *p;
		json_array_foreach(json_object_get(out, "pipelines"), i, p)
		{
			json_t *lr = json_object_get(p, "last_run");
			char last[32] = "-";
			if (json_is_object(lr))
				snprintf(last, sizeof last, "#%lld",
					 (long long)json_integer_value(json_object_get(lr, "id")));
			printf("%-20s %-8lld %-16s %-10s %s\n", json_string_value(json_object_get(p, "name")),
			       (long long)json_integer_value(json_object_get(p, "version")),
			       json_string_value(json_object_get(p, "model")), last,
			       json_is_object(lr) ? json_string_value(json_object_get(lr, "state")) : "-");
		}
	}
	json_decref(out);
	return 0;
}

int cmd_run(struct cli *c, const struct cli_args *a)
{
	char *const *argv = a->pos;
	char *esc = url_escape(argv[0]);
	char path[512];
	snprintf(path, sizeof path, "/v1/pipelines/%s/runs", esc ? esc : "");
	free(esc);
	json_t *out;
	long st;
	if (cli_json(c, "POST", path, NULL, &st, &out) < 0)
		return 1;
	if (c->json)
		cli_print_json(out);
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

/* "-", "45s", "4m05s", "2h07m": short enough for a column. */
static void fmt_eta(double s, char *out, size_t n)
{
	if (s < 0) {
		snprintf(out, n, "-");
		return;
	}
	long t = (long)(s + 0.5);
	if (t < 60)
		snprintf(out, n, "%lds", t);
	else if (t < 3600)
		snprintf(out, n, "%ldm%02lds", t / 60, t % 60);
	else
		snprintf(out, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
}

/* A run's ETA in seconds, or -1 when it has none (not running, no progress
 * yet). The API's eta_seconds when it gives one; else the elapsed time scaled
 * by the progress still to go (as good as the run's progress figure). */
static double run_eta(json_t *r)
{
	const char *state = json_string_value(json_object_get(r, "state"));
	if (!state || (strcmp(state, "running") && strcmp(state, "queued")))
		return -1;
	json_t *e = json_object_get(r, "eta_seconds");
	if (json_is_number(e))
		return json_number_value(e);
	double p = json_number_value(json_object_get(r, "progress"));
	double secs = json_number_value(json_object_get(r, "seconds"));
	if (strcmp(state, "running") || p <= 0.01 || p >= 1)
		return -1;
	return secs * (1 - p) / p;
}

static void print_runs_table(json_t *out)
{
	printf("%-6s %-16s %-10s %-12s %-22s %8s %7s  %s\n", "RUN", "PIPELINE", "STATE", "TRIGGER", "PROGRESS",
	       "SECONDS", "ETA", "STAGES");
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(out, "runs"), i, r)
	{
		char b[24], eta[16];
		double prog = json_number_value(json_object_get(r, "progress"));
		bar(prog, b, 20);
		fmt_eta(run_eta(r), eta, sizeof eta);
		const char *running = json_string_value(json_object_get(r, "running_stages"));
		const char *state = json_string_value(json_object_get(r, "state"));
		/* a skipped run's reason is the point of the line ("no new data: ...") */
		const char *reason =
			state && !strcmp(state, "skipped") ? json_string_value(json_object_get(r, "error")) : NULL;
		printf("%-6lld %-16s %-10s %-12s [%s] %8.1f %7s  %lld/%lld%s%s%s%s\n",
		       (long long)json_integer_value(json_object_get(r, "run_id")),
		       json_string_value(json_object_get(r, "pipeline")), state,
		       json_string_value(json_object_get(r, "trigger")), b,
		       json_number_value(json_object_get(r, "seconds")), eta,
		       (long long)json_integer_value(json_object_get(r, "stages_succeeded")),
		       (long long)json_integer_value(json_object_get(r, "stages_total")), running ? " running: " : "",
		       running ? running : "", reason ? " skipped: " : "", reason ? reason : "");
	}
}

/* --since: a duration back from now (90s, 30m, 1h, 2d, 1w) or a UTC time
 * (2026-12-01, 2026-12-01T10:00, 2026-12-01T10:00:00, optional Z), sent to
 * the API as an ISO 8601 UTC timestamp. Parsed here so that a typo is a
 * usage error naming the flag, never the database's input-syntax error. */
static int parse_since(const char *s, char *out, size_t n)
{
	struct tm tm;
	memset(&tm, 0, sizeof tm);
	char *end;
	if (*s >= '0' && *s <= '9') {
		long long v = strtoll(s, &end, 10);
		long long unit = 0;
		if (end[0] && !end[1] && end != s)
			unit = end[0] == 's'   ? 1
			       : end[0] == 'm' ? 60
			       : end[0] == 'h' ? 3600
			       : end[0] == 'd' ? 86400
			       : end[0] == 'w' ? 604800
					       : 0;
		if (unit && v >= 0 && v <= 100LL * 366 * 86400 / unit) {
			time_t t = time(NULL) - (time_t)(v * unit);
			gmtime_r(&t, &tm);
			strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
			return 0;
		}
	}
	static const char *const formats[] = {"%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S",
					      "%Y-%m-%d %H:%M", "%Y-%m-%d"};
	for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
		memset(&tm, 0, sizeof tm);
		end = strptime(s, formats[i], &tm);
		if (end && (!*end || !strcmp(end, "Z"))) {
			strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
			return 0;
		}
	}
	return AT_EINVAL;
}

int cmd_runs(struct cli *c, const struct cli_args *a)
{
	char query[512] = "";
	size_t q = 0;
	static const char *const filters[] = {"pipeline", "state", "since", "limit"};
	for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++) {
		const char *v = cli_arg(a, filters[i]);
		char ts[40];
		if (!v)
			continue;
		if (!strcmp(filters[i], "since")) {
			if (parse_since(v, ts, sizeof ts) < 0) {
				fprintf(stderr,
					"atelier runs: --since \"%s\" is neither a duration (30m, 1h, 2d, 1w) nor a time "
					"(2026-12-01 or 2026-12-01T10:00:00, UTC)\n",
					v);
				return 2;
			}
			v = ts;
		}
		char *esc = url_escape(v);
		q += (size_t)snprintf(query + q, sizeof query - q, "%s%s=%s", q ? "&" : "?", filters[i],
				      esc ? esc : "");
		free(esc);
		if (q >= sizeof query) {
			fprintf(stderr, "atelier runs: filters too long\n");
			return 2;
		}
	}
	int watch = cli_arg(a, "watch") != NULL;
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
			cli_print_json(out);
		else
			print_runs_table(out);
		json_decref(out);
		if (!watch)
			return 0;
		fflush(stdout);
		sleep(1);
	}
}

/* A run id from the command line: a positive number, or a usage error (it
 * goes into a request path). */
static void print_run(json_t *out)
{
	json_t *r = json_object_get(out, "run");
	char eta[16];
	fmt_eta(run_eta(r), eta, sizeof eta);
	printf("run #%lld  %s v%lld  %s  (trigger %s, %.1f s, ETA %s)\n",
	       (long long)json_integer_value(json_object_get(r, "run_id")),
	       json_string_value(json_object_get(r, "pipeline")),
	       (long long)json_integer_value(json_object_get(r, "pipeline_version")),
	       json_string_value(json_object_get(r, "state")), json_string_value(json_object_get(r, "trigger")),
	       json_number_value(json_object_get(r, "seconds")), eta);
	if (json_string_value(json_object_get(r, "error")))
		printf("%s: %s\n",
		       strcmp(json_string_value(json_object_get(r, "state")), "skipped") ? "error" : "skipped",
		       json_string_value(json_object_get(r, "error")));
	printf("%-10s %-10s %-10s %-8s %-24s %-22s %7s  %s\n", "STAGE", "KIND", "STATE", "ATTEMPT", "WORKER",
	       "PROGRESS", "ETA", "MESSAGE");
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
		/* a job's ETA is the worker's own estimate, shown while it runs */
		json_t *je = json_object_get(j, "eta_seconds");
		fmt_eta(state && !strcmp(state, "running") && json_is_number(je) ? json_number_value(je) : -1, eta,
			sizeof eta);
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
		printf("%-10s %-10s %-10s %-8s %-24s [%s] %7s  %s\n", json_string_value(json_object_get(j, "stage")),
		       json_string_value(json_object_get(j, "kind")), state, att, w ? w : "-", b, eta, msg ? msg : "");
	}
}

/* The exit status a finished run maps to under --watch: 0 succeeded or
 * skipped (nothing to do is no failure), 1 failed, 3 cancelled; -1 while
 * it has not ended. */
static int run_outcome(json_t *out)
{
	const char *state = json_string_value(json_object_get(json_object_get(out, "run"), "state"));
	if (!state)
		return -1;
	if (!strcmp(state, "succeeded") || !strcmp(state, "skipped"))
		return 0;
	if (!strcmp(state, "failed"))
		return 1;
	if (!strcmp(state, "cancelled"))
		return 3;
	return -1;
}

int cmd_run_show(struct cli *c, const struct cli_args *a)
{
	long long id;
	if (cli_arg_run_id(a, &id))
		return 2;
	int watch = cli_arg(a, "watch") != NULL;
	char path[128];
	snprintf(path, sizeof path, "/v1/runs/%lld", id);
	for (;;) {
		json_t *out;
		long st;
		if (cli_json(c, "GET", path, NULL, &st, &out) < 0)
			return 1;
		if (watch && isatty(STDOUT_FILENO))
			printf("\033[H\033[2J");
		if (c->json)
			cli_print_json(out);
		else
			print_run(out);
		int outcome = run_outcome(out);
		json_decref(out);
		if (!watch)
			return 0;
		if (outcome >= 0)
			return outcome;
		fflush(stdout);
		sleep(1);
	}
}

int cmd_cancel(struct cli *c, const struct cli_args *a)
{
	long long id;
	if (cli_arg_run_id(a, &id))
		return 2;
	char path[128];
	snprintf(path, sizeof path, "/v1/runs/%lld/cancel", id);
	json_t *out;
	long st;
	if (cli_json(c, "POST", path, NULL, &st, &out) < 0)
		return 1;
	if (c->json)
		cli_print_json(out);
	else
		printf("run #%lld: %s\n", id, json_string_value(json_object_get(out, "state")));
	json_decref(out);
	return 0;
}
