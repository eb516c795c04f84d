/*
 * puller.c — the channel follower (see puller.h).
 *
 * State owned by the thread alone: `after` (the version the next long-poll
 * names; the one we serve, or the one we refused), the sha256 of the
 * artifact in service and of the last refused one. Counters read by /metrics
 * are under p->bg.mu. Cache layout: <cache>/<sha256>.part while downloading,
 * renamed to <sha256>.am only once verified, so a .am file is always good;
 * after a swap only the current and the previous artifact are kept.
 */
#include "puller.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "artifact.h"
#include "bgthread.h"
#include "fsutil.h"
#include "http_client.h"
#include "log.h"
#include "model_slot.h"
#include "serve.h"

struct puller {
	struct serve_app *app;
	struct bgthread bg; /* the thread, its stop flag, mu and cv */
	struct http_client client;
	/* thread-only */
	int64_t after;
	char serving_sha[65];
	char prev_sha[65];
	char bad_sha[65];
	double backoff;
	int model_missing; /* the last poll was 404: logged once */
	/* under mu */
	uint64_t polls, offers, downloads, download_bytes, resumed, refused;
	int reachable;
};

enum offer_result { OFFER_DONE, OFFER_RETRY, OFFER_REFUSED };

static int stopping(struct puller *p) { return bgthread_stopping(&p->bg); }

/* Sleeps up to `seconds`, waking early at stop. */
static void nap(struct puller *p, double seconds)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	double end = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + seconds;
	ts.tv_sec = (time_t)end;
	ts.tv_nsec = (long)((end - (double)ts.tv_sec) * 1e9);
	pthread_mutex_lock(&p->bg.mu);
	while (!stopping(p) && pthread_cond_timedwait(&p->bg.cv, &p->bg.mu, &ts) == 0)
		;
	pthread_mutex_unlock(&p->bg.mu);
}

static void backoff_nap(struct puller *p)
{
	p->backoff = p->backoff <= 0 ? 0.5 : p->backoff * 2;
	if (p->backoff > p->app->cfg.retry_max)
		p->backoff = p->app->cfg.retry_max;
	nap(p, p->backoff);
}

static void set_reachable(struct puller *p, int yes)
{
	pthread_mutex_lock(&p->bg.mu);
	if (yes != p->reachable)
		log_info("puller: atelierd %s", yes ? "reachable" : "unreachable");
	p->reachable = yes;
	pthread_mutex_unlock(&p->bg.mu);
}

/* Keeps the artifacts of the model in service and the previous one. */
static void cache_gc(struct puller *p)
{
	const char *dir = p->app->cfg.cache;
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (n < 64 || e->d_name[0] == '.')
			continue;
		if (strncmp(e->d_name, p->serving_sha, 64) == 0 || strncmp(e->d_name, p->prev_sha, 64) == 0)
			continue;
		if (!(n == 67 && strcmp(e->d_name + 64, ".am") == 0) &&
		    !(n == 69 && strcmp(e->d_name + 64, ".part") == 0))
			continue;
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (unlink(path) == 0)
			log_debug("puller: removed %s from the cache", e->d_name);
	}
	closedir(d);
}

/*
 * Brings <cache>/<sha>.am into existence: resumes <sha>.part, verifies.
 * OFFER_RETRY: transient (network), the .part stays for the next try;
 * OFFER_REFUSED: the artifact is wrong (size or hash), the .part is gone.
 */
