/*
 * gang_rank.c — one rank of a data-parallel MUNIT run through the shim's C
 * API (am_dist_*), on synthetic batches; tests/test_gang.py and
 * bench/gang/run.sh start one per rank (or one alone, world 1, as the
 * single-process reference).
 *
 *   gang_rank RANK WORLD STORE_HOST STORE_PORT MY_HOST STEPS BATCH OUT_DIR [RESUME]
 *
 * Rank 0 hosts the store on STORE_HOST:STORE_PORT (0 = any free port) and
 * writes the port to OUT_DIR/port; the others wait for that file when
 * STORE_PORT is 0. BATCH is the per-rank batch; rank r trains on samples
 * [r * BATCH, (r + 1) * BATCH) of each step's combined batch of
 * WORLD * BATCH, which depends only on the step (splitmix64), so world 1
 * with batch WORLD * BATCH is the same data in one process. WORLD 1 uses no
 * group at all. RESUME: a checkpoint rank 0 starts from (the broadcast
 * brings it to the others). GANG_SLOW_MS (environment) sleeps that long
 * after each step, so that a test can kill a rank mid-run; GANG_CKPT_EVERY=N
 * makes rank 0 save OUT_DIR/rank0.step.ckpt every N steps and then write
 * the step to OUT_DIR/rank0.step. GANG_CONFIG: JSON config keys applied on
 * top of the tiny model (bench/gang/run.sh sizes it up).
 *
 * Output (stdout, one line each): "step N gen G dis D" with the group's mean
 * losses (%.9g), then "sha256 HEX" of the checkpoint this rank writes to
 * OUT_DIR/rankR.ckpt, then "samples_per_s X allreduces N bytes B
 * comm_s S step_s T". Exit 1 with the shim's message on any failure.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "atelier_model.h"
#include "fsutil.h"
#include "splitmix.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int num(const char *s, long lo, long hi)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*end || v < lo || v > hi) {
		fprintf(stderr, "gang_rank: bad number %s (want %ld..%ld)\n", s, lo, hi);
		exit(2);
	}
	return (int)v;
}

static void die(const char *what, am_status_t *st)
{
	fprintf(stderr, "gang_rank: %s: %s\n", what, am_status_message(st));
	exit(1);
}

/* Sample i of step k's combined batch, values in [-1, 1]. */
static void fill(float *dst, size_t n, uint64_t step, uint64_t sample, uint64_t domain)
{
	uint64_t s = splitmix64_mix(step * 1000003u + sample * 7919u + domain);
	for (size_t i = 0; i < n; i++)
		dst[i] = (float)((splitmix64_next(&s) >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

int main(int argc, char **argv)
{
	if (argc != 9 && argc != 10) {
		fprintf(stderr,
			"usage: gang_rank RANK WORLD STORE_HOST STORE_PORT MY_HOST STEPS BATCH OUT_DIR [RESUME]\n");
		return 2;
	}
	int world = num(argv[2], 1, 64), rank = num(argv[1], 0, world - 1);
	int port = num(argv[4], 0, 65535), steps = num(argv[6], 1, 100000), batch = num(argv[7], 1, 256);
	const char *host = argv[3], *my_host = argv[5], *out = argv[8], *resume = argc == 10 ? argv[9] : NULL;
	const char *slow = getenv("GANG_SLOW_MS");
	int slow_ms = slow && *slow ? num(slow, 0, 60000) : 0;
	const char *ck = getenv("GANG_CKPT_EVERY");
	int ck_every = ck && *ck ? num(ck, 1, 100000) : 0;
	char path[4096];
	am_status_t *st = am_status_new();
	if (!st)
		return 1;

	/* A tiny model: the point is the group, not the pictures. */
	am_config cfg = am_config_default();
	const char *tiny = "{\"image_size\":16,\"gen_dim\":4,\"style_dim\":4,\"n_downsample\":1,\"n_res\":1,"
			   "\"mlp_dim\":8,\"dis_dim\":4,\"n_layer\":2,\"num_scales\":1,\"threads\":1,"
			   "\"device\":\"cpu\",\"lr\":0.001}";
	const char *more = getenv("GANG_CONFIG");
	if (am_config_from_json(tiny, &cfg, st) < 0 || (more && *more && am_config_from_json(more, &cfg, st) < 0))
		die("config", st);
	am_trainer *t = resume && rank == 0 ? am_trainer_load(resume, "cpu", st) : am_trainer_new(&cfg, st);
	if (!t)
		die("trainer", st);

	am_dist *d = NULL;
	if (world > 1) {
		if (rank == 0) {
			d = am_dist_listen(host, port, world, 20000, st);
			if (!d)
				die("listen", st);
			snprintf(path, sizeof path, "%s/port.tmp", out);
			FILE *f = fopen(path, "w");
			if (!f || fprintf(f, "%d\n", am_dist_port(d)) < 0 || fclose(f) != 0)
				return 1;
			char final[4096];
			snprintf(final, sizeof final, "%s/port", out);
			if (rename(path, final) != 0)
				return 1;
		} else {
			snprintf(path, sizeof path, "%s/port", out);
			for (int i = 0; port == 0 && i < 2000; i++) {
				FILE *f = fopen(path, "r");
				char line[32];
				if (f && fgets(line, sizeof line, f))
					port = num(strtok(line, "\n"), 1, 65535);
				if (f)
					fclose(f);
				if (port == 0)
					usleep(10000);
			}
			d = am_dist_connect(host, port, rank, world, 20000, st);
			if (!d)
				die("connect", st);
		}
		if (am_dist_join(d, my_host, st) < 0)
			die("join", st);
		if (am_dist_attach(d, t, st) < 0)
			die("attach", st);
	}

	int s = cfg.image_size;
	size_t na = (size_t)s * s, nb = 3 * na;
	float *xa = malloc(sizeof(float) * na * batch), *xb = malloc(sizeof(float) * nb * batch);
	if (!xa || !xb)
		return 1;
	double t0 = now();
	uint64_t first = am_trainer_steps(t);
	for (int k = 0; k < steps; k++) {
		uint64_t step = first + (uint64_t)k;
		for (int i = 0; i < batch; i++) {
			uint64_t sample = (uint64_t)rank * batch + i;
			fill(xa + na * i, na, step, sample, 1);
			fill(xb + nb * i, nb, step, sample, 2);
		}
		am_losses l;
		if (am_trainer_step(t, xa, xb, batch, &l, st) < 0)
			die("step", st);
		printf("step %llu gen %.9g dis %.9g\n", (unsigned long long)l.step, l.gen_total, l.dis_total);
		fflush(stdout);
		if (rank == 0 && ck_every && l.step % (uint64_t)ck_every == 0) {
			char tmp[4096];
			snprintf(path, sizeof path, "%s/rank0.step.ckpt", out);
			if (am_trainer_save(t, path, st) < 0)
				die("checkpoint", st);
			snprintf(tmp, sizeof tmp, "%s/rank0.step.tmp", out);
			snprintf(path, sizeof path, "%s/rank0.step", out);
			FILE *f = fopen(tmp, "w");
			if (!f || fprintf(f, "%llu", (unsigned long long)l.step) < 0 || fclose(f) != 0 ||
			    rename(tmp, path) != 0)
				return 1;
		}
		if (slow_ms)
			usleep((useconds_t)slow_ms * 1000);
	}
	double dt = now() - t0;
	snprintf(path, sizeof path, "%s/rank%d.ckpt", out, rank);
	if (am_trainer_save(t, path, st) < 0)
		die("save", st);
	char hex[65];
	if (at_file_sha256(path, hex, NULL) < 0)
		return 1;
	printf("sha256 %s\n", hex);
	am_dist_stats ds;
	am_dist_get_stats(d, &ds);
	printf("samples_per_s %.3f allreduces %llu bytes %llu comm_s %.6f step_s %.6f\n",
	       (double)steps * batch * world / dt, (unsigned long long)ds.allreduces, (unsigned long long)ds.bytes,
	       ds.seconds, dt / steps);
	free(xa);
	free(xb);
	am_trainer_free(t);
	am_dist_free(d);
	am_status_free(st);
	return 0;
}
