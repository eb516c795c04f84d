/*
 * runlog.c — a run's training record and log from the terminal:
 *   `atelier metrics RUN`: each metric series (GET /v1/runs/{id}/metrics) as
 *      a row: name, points, first, last, min, and a sparkline of the series
 *      (bucket means over at most SPARK_COLS columns, eight block heights).
 *   `atelier logs RUN [STAGE] [-f]`: the log lines of the run's jobs
 *      (GET /v1/jobs/{id}/log?after=N pages of {"lines": [...], "next_after":
 *      N}; with -f, ?follow=1 streams Server-Sent Events, an `event: line`
 *      with a `data:` line object each, until the job ends and the server
 *      closes the stream). Lines print as they come, nothing is kept.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"

#define SPARK_COLS 40
#define LOG_MAX_JOBS 256
#define SSE_LINE_MAX 65536 /* a longer event line is cut: the server bounds its lines far below this */

/* ---- metrics ---- */

/* The sparkline of pts ([step, value] pairs) into out (3 bytes a column). */
static void sparkline(json_t *pts, char *out, size_t n)
{
	static const char *const blocks[] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
	size_t np = json_array_size(pts), cols = np < SPARK_COLS ? np : SPARK_COLS, o = 0;
	double mean[SPARK_COLS], lo = INFINITY, hi = -INFINITY;
	for (size_t c = 0; c < cols; c++) {
		size_t a = c * np / cols, b = (c + 1) * np / cols;
		double sum = 0;
		for (size_t i = a; i < b; i++)
			sum += json_number_value(json_array_get(json_array_get(pts, i), 1));
		mean[c] = sum / (double)(b - a);
		lo = fmin(lo, mean[c]);
		hi = fmax(hi, mean[c]);
	}
	out[0] = 0;
	for (size_t c = 0; c < cols && o + 4 < n; c++) {
		int k = hi > lo ? (int)((mean[c] - lo) / (hi - lo) * 7 + 0.5) : 0;
		o += (size_t)snprintf(out + o, n - o, "%s", blocks[k < 0 ? 0 : k > 7 ? 7 : k]);
	}
}

int cmd_metrics(struct cli *c, const struct cli_args *a)
{
	long long id;
	if (cli_arg_run_id(a, &id))
		return 2;
	char path[96];
	snprintf(path, sizeof path, "/v1/runs/%lld/metrics", id);
	json_t *out;
	long st;
	if (cli_json(c, "GET", path, NULL, &st, &out) < 0)
		return 1;
	if (c->json) {
		cli_print_json(out);
		json_decref(out);
		return 0;
	}
	json_t *series = json_object_get(out, "series");
	if (!json_object_size(series))
		printf("run #%lld has no metrics (yet)\n", id);
	else
		printf("%-24s %7s %12s %12s %12s  %s\n", "SERIES", "POINTS", "FIRST", "LAST", "MIN", "CURVE");
	const char *name;
	json_t *pts;
	json_object_foreach(series, name, pts)
	{
		size_t np = json_array_size(pts);
		if (!np)
			continue;
		double lo = INFINITY;
		for (size_t i = 0; i < np; i++)
			lo = fmin(lo, json_number_value(json_array_get(json_array_get(pts, i), 1)));
		char spark[SPARK_COLS * 4 + 1];
		sparkline(pts, spark, sizeof spark);
		printf("%-24s %7zu %12.5g %12.5g %12.5g  %s\n", name, np,
		       json_number_value(json_array_get(json_array_get(pts, 0), 1)),
		       json_number_value(json_array_get(json_array_get(pts, np - 1), 1)), lo, spark);
	}
	json_decref(out);
	return 0;
}

/* ---- logs ---- */

struct log_print {
	const char *stage; /* prefix, or NULL when one stage was asked for */
	long long next;    /* the cursor: the last seq printed */
	char event[16];    /* the SSE event being read: "" (message) or "line" carry lines */
	char line[SSE_LINE_MAX];
	size_t len;
};

static void print_line(struct log_print *p, json_t *l)
{
	const char *ts = json_string_value(json_object_get(l, "ts"));
	const char *lvl = json_string_value(json_object_get(l, "level"));
	const char *text = json_string_value(json_object_get(l, "text"));
	long long seq = json_integer_value(json_object_get(l, "seq"));
	if (seq > p->next)
		p->next = seq;
	if (p->stage)
		printf("%-10s ", p->stage);
	printf("%.19s %-5s %s\n", ts ? ts : "-", lvl ? lvl : "-", text ? text : "");
}

/* The follow stream's body, written by libcurl through a FILE (fopencookie):
 * split into lines, each `data: {...}` printed as it arrives. */
static ssize_t sse_write(void *cookie, const char *buf, size_t n)
{
	struct log_print *p = cookie;
	for (size_t i = 0; i < n; i++) {
		if (buf[i] != '\n') {
			if (p->len + 1 < sizeof p->line)
				p->line[p->len++] = buf[i];
			continue;
		}
		p->line[p->len] = 0;
		if (p->len && p->line[p->len - 1] == '\r')
			p->line[--p->len] = 0;
		if (!p->len) {
			p->event[0] = 0; /* a blank line ends an event */
		} else if (!strncmp(p->line, "event:", 6)) {
			snprintf(p->event, sizeof p->event, "%s", p->line + 6 + (p->line[6] == ' '));
		} else if (!strncmp(p->line, "data:", 5) && (!p->event[0] || !strcmp(p->event, "line"))) {
			json_t *l = json_loads(p->line + 5 + (p->line[5] == ' '), 0, NULL);
			if (json_is_object(l))
				print_line(p, l);
			json_decref(l);
			fflush(stdout);
		}
		p->len = 0;
	}
	return (ssize_t)n;
}

