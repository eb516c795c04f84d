/*
 * bench_train.c — figures for the model shim, through its C API only:
 *
 *   bench_train train SIZE BATCH GEN_DIM DIS_DIM STEPS   seconds per step, peak RSS
 *   bench_train infer SIZE GEN_DIM RUNS                  ms per stylize, peak RSS
 *
 * Everything else is MUNIT's defaults. One configuration per process, so
 * that peak RSS belongs to it. BENCH_THREADS sets libtorch's threads and
 * BENCH_DEVICE (auto, cpu, cuda) the device; the Python reference reads the
 * same variables. Output: one key=value line
 * that bench/train/run.sh lines up with munit_ref.py's.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "atelier_model.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double peak_rss_mb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss / 1024.0;
}

static int arg(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*end || v < 1 || v > 100000) {
		fprintf(stderr, "bad number: %s\n", s);
		exit(2);
	}
	return (int)v;
}

static void die(const char *what, am_status_t *st)
{
	fprintf(stderr, "%s: %s\n", what, am_status_message(st));
	exit(1);
}

static void set_device(am_config *c)
{
	const char *d = getenv("BENCH_DEVICE");
	if (d && *d)
		snprintf(c->device, sizeof c->device, "%s", d);
}

static float *random_batch(size_t n, uint32_t seed)
{
	float *p = malloc(n * sizeof *p);
	if (!p)
		exit(1);
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		p[i] = (float)(seed >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
	}
	return p;
}

static int bench_train(am_status_t *st, int size, int batch, int gen_dim, int dis_dim, int steps)
{
	am_config c = am_config_default();
	c.image_size = size;
	c.gen_dim = gen_dim;
	c.dis_dim = dis_dim;
	set_device(&c);
	am_trainer *t = am_trainer_new(&c, st);
	if (!t)
		die("am_trainer_new", st);
	float *xa = random_batch((size_t)batch * size * size, 1);
	float *xb = random_batch((size_t)batch * 3 * size * size, 2);
	am_losses l;
	/* The first step pays for allocator growth and kernel selection. */
	if (am_trainer_step(t, xa, xb, batch, &l, st) < 0)
		die("am_trainer_step", st);
	double t0 = now();
	for (int i = 0; i < steps; i++)
		if (am_trainer_step(t, xa, xb, batch, &l, st) < 0)
			die("am_trainer_step", st);
	double dt = (now() - t0) / steps;
	printf("impl=shim kind=train size=%d batch=%d gen_dim=%d dis_dim=%d s_per_step=%.4f peak_rss_mb=%.0f device=%s\n",
	       size, batch, gen_dim, dis_dim, dt, peak_rss_mb(),
	       strcmp(c.device, "auto") ? c.device : am_device_name());
	free(xa);
	free(xb);
	am_trainer_free(t);
	return 0;
}

static int bench_infer(am_status_t *st, int size, int gen_dim, int runs)
{
	am_config c = am_config_default();
	c.image_size = size;
	c.gen_dim = gen_dim;
	c.dis_dim = gen_dim;
	set_device(&c);
	am_trainer *t = am_trainer_new(&c, st);
	if (!t)
		die("am_trainer_new", st);
	char path[] = "/tmp/atelier-bench-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return 1;
	close(fd);
	if (am_trainer_export(t, path, st) < 0)
		die("am_trainer_export", st);
	am_trainer_free(t);
	am_model *m = am_model_load(path, c.device, st);
	unlink(path);
	if (!m)
		die("am_model_load", st);
	uint8_t *gray = malloc((size_t)size * size), *rgb = malloc((size_t)size * size * 3);
	if (!gray || !rgb)
		return 1;
	for (int i = 0; i < size * size; i++)
		gray[i] = (uint8_t)(i * 2654435761u >> 24);
	am_style s;
	memset(&s, 0, sizeof s);
	s.kind = AM_STYLE_SEED;
	if (am_model_stylize(m, gray, size, size, &s, rgb, size, size, st) < 0)
		die("am_model_stylize", st);
	double t0 = now();
	for (int i = 0; i < runs; i++) {
		s.seed = (uint64_t)i;
		if (am_model_stylize(m, gray, size, size, &s, rgb, size, size, st) < 0)
			die("am_model_stylize", st);
	}
	double dt = (now() - t0) / runs;
	printf("impl=shim kind=infer size=%d gen_dim=%d ms_per_image=%.1f peak_rss_mb=%.0f device=%s\n", size, gen_dim,
	       dt * 1000, peak_rss_mb(), am_model_device(m));
	free(gray);
	free(rgb);
	am_model_free(m);
	return 0;
}

int main(int argc, char **argv)
{
	am_status_t *st = am_status_new();
	const char *threads = getenv("BENCH_THREADS");
	if (threads && *threads && am_set_threads(arg(threads), st) < 0)
		die("am_set_threads", st);
	int rc = 2;
	if (argc == 7 && !strcmp(argv[1], "train"))
		rc = bench_train(st, arg(argv[2]), arg(argv[3]), arg(argv[4]), arg(argv[5]), arg(argv[6]));
	else if (argc == 5 && !strcmp(argv[1], "infer"))
		rc = bench_infer(st, arg(argv[2]), arg(argv[3]), arg(argv[4]));
	else
		fprintf(stderr, "usage: %s train SIZE BATCH GEN_DIM DIS_DIM STEPS | infer SIZE GEN_DIM RUNS\n",
			argv[0]);
	am_status_free(st);
	return rc;
}
