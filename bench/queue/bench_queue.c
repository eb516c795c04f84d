/*
 * bench_queue.c — the job queue's figures, over lib/queue.c exactly as
 * atelier-worker uses it (one connection per worker thread, prepared
 * statements, one round trip per call).
 *
 *   throughput  N jobs pre-enqueued; W threads claim -> complete until the
 *               queue is empty; jobs/s = N / wall time.
 *   latency     W idle threads LISTENing; the main thread enqueues one job at
 *               a time (payload carries the monotonic time just before the
 *               enqueue call) and each claim records now - t0: enqueue ->
 *               idle worker start, including the enqueue's own round trip.
 *
 * usage: bench_queue URL [--jobs N] [--workers 1,4,8] [--latency-workers W]
 *                        [--samples N] [--max-seconds S] [--separate 0|1] [--pin CPU]
 * --separate 1 also measures claim and complete as two calls.
 * --pin CPU (a diagnostic, PostgreSQL on this host, run as root or as its
 * user) puts every throughput thread and its backend on that one CPU: a
 * round trip then wakes a process on the CPU that is already running, where
 * unpinned it wakes one on the other, idle CPU, which on this VM costs an
 * inter-processor interrupt to a halted virtual CPU (docs/queue.md).
 * The database must have the migrations (sql/) applied; the bench empties `jobs`.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "queue.h"

static const char *url;
static int pin_cpu = -1; /* --pin: < 0 none */
static const char *const kinds[] = {"bench.noop", NULL};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sql(PGconn *c, const char *q)
{
	PGresult *r = PQexec(c, q);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "bench: %s: %s", q, PQresultErrorMessage(r));
		exit(1);
	}
	PQclear(r);
}

static PGconn *connect_or_die(void)
{
	PGconn *c;
	if (queue_connect(url, &c) < 0)
		exit(1);
	return c;
}

/* ---- throughput ---- */

struct tp_arg {
	pthread_barrier_t *start;
	double deadline;
	long done;
	int fused;
	char name[32];
};

static void *tp_worker(void *p)
{
	struct tp_arg *a = p;
	PGconn *c = connect_or_die();
	if (pin_cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(pin_cpu, &set);
		if (sched_setaffinity(0, sizeof set, &set) < 0 ||
		    sched_setaffinity(PQbackendPID(c), sizeof set, &set) < 0) {
			fprintf(stderr,
				"bench: --pin %d: %s (no such CPU, PostgreSQL on another host, or not ours to move)\n",
				pin_cpu, strerror(errno));
			exit(1);
		}
	}
	pthread_barrier_wait(a->start);
	struct queue_job job;
	int rc = queue_claim(c, a->name, kinds, 0, 30, &job);
	while (rc == 0) {
		struct queue_job next;
		if (a->fused) {
			/* atelier-worker's path: complete + claim the next in one call. */
			rc = queue_complete_claim(c, &job, NULL, a->name, kinds, 0, 30, &next);
			if (rc == 0 && next.id == 0)
				rc = AT_ENOTFOUND;
		} else {
			rc = queue_complete(c, job.id, job.token, NULL);
			if (rc == 0)
				rc = queue_claim(c, a->name, kinds, 0, 30, &next);
		}
		queue_job_clear(&job);
		a->done++;
		job = next;
		if ((a->done & 63) == 0 && now_s() > a->deadline) {
			if (rc == 0 && queue_complete(c, job.id, job.token, NULL) == 0)
				a->done++;
			queue_job_clear(&job);
			break;
		}
	}
	if (rc < 0 && rc != AT_ENOTFOUND) {
		fprintf(stderr, "bench: %s\n", at_strerror(rc));
		exit(1);
	}
	PQfinish(c);
	return NULL;
}

