/*
 * bench_gallery.c — the gallery's benchmark programs (bench/gallery/run.sh):
 *
 *   bench_gallery synth K OUT.sql
 *       K synth-world works (lib/synth: a 256 px sketch as PNG, a 512 px
 *       painting as JPEG, what the page publishes) as an INSERT into a table
 *       bench_images(k, sketch, painting) that run.sh multiplies into works.
 *   bench_gallery load URL PATHS --clients N --seconds S [--post TYPE] [--once 1]
 *       N threads, each with its own keep-alive libcurl handle, GET (or POST
 *       an empty body of Content-Type TYPE) random lines of the file PATHS
 *       until S seconds pass (--once: every line once, in order, shared by
 *       the threads); prints requests, failures (any status but 200/304, or
 *       415 with --post), rps and latency p50/p95/p99 in ms.
 *   bench_gallery ratelimit
 *       lib/ratelimit's ratelimit_take over 65,536 client keys in a table of
 *       65,536 slots (the node's default): nanoseconds a call.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image.h"
#include "ratelimit.h"
#include "synth.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- synth ---- */

static void hex_out(FILE *f, const uint8_t *d, size_t n)
{
	fputs("'\\x", f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02x", d[i]);
	fputs("'", f);
}

static int synth(int k, const char *out)
{
	FILE *f = fopen(out, "w");
	if (!f)
		return 1;
	fputs("CREATE TABLE bench_images (k int PRIMARY KEY, sketch bytea, painting bytea);\n", f);
	uint8_t *gray = malloc(256 * 256), *rgb = malloc(512 * 512 * 3);
	for (int i = 0; i < k; i++) {
		uint8_t *png = NULL, *jpg = NULL;
		size_t pl = 0, jl = 0;
		if (synth_sketch((uint64_t)i + 1, 256, gray, NULL) < 0 ||
		    synth_painting((uint64_t)i + 1, 512, rgb, NULL) < 0 ||
		    image_encode_png(gray, 256, 256, 1, IMAGE_PNG_FAST, &png, &pl) < 0 ||
		    image_encode_jpeg(rgb, 512, 512, 90, &jpg, &jl) < 0) {
			fprintf(stderr, "synth %d failed\n", i);
			return 1;
		}
		fprintf(f, "INSERT INTO bench_images VALUES (%d, ", i + 1);
		hex_out(f, png, pl);
		fputs(", ", f);
		hex_out(f, jpg, jl);
		fputs(");\n", f);
		free(png);
		free(jpg);
	}
	free(gray);
	free(rgb);
	return fclose(f) == 0 ? 0 : 1;
}

/* ---- load ---- */

static char **paths;
static size_t npaths;
static const char *base, *post_type;
static int once;
static size_t next_path;
static double until;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static double *lat;
static size_t nlat, caplat;
static long failures;

static size_t sink(void *p, size_t s, size_t n, void *u) { return s * n; }

static void *client(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u;
	CURL *h = curl_easy_init();
	struct curl_slist *hdr = NULL;
	char ct[128];
	if (post_type) {
		snprintf(ct, sizeof ct, "Content-Type: %s", post_type);
		hdr = curl_slist_append(hdr, ct);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
	}
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
	double mine[4096];
	size_t nm = 0;
	long fail = 0;
	for (;;) {
		size_t i;
		if (once) {
			i = __atomic_fetch_add(&next_path, 1, __ATOMIC_RELAXED);
			if (i >= npaths)
				break;
		} else {
			if (now_s() >= until)
				break;
			i = rand_r(&seed) % npaths;
		}
		char url[1024];
		snprintf(url, sizeof url, "%s%s", base, paths[i]);
		curl_easy_setopt(h, CURLOPT_URL, url);
		double t0 = now_s();
		CURLcode cc = curl_easy_perform(h);
		double ms = (now_s() - t0) * 1e3;
		long st = 0;
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
		if (cc != CURLE_OK || (post_type ? st != 415 : (st != 200 && st != 304)))
			fail++;
		mine[nm++] = ms;
		if (nm == sizeof mine / sizeof mine[0]) {
			pthread_mutex_lock(&mu);
			if (nlat + nm > caplat) {
				caplat = (nlat + nm) * 2;
				lat = realloc(lat, caplat * sizeof *lat);
			}
			memcpy(lat + nlat, mine, nm * sizeof *lat);
			nlat += nm;
			pthread_mutex_unlock(&mu);
			nm = 0;
		}
	}
	pthread_mutex_lock(&mu);
	if (nlat + nm > caplat) {
		caplat = nlat + nm;
		lat = realloc(lat, caplat * sizeof *lat);
	}
	memcpy(lat + nlat, mine, nm * sizeof *lat);
	nlat += nm;
	failures += fail;
	pthread_mutex_unlock(&mu);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(h);
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int load(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	base = argv[2];
	int clients = 32;
	double seconds = 10;
	for (int i = 4; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--clients"))
			clients = (int)strtol(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--seconds"))
			seconds = strtod(argv[i + 1], NULL);
		else if (!strcmp(argv[i], "--post"))
			post_type = argv[i + 1];
		else if (!strcmp(argv[i], "--once"))
			once = !strcmp(argv[i + 1], "1");
	}
	FILE *f = fopen(argv[3], "r");
	if (!f)
		return 1;
	char line[1024];
	size_t cap = 0;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		if (!line[0])
			continue;
		if (npaths == cap)
			paths = realloc(paths, (cap = cap ? cap * 2 : 1024) * sizeof *paths);
		paths[npaths++] = strdup(line);
	}
	fclose(f);
	if (!npaths || clients < 1 || clients > 1024)
		return 2;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	pthread_t *t = calloc((size_t)clients, sizeof *t);
	double t0 = now_s();
	until = t0 + seconds;
	for (int i = 0; i < clients; i++)
		pthread_create(&t[i], NULL, client, (void *)(uintptr_t)(i + 1));
	for (int i = 0; i < clients; i++)
		pthread_join(t[i], NULL);
	double wall = now_s() - t0;
	qsort(lat, nlat, sizeof *lat, cmp);
	double p50 = nlat ? lat[nlat / 2] : 0, p95 = nlat ? lat[nlat * 95 / 100] : 0,
	       p99 = nlat ? lat[nlat * 99 / 100] : 0;
	printf("requests=%zu failures=%ld rps=%.0f p50_ms=%.3f p95_ms=%.3f p99_ms=%.3f clients=%d\n", nlat, failures,
	       (double)nlat / wall, p50, p95, p99, clients);
	free(t);
	curl_global_cleanup();
	return failures ? 1 : 0;
}

/* ---- ratelimit ---- */

static int rl_bench(void)
{
	struct ratelimit *rl;
	if (ratelimit_new(1e9, 1e9, 65536, &rl) < 0)
		return 1;
	enum { KEYS = 65536, CALLS = 4000000 };
	uint8_t(*keys)[16] = calloc(KEYS, 16);
	for (int i = 0; i < KEYS; i++) {
		keys[i][0] = 4;
		keys[i][12] = (uint8_t)(i >> 8);
		keys[i][13] = (uint8_t)i;
		keys[i][14] = 7;
	}
	double wait, t0 = now_s();
	long refused = 0;
	for (int i = 0; i < CALLS; i++)
		refused += ratelimit_take(rl, keys[(unsigned)i * 2654435761u % KEYS], (uint64_t)i * 1000, &wait) != 0;
	double ns = (now_s() - t0) * 1e9 / CALLS;
	printf("ratelimit_take_ns=%.1f keys=%d slots=65536 refused=%ld\n", ns, KEYS, refused);
	ratelimit_free(rl);
	free(keys);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "synth"))
		return synth((int)strtol(argv[2], NULL, 10), argv[3]);
	if (argc >= 4 && !strcmp(argv[1], "load"))
		return load(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "ratelimit"))
		return rl_bench();
	fprintf(stderr, "usage: bench_gallery synth K OUT.sql | load URL PATHS [--clients N --seconds S --post TYPE] "
			"| ratelimit\n");
	return 2;
}