static enum offer_result download(struct puller *p, const char *artifact, const char *sha, long long size,
				  const char *final)
{
	char part[4096];
	snprintf(part, sizeof part, "%s/%s.part", p->app->cfg.cache, sha);
	struct stat stt;
	long long have = stat(part, &stt) == 0 ? (long long)stt.st_size : 0;
	if (have > size) {
		unlink(part);
		have = 0;
	}
	if (have < size) {
		FILE *f = fopen(part, "ab");
		if (!f) {
			model_slot_fail(p->app->slot, "cannot write %s: %s", part, strerror(errno));
			return OFFER_RETRY;
		}
		struct http_client_resp r;
		http_client_resp_init(&r, 64 << 10);
		/* a generous floor for slow links; big artifacts get 1 s per MiB on top */
		long timeout = 120 + (long)(size >> 20);
		if (have > 0)
			log_info("puller: resuming %.12s at byte %lld of %lld", sha, have, size);
		int rc = http_client_call(&p->client,
					  &(struct http_client_req){.path = artifact,
								    .timeout_s = timeout,
								    .file = f,
								    .range_from = have,
								    .max_file = size},
					  &r);
		int ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
		fclose(f);
		pthread_mutex_lock(&p->bg.mu);
		p->downloads++;
		p->resumed += have > 0;
		pthread_mutex_unlock(&p->bg.mu);
		if (rc == AT_ECANCELLED) {
			http_client_resp_free(&r);
			return OFFER_RETRY;
		}
		if (rc < 0 || !ok || (r.status != 200 && r.status != 206)) {
			model_slot_fail(p->app->slot, "download of %.12s: %s", sha,
					rc < 0 ? r.error
					: !ok  ? "cannot write the cache"
					       : "unexpected HTTP status");
			if (rc == 0 && r.status != 200 && r.status != 206)
				log_warn("puller: GET %s answered %ld: %.200s", artifact, r.status,
					 r.body.data ? r.body.data : "");
			http_client_resp_free(&r);
			if (rc == AT_ETOOBIG) {
				unlink(part);
				return OFFER_REFUSED;
			}
			return OFFER_RETRY;
		}
		const char *told = http_client_header(&r, "x-content-sha256");
		if (told && strcmp(told, sha) != 0) {
			model_slot_fail(p->app->slot, "artifact %.12s: x-content-sha256 %.12s does not match", sha,
					told);
			http_client_resp_free(&r);
			unlink(part);
			return OFFER_REFUSED;
		}
		http_client_resp_free(&r);
		if (stat(part, &stt) != 0 || (long long)stt.st_size < size) {
			model_slot_fail(p->app->slot, "download of %.12s stopped at %lld of %lld bytes", sha,
					(long long)(stat(part, &stt) == 0 ? stt.st_size : 0), size);
			return OFFER_RETRY;
		}
		pthread_mutex_lock(&p->bg.mu);
		p->download_bytes += (uint64_t)(size - have);
		pthread_mutex_unlock(&p->bg.mu);
	}
	char got[65];
	if (at_file_sha256(part, got, NULL) < 0) {
		model_slot_fail(p->app->slot, "cannot read %s", part);
		return OFFER_RETRY;
	}
	if (strcmp(got, sha) != 0 || stat(part, &stt) != 0 || (long long)stt.st_size != size) {
		model_slot_fail(p->app->slot, "artifact refused: sha256 %.12s…, expected %.12s… (%lld bytes)", got, sha,
				(long long)stt.st_size);
		unlink(part);
		return OFFER_REFUSED;
	}
	if (rename(part, final) != 0) {
		model_slot_fail(p->app->slot, "cannot rename %s: %s", part, strerror(errno));
		return OFFER_RETRY;
	}
	return OFFER_DONE;
}