static void throughput(PGconn *admin, int workers, int njobs, double max_s, int fused)
{
	char q[256];
	sql(admin, "TRUNCATE jobs CASCADE");
	snprintf(q, sizeof q, "INSERT INTO jobs (kind) SELECT 'bench.noop' FROM generate_series(1, %d)", njobs);
	sql(admin, q);
	sql(admin, "VACUUM ANALYZE jobs");
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, (unsigned)workers + 1);
	pthread_t th[64];
	struct tp_arg args[64];
	for (int i = 0; i < workers; i++) {
		memset(&args[i], 0, sizeof args[i]);
		args[i].start = &start;
		args[i].fused = fused;
		snprintf(args[i].name, sizeof args[i].name, "bench-%d", i);
		pthread_create(&th[i], NULL, tp_worker, &args[i]);
	}
	double t0 = now_s();
	for (int i = 0; i < workers; i++)
		args[i].deadline = t0 + max_s;
	pthread_barrier_wait(&start);
	t0 = now_s();
	long done = 0;
	for (int i = 0; i < workers; i++) {
		pthread_join(th[i], NULL);
		done += args[i].done;
	}
	double dt = now_s() - t0;
	pthread_barrier_destroy(&start);
	char pinned[64] = "";
	if (pin_cpu >= 0)
		snprintf(pinned, sizeof pinned, "; workers and backends pinned to CPU %d", pin_cpu);
	printf("throughput  workers=%-2d jobs=%-6ld time=%6.2fs  %7.0f jobs/s (claim->complete, %s%s)\n", workers, done,
	       dt, (double)done / dt, fused ? "complete+claim fused: the worker's path" : "separate calls", pinned);
	fflush(stdout);
}

/* ---- latency ---- */

struct lat_shared {
	atomic_int stop;
	atomic_long seen;
	pthread_mutex_t mu;
	double *samples; /* ms */
	int n, cap;
};

struct lat_arg {
	struct lat_shared *sh;
	pthread_barrier_t *ready;
	char name[32];
};

