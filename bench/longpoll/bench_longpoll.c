/*
 * bench_longpoll.c — N serving-node long-polls held on atelierd, then one
 * promotion: how long until every one of them has its answer, and what the
 * held polls cost atelierd in memory.
 *
 *   bench_longpoll URL NODE_TOKEN OPERATOR_TOKEN MODEL N PID
 *
 * The channel starts at version 1; every client asks ?after=1&wait=60; once
 * atelierd reports N held polls (/metrics), version 2 is promoted and the
 * clock runs until the last client has its 200.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../proc_status.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct mem {
	char buf[65536];
	size_t len;
};

static size_t into(char *p, size_t sz, size_t n, void *arg)
{
	struct mem *m = arg;
	size_t k = sz * n;
	if (m->len + k < sizeof m->buf - 1) {
		memcpy(m->buf + m->len, p, k);
		m->len += k;
		m->buf[m->len] = 0;
	}
	return k;
}

static size_t sink(char *p, size_t sz, size_t n, void *arg) { return sz * n; }

static long get(const char *url, const char *token, struct mem *m)
{
	CURL *h = curl_easy_init();
	char auth[256];
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
	struct curl_slist *hd = curl_slist_append(NULL, auth);
	m->len = 0;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, into);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, m);
	long st = 0;
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
	curl_slist_free_all(hd);
	curl_easy_cleanup(h);
	return st;
}

int main(int argc, char **argv)
{
	if (argc < 7) {
		fprintf(stderr, "usage: bench_longpoll URL NODE_TOKEN OPERATOR_TOKEN MODEL N PID\n");
		return 2;
	}
	const char *base = argv[1], *node = argv[2], *op = argv[3], *model = argv[4], *pid = argv[6];
	int n = (int)strtol(argv[5], NULL, 10);
	if (n <= 0)
		n = 200;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	CURLM *m = curl_multi_init();
	curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
	char url[512], auth[256];
	snprintf(url, sizeof url, "%s/v1/models/%s/channels/production?after=1&wait=60", base, model);
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", node);
	struct curl_slist *hd = curl_slist_append(NULL, auth);
	CURL **hs = calloc((size_t)n, sizeof *hs);
	for (int i = 0; i < n; i++) {
		hs[i] = curl_easy_init();
		curl_easy_setopt(hs[i], CURLOPT_URL, url);
		curl_easy_setopt(hs[i], CURLOPT_HTTPHEADER, hd);
		curl_easy_setopt(hs[i], CURLOPT_WRITEFUNCTION, sink);
		curl_easy_setopt(hs[i], CURLOPT_FORBID_REUSE, 1L);
		curl_multi_add_handle(m, hs[i]);
	}
	/* drive until atelierd holds all of them */
	char murl[512];
	snprintf(murl, sizeof murl, "%s/metrics", base);
	double t_hold = now();
	int running = n, held = 0;
	struct mem mem;
	while (now() - t_hold < 30) {
		curl_multi_perform(m, &running);
		curl_multi_poll(m, NULL, 0, 20, NULL);
		if (get(murl, node, &mem) == 200) {
			const char *p = strstr(mem.buf, "\natelier_longpoll_waiting ");
			held = p ? (int)strtol(p + 26, NULL, 10) : 0;
			if (held >= n)
				break;
		}
	}
	long rss_held = proc_status_kb(pid, "VmRSS:");
	printf("longpoll: %d polls held by atelierd (after %.2f s); atelierd VmRSS %.1f MB\n", held, now() - t_hold,
	       (double)rss_held / 1024.0);

	/* promote version 2 and time the answers */
	CURL *p = curl_easy_init();
	char purl[512], pauth[256];
	snprintf(purl, sizeof purl, "%s/v1/models/%s/channels/production", base, model);
	snprintf(pauth, sizeof pauth, "Authorization: Bearer %s", op);
	struct curl_slist *ph = curl_slist_append(NULL, pauth);
	ph = curl_slist_append(ph, "Content-Type: application/json");
	curl_easy_setopt(p, CURLOPT_URL, purl);
	curl_easy_setopt(p, CURLOPT_HTTPHEADER, ph);
	curl_easy_setopt(p, CURLOPT_POSTFIELDS, "{\"version\":2}");
	curl_easy_setopt(p, CURLOPT_WRITEFUNCTION, sink);
	double t0 = now();
	curl_easy_perform(p);
	double t_promoted = now();
	int done = 0, ok = 0;
	double last = t0;
	while (done < n && now() - t0 < 30) {
		curl_multi_perform(m, &running);
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(m, &left)) != NULL) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			long st = 0;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &st);
			ok += st == 200;
			done++;
			last = now();
		}
		if (done < n)
			curl_multi_poll(m, NULL, 0, 5, NULL);
	}
	printf("longpoll: promotion answered in %.1f ms; all %d/%d clients notified %.1f ms after the promote call "
	       "was sent (%.1f ms after it returned)\n",
	       (t_promoted - t0) * 1e3, ok, n, (last - t0) * 1e3, (last - t_promoted) * 1e3);
	printf("longpoll: atelierd peak RSS %.1f MB\n", (double)proc_status_kb(pid, "VmHWM:") / 1024.0);
	for (int i = 0; i < n; i++) {
		curl_multi_remove_handle(m, hs[i]);
		curl_easy_cleanup(hs[i]);
	}
	free(hs);
	curl_slist_free_all(hd);
	curl_slist_free_all(ph);
	curl_easy_cleanup(p);
	curl_multi_cleanup(m);
	return ok == n ? 0 : 1;
}
