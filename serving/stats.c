/*
 * stats.c — see stats.h. Quantiles sort a copy of the window (1024 values,
 * a few microseconds) when asked, rather than keeping a sketch structure:
 * they are asked for once per heartbeat and per scrape.
 */
#include "stats.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Upper bounds in seconds; the last bucket is +Inf. */
static const double buckets[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define NBUCKETS (sizeof buckets / sizeof buckets[0])

struct sample {
	float seconds;
	uint8_t error;
};

struct stats {
	pthread_mutex_t mu;
	uint64_t requests, errors, ok;
	double ok_seconds_sum;
	uint64_t bucket_counts[NBUCKETS + 1];
	struct sample win[STATS_WINDOW];
	size_t win_len, win_next;
};

int stats_new(struct stats **out)
{
	struct stats *s = calloc(1, sizeof *s);
	if (!s)
		return AT_ENOMEM;
	pthread_mutex_init(&s->mu, NULL);
	*out = s;
	return 0;
}

void stats_free(struct stats *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->mu);
	free(s);
}

void stats_record(struct stats *s, int status, double seconds)
{
	pthread_mutex_lock(&s->mu);
	s->requests++;
	int err = status >= 500;
	s->errors += (uint64_t)err;
	/* Latency is what a successful request costs; client errors answer in
	 * microseconds and would drag the quantiles down. */
	if (status < 400) {
		s->ok++;
		s->ok_seconds_sum += seconds;
		size_t b = 0;
		while (b < NBUCKETS && seconds > buckets[b])
			b++;
		s->bucket_counts[b]++;
	}
	if (status < 400 || err) {
		s->win[s->win_next] = (struct sample){(float)seconds, (uint8_t)err};
		s->win_next = (s->win_next + 1) % STATS_WINDOW;
		if (s->win_len < STATS_WINDOW)
			s->win_len++;
	}
	pthread_mutex_unlock(&s->mu);
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* Nearest-rank quantile of a sorted array. */
static double quantile(const float *v, size_t n, double q)
{
	if (n == 0)
		return 0;
	size_t k = (size_t)(q * (double)n + 0.999999);
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
}

void stats_snapshot(struct stats *s, struct stats_snapshot *out)
{
	float lat[STATS_WINDOW];
	size_t n = 0, errs = 0;
	pthread_mutex_lock(&s->mu);
	out->requests = s->requests;
	out->errors = s->errors;
	out->window = s->win_len;
	for (size_t i = 0; i < s->win_len; i++) {
		if (s->win[i].error)
			errs++;
		else
			lat[n++] = s->win[i].seconds;
	}
	pthread_mutex_unlock(&s->mu);
	qsort(lat, n, sizeof lat[0], cmp_float);
	out->error_rate = out->window ? (double)errs / (double)out->window : 0;
	out->p50_ms = quantile(lat, n, 0.50) * 1e3;
	out->p95_ms = quantile(lat, n, 0.95) * 1e3;
}

int stats_metrics(struct stats *s, struct at_buf *b)
{
	struct stats_snapshot snap;
	stats_snapshot(s, &snap);
	uint64_t counts[NBUCKETS + 1], ok;
	double sum;
	pthread_mutex_lock(&s->mu);
	memcpy(counts, s->bucket_counts, sizeof counts);
	ok = s->ok;
	sum = s->ok_seconds_sum;
	pthread_mutex_unlock(&s->mu);

	int rc = at_buf_addstr(b, "# HELP atelier_stylize_duration_seconds Latency of successful stylize requests.\n"
				  "# TYPE atelier_stylize_duration_seconds histogram\n");
	uint64_t cum = 0;
	for (size_t i = 0; i < NBUCKETS && rc == 0; i++) {
		cum += counts[i];
		rc = at_buf_printf(b, "atelier_stylize_duration_seconds_bucket{le=\"%g\"} %llu\n", buckets[i],
				   (unsigned long long)cum);
	}
	if (rc == 0)
		rc = at_buf_printf(b,
				   "atelier_stylize_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
				   "atelier_stylize_duration_seconds_sum %.6f\n"
				   "atelier_stylize_duration_seconds_count %llu\n"
				   "# HELP atelier_stylize_latency_seconds Stylize latency over the last %d requests.\n"
				   "# TYPE atelier_stylize_latency_seconds summary\n"
				   "atelier_stylize_latency_seconds{quantile=\"0.5\"} %.6f\n"
				   "atelier_stylize_latency_seconds{quantile=\"0.95\"} %.6f\n"
				   "atelier_stylize_latency_seconds_sum %.6f\n"
				   "atelier_stylize_latency_seconds_count %llu\n"
				   "# HELP atelier_stylize_requests_total Stylize requests answered.\n"
				   "# TYPE atelier_stylize_requests_total counter\n"
				   "atelier_stylize_requests_total %llu\n"
				   "# HELP atelier_stylize_errors_total Stylize requests answered with a 5xx.\n"
				   "# TYPE atelier_stylize_errors_total counter\n"
				   "atelier_stylize_errors_total %llu\n",
				   (unsigned long long)ok, sum, (unsigned long long)ok, STATS_WINDOW, snap.p50_ms / 1e3,
				   snap.p95_ms / 1e3, sum, (unsigned long long)ok, (unsigned long long)snap.requests,
				   (unsigned long long)snap.errors);
	return rc;
}
