/*
 * bench_serve.c — load generator for POST /api/stylize (atelier-serve or the
 * Flask reference: same contract). N client threads, each with its own
 * blocking libcurl handle (keep-alive), send the same 256x256 sketch with
 * varying style numbers; prints one line of key=value figures:
 *
 *   bench_serve URL [--clients N] [--requests M | --seconds S] [--size PX]
 *                   [--reload-every-ms MS --reloads K --admin-token T]
 *
 * With --reloads, a further thread POSTs URL/admin/reload every MS
 * milliseconds, K times, while the clients run (hot swaps under load); the
 * clients keep going until the reloads are done. Any answer but 200 with a
 * JPEG body counts as a failure.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "image.h"

struct opts {
	const char *url;
	int clients, requests, size, reload_ms, reloads;
	double seconds;
	const char *admin;
};

static struct opts o = {.clients = 1, .requests = 20, .size = 256};
static uint8_t *png;
static size_t png_len;
static int stop_flag;
static int next_req;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static double *lat;
static int nlat, failures, reload_ok, reload_fail;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct sink {
	size_t len;
	unsigned char head[4];
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
	struct sink *s = arg;
	for (size_t i = 0; i < size * n && s->len + i < sizeof s->head; i++)
		s->head[s->len + i] = (unsigned char)p[i];
	s->len += size * n;
	return size * n;
}

/* A sketch: a frame, a diagonal, a circle — ink on white. */
static int make_sketch(int n)
{
	uint8_t *g = malloc((size_t)n * n);
	if (!g)
		return -1;
	for (int y = 0; y < n; y++)
		for (int x = 0; x < n; x++) {
			int dx = x - n / 2, dy = y - n / 2, r2 = dx * dx + dy * dy, r = n / 4;
			int ink = x == y || x < 3 || y < 3 || x > n - 4 || y > n - 4 ||
				  (r2 > (r - 2) * (r - 2) && r2 < r * r);
			g[y * n + x] = ink ? 0 : 255;
		}
	int rc = image_encode_png(g, n, n, 1, IMAGE_PNG_FAST, &png, &png_len);
	free(g);
	return rc;
}

static int claim(void)
{
	pthread_mutex_lock(&mu);
	int i = -1;
	if (!stop_flag && (o.seconds > 0 || o.reloads > 0 || next_req < o.requests))
		i = next_req++;
	pthread_mutex_unlock(&mu);
	return i;
}

static void *client(void *arg)
{
	CURL *h = curl_easy_init();
	char url[1024];
	snprintf(url, sizeof url, "%s/api/stylize", o.url);
	int i;
	while ((i = claim()) >= 0) {
		curl_mime *m = curl_mime_init(h);
		curl_mimepart *p = curl_mime_addpart(m);
		curl_mime_name(p, "contentImage");
		curl_mime_data(p, (const char *)png, png_len);
		curl_mime_filename(p, "sketch.png");
		curl_mime_type(p, "image/png");
		char style[16];
		snprintf(style, sizeof style, "%d", i % 97);
		p = curl_mime_addpart(m);
		curl_mime_name(p, "style");
		curl_mime_data(p, style, CURL_ZERO_TERMINATED);
		struct sink s = {0};
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_MIMEPOST, m);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
		curl_easy_setopt(h, CURLOPT_TIMEOUT, 120L);
		struct curl_slist *hd = curl_slist_append(NULL, "Expect:");
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
		double t0 = now_s();
		CURLcode cc = curl_easy_perform(h);
		double dt = now_s() - t0;
		long status = 0;
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		int ok = cc == CURLE_OK && status == 200 && s.len > 3 && s.head[0] == 0xFF && s.head[1] == 0xD8;
		pthread_mutex_lock(&mu);
		if (ok)
			lat[nlat++ % 1000000] = dt;
		else {
			failures++;
			if (failures <= 5)
				fprintf(stderr, "bench_serve: request failed: %s, HTTP %ld\n", curl_easy_strerror(cc),
					status);
		}
		pthread_mutex_unlock(&mu);
		curl_slist_free_all(hd);
		curl_mime_free(m);
	}
	curl_easy_cleanup(h);
	return NULL;
}