static enum offer_result take_offer(struct puller *p, json_t *o)
{
	json_t *jv = json_object_get(o, "version"), *js = json_object_get(o, "size");
	const char *sha = json_string_value(json_object_get(o, "sha256"));
	const char *artifact = json_string_value(json_object_get(o, "artifact"));
	if (!json_is_integer(jv) || !json_is_integer(js) || !artifact_valid_sha(sha) || !artifact ||
	    artifact[0] != '/') {
		model_slot_fail(p->app->slot, "channel answer lacks version, sha256, size or artifact");
		return OFFER_RETRY;
	}
	int64_t version = json_integer_value(jv);
	long long size = json_integer_value(js);
	pthread_mutex_lock(&p->bg.mu);
	p->offers++;
	pthread_mutex_unlock(&p->bg.mu);
	if (strcmp(sha, p->serving_sha) == 0) {
		p->after = version; /* e.g. the same artifact registered again as a new version */
		return OFFER_DONE;
	}
	if (strcmp(sha, p->bad_sha) == 0) {
		p->after = version;
		return OFFER_REFUSED;
	}
	if (size <= 0 || (size_t)size > p->app->cfg.max_artifact) {
		model_slot_fail(p->app->slot, "version %lld: size %lld outside 1..%zu", (long long)version, size,
				p->app->cfg.max_artifact);
		goto refused;
	}
	log_info("puller: channel %s of %s is at version %lld (%.12s, %lld bytes)", p->app->cfg.channel,
		 p->app->cfg.model, (long long)version, sha, size);
	char final[4096];
	snprintf(final, sizeof final, "%s/%s.am", p->app->cfg.cache, sha);
	if (access(final, R_OK) != 0) {
		enum offer_result r = download(p, artifact, sha, size, final);
		if (r == OFFER_RETRY)
			return r;
		if (r == OFFER_REFUSED)
			goto refused;
	}
	char msg[256];
	if (model_slot_load(p->app->slot, final, version, sha, "registry", msg, sizeof msg) < 0) {
		unlink(final);
		goto refused;
	}
	memcpy(p->prev_sha, p->serving_sha, sizeof p->prev_sha);
	snprintf(p->serving_sha, sizeof p->serving_sha, "%s", sha);
	p->bad_sha[0] = 0;
	p->after = version;
	cache_gc(p);
	return OFFER_DONE;
refused:
	pthread_mutex_lock(&p->bg.mu);
	p->refused++;
	pthread_mutex_unlock(&p->bg.mu);
	snprintf(p->bad_sha, sizeof p->bad_sha, "%s", sha);
	p->after = version;
	return OFFER_REFUSED;
}

static void *run(void *arg)
{
	struct puller *p = arg;
	const struct serve_settings *cfg = &p->app->cfg;
	while (!stopping(p)) {
		char path[512];
		snprintf(path, sizeof path, "/v1/models/%s/channels/%s?after=%lld&wait=%d", cfg->model, cfg->channel,
			 (long long)p->after, cfg->poll_wait);
		struct http_client_resp r;
		http_client_resp_init(&r, 64 << 10);
		int rc = http_client_call(&p->client,
					  &(struct http_client_req){.path = path, .timeout_s = cfg->poll_wait + 15L},
					  &r);
		pthread_mutex_lock(&p->bg.mu);
		p->polls++;
		pthread_mutex_unlock(&p->bg.mu);
		if (rc == AT_ECANCELLED) {
			http_client_resp_free(&r);
			break;
		}
		set_reachable(p, rc == 0 && r.status < 500);
		if (rc < 0) {
			log_debug("puller: %s", r.error);
			http_client_resp_free(&r);
			backoff_nap(p);
			continue;
		}
		if (r.status == 304) {
			p->backoff = 0;
			http_client_resp_free(&r);
			continue;
		}
		if (r.status == 404) {
			/* No such model yet (atelierd answers 404 rather than hold the
			 * poll): a fresh system's node waits for its first version, so it
			 * asks again every second instead of backing off to retry_max,
			 * and says so once. */
			if (!p->model_missing)
				log_warn("puller: atelierd knows no model %s (channel %s) yet; asking every second",
					 cfg->model, cfg->channel);
			p->model_missing = 1;
			p->backoff = 0;
			http_client_resp_free(&r);
			nap(p, 1.0);
			continue;
		}
		p->model_missing = 0;
		if (r.status != 200) {
			log_warn("puller: channel poll answered %ld: %.200s", r.status, r.body.data ? r.body.data : "");
			http_client_resp_free(&r);
			backoff_nap(p);
			continue;
		}
		json_t *o = json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, NULL);
		http_client_resp_free(&r);
		enum offer_result res = o ? take_offer(p, o) : OFFER_RETRY;
		if (!o)
			model_slot_fail(p->app->slot, "channel answer is not JSON");
		json_decref(o);
		if (res == OFFER_RETRY)
			backoff_nap(p);
		else
			p->backoff = 0;
	}
	return NULL;
}