/* One job's lines after p->next: pages until an empty one, or (follow) the
 * stream until the server ends it. 0, or 1 after printing why. */
static int job_log(struct cli *c, long long job, int follow, struct log_print *p)
{
	char path[128];
	for (;;) {
		snprintf(path, sizeof path, "/v1/jobs/%lld/log?after=%lld%s", job, p->next, follow ? "&follow=1" : "");
		struct http_client hc;
		struct http_client_resp r;
		http_client_init(&hc, c->url, c->token, NULL, NULL);
		http_client_resp_init(&r, (size_t)16 << 20);
		static const cookie_io_functions_t io = {.write = sse_write};
		FILE *f = follow ? fopencookie(p, "w", io) : NULL;
		if (f)
			setvbuf(f, NULL, _IONBF, 0);
		p->len = 0;
		p->event[0] = 0;
		struct http_client_req q = {.method = "GET", .path = path, .file = f, .timeout_s = follow ? 86400 : 60};
		int rc = http_client_call(&hc, &q, &r);
		if (f)
			fclose(f);
		json_t *e = rc == 0 && r.status == 404 ? cli_response_json(&r) : NULL;
		const char *why = json_string_value(json_object_get(e, "error"));
		int no_route = why && strstr(why, "no such route");
		json_decref(e);
		if (no_route) {
			/* the route itself is missing (a missing job is "no such job") */
			fprintf(stderr, "atelier logs: this atelierd has no job logs (GET /v1/jobs/{id}/log: 404)\n");
			http_client_resp_free(&r);
			return 1;
		}
		if (rc < 0 || r.status != 200) {
			cli_fail(path, &r);
			http_client_resp_free(&r);
			return 1;
		}
		if (follow) {
			http_client_resp_free(&r);
			return 0;
		}
		json_t *j = cli_response_json(&r);
		http_client_resp_free(&r);
		json_t *lines = json_object_get(j, "lines"), *l;
		size_t i, n = json_array_size(lines);
		json_array_foreach(lines, i, l) print_line(p, l);
		/* atelierd says next_after; "next" is how the contract was first written */
		json_t *next = json_object_get(j, "next_after");
		if (!next)
			next = json_object_get(j, "next");
		if (json_is_integer(next) && json_integer_value(next) > p->next)
			p->next = json_integer_value(next);
		json_decref(j);
		if (!n)
			return 0;
	}
}

static int finished(const char *state)
{
	return state && (!strcmp(state, "succeeded") || !strcmp(state, "failed") || !strcmp(state, "cancelled") ||
			 !strcmp(state, "skipped"));
}

int cmd_logs(struct cli *c, const struct cli_args *a)
{
	long long id;
	if (cli_arg_run_id(a, &id))
		return 2;
	const char *stage = a->npos > 1 ? a->pos[1] : NULL;
	int follow = cli_arg(a, "follow") != NULL;
	struct {
		long long job, next;
		int done;
	} seen[LOG_MAX_JOBS];
	int nseen = 0, rc = 0, matched = 0;
	struct log_print *p = calloc(1, sizeof *p);
	if (!p)
		return 1;
	char path[96];
	snprintf(path, sizeof path, "/v1/runs/%lld", id);
	for (;;) {
		json_t *out;
		long st;
		if (cli_json(c, "GET", path, NULL, &st, &out) < 0) {
			rc = 1;
			break;
		}
		int run_over = finished(json_string_value(json_object_get(json_object_get(out, "run"), "state")));
		size_t i;
		json_t *j;
		json_array_foreach(json_object_get(out, "jobs"), i, j)
		{
			const char *js = json_string_value(json_object_get(j, "stage"));
			long long job = json_integer_value(json_object_get(j, "id"));
			if (!js || (stage && strcmp(js, stage)))
				continue;
			matched = 1;
			int k = 0;
			while (k < nseen && seen[k].job != job)
				k++;
			if (k == nseen) {
				if (nseen == LOG_MAX_JOBS)
					continue;
				seen[nseen++] = (typeof(seen[0])){job, 0, 0};
			}
			if (seen[k].done)
				continue;
			/* a job still queued has no lines; its turn comes on a later pass */
			const char *state = json_string_value(json_object_get(j, "state"));
			if (follow && state && !strcmp(state, "queued"))
				break;
			p->stage = stage ? NULL : js;
			p->next = seen[k].next;
			/* read the state before the lines: a job that had ended has all its lines */
			rc = job_log(c, job, follow && !finished(state), p);
			seen[k].next = p->next;
			if (rc)
				break;
			if (finished(state))
				seen[k].done = 1;
			else if (follow)
				break; /* its stream ended: look at the run again */
		}
		json_decref(out);
		if (rc || !follow || run_over)
			break;
		fflush(stdout);
		sleep(1);
	}
	if (!rc && stage && !matched) {
		fprintf(stderr, "atelier logs: run #%lld has no stage \"%s\"\n", id, stage);
		rc = 1;
	}
	free(p);
	return rc;
}