static void *reloader(void *arg)
{
	CURL *h = curl_easy_init();
	char url[1024], auth[600];
	snprintf(url, sizeof url, "%s/admin/reload", o.url);
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", o.admin ? o.admin : "");
	for (int k = 0; k < o.reloads; k++) {
		usleep((useconds_t)o.reload_ms * 1000);
		struct curl_slist *hd = curl_slist_append(NULL, auth);
		struct sink s = {0};
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
		curl_easy_setopt(h, CURLOPT_TIMEOUT, 300L);
		CURLcode cc = curl_easy_perform(h);
		long status = 0;
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		pthread_mutex_lock(&mu);
		if (cc == CURLE_OK && status == 200)
			reload_ok++;
		else
			reload_fail++;
		pthread_mutex_unlock(&mu);
		curl_slist_free_all(hd);
	}
	/* let the clients see the last model, then stop them */
	usleep((useconds_t)o.reload_ms * 1000);
	pthread_mutex_lock(&mu);
	stop_flag = 1;
	pthread_mutex_unlock(&mu);
	curl_easy_cleanup(h);
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double pct(const double *v, int n, double q)
{
	if (n == 0)
		return 0;
	int k = (int)(q * n + 0.999999);
	return v[(k < 1 ? 1 : k > n ? n : k) - 1];
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: bench_serve URL [--clients N] [--requests M | --seconds S] [--size PX] "
				"[--reload-every-ms MS --reloads K --admin-token T]\n");
		return 2;
	}
	o.url = argv[1];
	for (int i = 2; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];
		if (!strcmp(k, "--clients"))
			o.clients = (int)strtol(v, NULL, 10);
		else if (!strcmp(k, "--requests"))
			o.requests = (int)strtol(v, NULL, 10);
		else if (!strcmp(k, "--seconds"))
			o.seconds = strtod(v, NULL);
		else if (!strcmp(k, "--size"))
			o.size = (int)strtol(v, NULL, 10);
		else if (!strcmp(k, "--reload-every-ms"))
			o.reload_ms = (int)strtol(v, NULL, 10);
		else if (!strcmp(k, "--reloads"))
			o.reloads = (int)strtol(v, NULL, 10);
		else if (!strcmp(k, "--admin-token"))
			o.admin = v;
		else {
			fprintf(stderr, "bench_serve: unknown option %s\n", k);
			return 2;
		}
	}
	if (o.clients < 1 || o.size < 16 || image_init() < 0 || make_sketch(o.size) < 0)
		return 2;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	lat = calloc(1000000, sizeof *lat);
	pthread_t th[256], rl;
	if (o.clients > 256)
		o.clients = 256;
	double t0 = now_s();
	for (int i = 0; i < o.clients; i++)
		pthread_create(&th[i], NULL, client, NULL);
	if (o.reloads > 0)
		pthread_create(&rl, NULL, reloader, NULL);
	else if (o.seconds > 0) {
		usleep((useconds_t)(o.seconds * 1e6));
		pthread_mutex_lock(&mu);
		stop_flag = 1;
		pthread_mutex_unlock(&mu);
	}
	for (int i = 0; i < o.clients; i++)
		pthread_join(th[i], NULL);
	if (o.reloads > 0)
		pthread_join(rl, NULL);
	double wall = now_s() - t0;
	int n = nlat < 1000000 ? nlat : 1000000;
	qsort(lat, (size_t)n, sizeof *lat, cmp);
	printf("clients=%d size=%d ok=%d failed=%d wall_s=%.2f rps=%.2f p50_ms=%.1f p95_ms=%.1f", o.clients, o.size,
	       nlat, failures, wall, nlat / wall, pct(lat, n, 0.5) * 1e3, pct(lat, n, 0.95) * 1e3);
	if (o.reloads > 0)
		printf(" reloads_ok=%d reloads_failed=%d", reload_ok, reload_fail);
	printf("\n");
	free(lat);
	free(png);
	curl_global_cleanup();
	return failures || reload_fail ? 1 : 0;
}