static void *lat_worker(void *p)
{
	struct lat_arg *a = p;
	struct lat_shared *sh = a->sh;
	PGconn *c = connect_or_die();
	if (queue_listen(c) < 0)
		exit(1);
	pthread_barrier_wait(a->ready);
	while (!atomic_load(&sh->stop)) {
		struct queue_job job;
		int rc = queue_claim(c, a->name, kinds, 0, 30, &job);
		if (rc == 0) {
			int64_t t = now_ns();
			const char *s = strstr(job.payload, "\"t0\"");
			int64_t t0 = s ? strtoll(strchr(s, ':') + 1, NULL, 10) : t;
			pthread_mutex_lock(&sh->mu);
			if (sh->n < sh->cap)
				sh->samples[sh->n++] = (double)(t - t0) / 1e6;
			pthread_mutex_unlock(&sh->mu);
			if (queue_complete(c, job.id, job.token, NULL) < 0)
				exit(1);
			queue_job_clear(&job);
			atomic_fetch_add(&sh->seen, 1);
			continue;
		}
		if (rc != AT_ENOTFOUND)
			exit(1);
		if (queue_listen_wait(c, 100, -1) < 0)
			exit(1);
	}
	PQfinish(c);
	return NULL;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void latency(PGconn *admin, int workers, int samples)
{
	sql(admin, "TRUNCATE jobs CASCADE");
	sql(admin, "VACUUM ANALYZE jobs");
	struct lat_shared sh = {.cap = samples};
	atomic_init(&sh.stop, 0);
	atomic_init(&sh.seen, 0);
	pthread_mutex_init(&sh.mu, NULL);
	sh.samples = calloc((size_t)samples, sizeof *sh.samples);
	pthread_barrier_t ready;
	pthread_barrier_init(&ready, NULL, (unsigned)workers + 1);
	pthread_t th[64];
	struct lat_arg args[64];
	for (int i = 0; i < workers; i++) {
		args[i] = (struct lat_arg){.sh = &sh, .ready = &ready};
		snprintf(args[i].name, sizeof args[i].name, "lat-%d", i);
		pthread_create(&th[i], NULL, lat_worker, &args[i]);
	}
	pthread_barrier_wait(&ready);
	usleep(200000); /* let every worker reach its wait */
	PGconn *c = connect_or_die();
	double enq_total = 0;
	for (int i = 0; i < samples; i++) {
		char payload[64];
		int64_t t0 = now_ns();
		snprintf(payload, sizeof payload, "{\"t0\":%" PRId64 "}", t0);
		struct queue_new_job nj = {.kind = "bench.noop", .payload = payload};
		if (queue_enqueue(c, &nj, NULL) < 0)
			exit(1);
		enq_total += (double)(now_ns() - t0) / 1e6;
		/* Wait until it ran and the workers are idle again. */
		double until = now_s() + 1;
		while (atomic_load(&sh.seen) < i + 1 && now_s() < until)
			usleep(200);
		usleep(3000);
	}
	atomic_store(&sh.stop, 1);
	for (int i = 0; i < workers; i++)
		pthread_join(th[i], NULL);
	PQfinish(c);
	qsort(sh.samples, (size_t)sh.n, sizeof *sh.samples, cmp_dbl);
	if (sh.n > 0)
		printf("latency     workers=%-2d samples=%d enqueue->idle-worker-start p50=%.2f ms p99=%.2f ms max=%.2f ms"
		       " (enqueue call itself: mean %.2f ms)\n",
		       workers, sh.n, sh.samples[sh.n / 2], sh.samples[(int)(sh.n * 0.99)], sh.samples[sh.n - 1],
		       enq_total / samples);
	fflush(stdout);
	free(sh.samples);
	pthread_barrier_destroy(&ready);
	pthread_mutex_destroy(&sh.mu);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: bench_queue URL [--jobs N] [--workers 1,4,8] [--latency-workers W] "
				"[--samples N] [--max-seconds S] [--separate 0|1] [--pin CPU]\n");
		return 2;
	}
	log_init("bench");
	url = argv[1];
	int njobs = 20000, lat_workers = 4, samples = 500, separate = 0;
	double max_s = 15;
	char workers_list[64] = "1,4,8";
	for (int i = 2; i < argc; i += 2) {
		if (i + 1 == argc) {
			fprintf(stderr, "bench_queue: %s needs a value\n", argv[i]);
			return 2;
		}
		if (strcmp(argv[i], "--jobs") == 0)
			njobs = (int)strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--workers") == 0)
			snprintf(workers_list, sizeof workers_list, "%s", argv[i + 1]);
		else if (strcmp(argv[i], "--latency-workers") == 0)
			lat_workers = (int)strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--samples") == 0)
			samples = (int)strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--separate") == 0)
			separate = (int)strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--max-seconds") == 0)
			max_s = strtod(argv[i + 1], NULL);
		else if (strcmp(argv[i], "--pin") == 0)
			pin_cpu = (int)strtol(argv[i + 1], NULL, 10);
		else {
			fprintf(stderr, "bench_queue: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (pin_cpu >= CPU_SETSIZE) {
		fprintf(stderr, "bench_queue: --pin %d: no such CPU\n", pin_cpu);
		return 2;
	}
	PGconn *admin = connect_or_die();
	sql(admin, "SET client_min_messages = warning");
	for (char *save = NULL, *t = strtok_r(workers_list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int w = (int)strtol(t, NULL, 10);
		if (w >= 1 && w <= 64)
			throughput(admin, w, njobs, max_s, 1);
		if (w >= 1 && w <= 64 && separate)
			throughput(admin, w, njobs, max_s, 0);
	}
	if (lat_workers >= 1 && lat_workers <= 64 && samples > 0)
		latency(admin, lat_workers, samples);
	sql(admin, "TRUNCATE jobs CASCADE");
	PQfinish(admin);
	return 0;
}