int puller_start(struct serve_app *app, struct puller **out)
{
	struct puller *p = calloc(1, sizeof *p);
	if (!p)
		return AT_ENOMEM;
	p->app = app;
	http_client_init(&p->client, app->cfg.atelierd, app->cfg.token, &p->bg.stop, NULL);
	p->client.share_cur = &app->upstream_cur;
	snprintf(p->client.user_agent, sizeof p->client.user_agent, "atelier-serve/%s", app->name);
	if (bgthread_start(&p->bg, run, p) < 0) {
		free(p);
		return AT_ENOMEM;
	}
	*out = p;
	return 0;
}

void puller_stop(struct puller *p)
{
	if (p)
		bgthread_stop(&p->bg);
}

void puller_free(struct puller *p)
{
	if (!p)
		return;
	bgthread_join(&p->bg);
	free(p);
}

int puller_metrics(struct puller *p, struct at_buf *b)
{
	if (!p)
		return 0;
	pthread_mutex_lock(&p->bg.mu);
	int rc = at_buf_printf(
		b,
		"# HELP atelier_serve_polls_total Channel long-polls made.\n"
		"# TYPE atelier_serve_polls_total counter\natelier_serve_polls_total %llu\n"
		"# HELP atelier_serve_downloads_total Artifact downloads started (resumed ones included).\n"
		"# TYPE atelier_serve_downloads_total counter\natelier_serve_downloads_total %llu\n"
		"# HELP atelier_serve_downloads_resumed_total Downloads that resumed a partial file.\n"
		"# TYPE atelier_serve_downloads_resumed_total counter\natelier_serve_downloads_resumed_total %llu\n"
		"# HELP atelier_serve_download_bytes_total Artifact bytes downloaded.\n"
		"# TYPE atelier_serve_download_bytes_total counter\natelier_serve_download_bytes_total %llu\n"
		"# HELP atelier_serve_artifacts_refused_total Versions refused (verification or load failed).\n"
		"# TYPE atelier_serve_artifacts_refused_total counter\natelier_serve_artifacts_refused_total %llu\n"
		"# HELP atelier_serve_atelierd_reachable 1 while the last channel poll got an answer.\n"
		"# TYPE atelier_serve_atelierd_reachable gauge\natelier_serve_atelierd_reachable %d\n",
		(unsigned long long)p->polls, (unsigned long long)p->downloads, (unsigned long long)p->resumed,
		(unsigned long long)p->download_bytes, (unsigned long long)p->refused, p->reachable);
	pthread_mutex_unlock(&p->bg.mu);
	if (rc < 0)
		return rc;
	/* which of --atelierd's URLs the follower polls now (checked at start:
	 * no quote or backslash that would need escaping in the label) */
	char url[600];
	http_client_current(&p->client, url, sizeof url);
	return at_buf_printf(
		b,
		"# HELP atelier_serve_atelierd_failovers_total Times the channel follower moved on to the next URL of "
		"--atelierd.\n# TYPE atelier_serve_atelierd_failovers_total counter\n"
		"atelier_serve_atelierd_failovers_total %lu\n"
		"# HELP atelier_serve_atelierd_in_use The --atelierd URL the channel follower polls now.\n"
		"# TYPE atelier_serve_atelierd_in_use gauge\natelier_serve_atelierd_in_use{url=\"%s\"} 1\n",
		__atomic_load_n(&p->client.failovers, __ATOMIC_RELAXED), url);
}

void puller_client(const struct serve_app *app, struct http_client *c, const char *user_agent)
{
	http_client_init(c, app->cfg.atelierd, app->cfg.token, NULL, user_agent);
	int cur = __atomic_load_n(&app->upstream_cur, __ATOMIC_RELAXED);
	if (cur > 0 && cur < c->nbases)
		c->cur = cur;
}
