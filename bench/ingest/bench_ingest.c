/*
 * bench_ingest.c — upload N distinct 256×256 PNG sketches to a running
 * atelierd over loopback with C concurrent connections (libcurl multi), then
 * print accepted/s, latency percentiles and atelierd's peak RSS.
 *
 *   bench_ingest URL TOKEN N C PID
 *
 * The images are generated before the clock starts (random strokes, encoded
 * with the project's PNG encoder), so only upload → validate → commit is timed.
 */
#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image.h"
#include "../proc_status.h"

struct xfer {
	CURL *h;
	size_t idx;
	double t0;
	struct curl_slist *hdrs;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void draw_sketch(uint8_t *pix, int size, size_t seed)
{
	memset(pix, 255, (size_t)size * size);
	rng = 0x9E3779B97F4A7C15ull * (seed + 1);
	for (int s = 0; s < 6; s++) {
		double x = (double)(next_rand() % (uint64_t)size), y = (double)(next_rand() % (uint64_t)size);
		double dx = ((double)(next_rand() % 200) - 100) / 100.0,
		       dy = ((double)(next_rand() % 200) - 100) / 100.0;
		for (int k = 0; k < 120; k++) {
			int ix = (int)x, iy = (int)y;
			for (int oy = 0; oy < 2; oy++)
				for (int ox = 0; ox < 2; ox++)
					if (ix + ox >= 0 && ix + ox < size && iy + oy >= 0 && iy + oy < size)
						pix[(iy + oy) * size + ix + ox] = 0;
			x += dx;
			y += dy;
			dx += ((double)(next_rand() % 100) - 50) / 400.0;
			dy += ((double)(next_rand() % 100) - 50) / 400.0;
		}
	}
}

static size_t sink(char *p, size_t sz, size_t n, void *arg) { return sz * n; }

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: bench_ingest URL TOKEN N C PID\n");
		return 2;
	}
	const char *url = argv[1], *token = argv[2], *pid = argv[5];
	size_t n = strtoul(argv[3], NULL, 10);
	int conc = (int)strtol(argv[4], NULL, 10);
	uint8_t **png = calloc(n, sizeof *png);
	size_t *len = calloc(n, sizeof *len);
	uint8_t *pix = malloc(256 * 256);
	size_t total_bytes = 0;
	for (size_t i = 0; i < n; i++) {
		draw_sketch(pix, 256, i);
		if (image_encode_png(pix, 256, 256, 1, IMAGE_PNG_FAST, &png[i], &len[i]) < 0) {
			fprintf(stderr, "encode failed\n");
			return 1;
		}
		total_bytes += len[i];
	}
	free(pix);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	CURLM *m = curl_multi_init();
	char full[512], auth[256];
	snprintf(full, sizeof full, "%s/v1/sketches", url);
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
	double *lat = calloc(n, sizeof *lat);
	size_t next = 0, done = 0, accepted = 0, dup = 0, other = 0;
	struct xfer *xs = calloc((size_t)conc, sizeof *xs);
	double start = now();
	for (int i = 0; i < conc && next < n; i++) {
		struct xfer *x = &xs[i];
		x->h = curl_easy_init();
		x->hdrs = curl_slist_append(NULL, auth);
		x->hdrs = curl_slist_append(x->hdrs, "Content-Type: image/png");
		x->hdrs = curl_slist_append(x->hdrs, "Expect:");
		curl_easy_setopt(x->h, CURLOPT_URL, full);
		curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, x->hdrs);
		curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, sink);
		curl_easy_setopt(x->h, CURLOPT_PRIVATE, x);
		x->idx = next++;
		curl_easy_setopt(x->h, CURLOPT_POSTFIELDS, png[x->idx]);
		curl_easy_setopt(x->h, CURLOPT_POSTFIELDSIZE, (long)len[x->idx]);
		x->t0 = now();
		curl_multi_add_handle(m, x->h);
	}
	while (done < n) {
		int running;
		curl_multi_perform(m, &running);
		curl_multi_poll(m, NULL, 0, 100, NULL);
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(m, &left)) != NULL) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			struct xfer *x;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
			long status = 0;
			curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
			lat[done++] = now() - x->t0;
			if (status == 201)
				accepted++;
			else if (status == 200)
				dup++;
			else
				other++;
			curl_multi_remove_handle(m, x->h);
			if (next < n) {
				x->idx = next++;
				curl_easy_setopt(x->h, CURLOPT_POSTFIELDS, png[x->idx]);
				curl_easy_setopt(x->h, CURLOPT_POSTFIELDSIZE, (long)len[x->idx]);
				x->t0 = now();
				curl_multi_add_handle(m, x->h);
			}
		}
	}
	double secs = now() - start;
	qsort(lat, n, sizeof *lat, cmp_double);
	printf("ingest: %zu uploads (%.1f KiB avg PNG), concurrency %d, %.2f s\n", n,
	       (double)total_bytes / (double)n / 1024.0, conc, secs);
	printf("ingest: accepted %zu, duplicate %zu, other %zu\n", accepted, dup, other);
	printf("ingest: %.0f accepted sketches/s (validated and committed)\n", (double)accepted / secs);
	printf("ingest: latency p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", lat[n / 2] * 1e3,
	       lat[(size_t)((double)n * 0.99)] * 1e3, lat[n - 1] * 1e3);
	printf("ingest: atelierd peak RSS %.1f MB\n", (double)proc_status_kb(pid, "VmHWM:") / 1024.0);
	for (int i = 0; i < conc; i++) {
		if (xs[i].h) {
			curl_easy_cleanup(xs[i].h);
			curl_slist_free_all(xs[i].hdrs);
		}
	}
	curl_multi_cleanup(m);
	for (size_t i = 0; i < n; i++)
		free(png[i]);
	free(png);
	free(len);
	free(lat);
	free(xs);
	return other ? 1 : 0;
}
