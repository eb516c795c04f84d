/*
 * serve.h — the state of one atelier-serve process, shared by its subsystems.
 * One instance lives in main.c for the life of the process; subsystems borrow
 * it.
 *
 * Threads: the libuv loop (HTTP, request admission, replies), the uv
 * threadpool (inference, spool writes, local model reloads), the puller
 * thread (long-poll, download, verify, load, swap) and the uplink thread
 * (heartbeats, draining the spool). What crosses threads is either behind a
 * mutex (model slot, stats, spool accounting) or immutable after start
 * (settings).
 */
#ifndef ATELIER_SERVE_H
#define ATELIER_SERVE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http.h"

struct model_slot;
struct stats;
struct spool;
struct puller;
struct uplink;
struct stylize_queue;
struct ratelimit;
struct publish;
struct gallery;

/* Settings (table in main.c). */
struct serve_settings {
	const char *atelierd; /* base URL, or NULL: offline (local model file only) */
	const char *token;    /* node token for atelierd */
	const char *model;    /* model name in the registry */
	const char *channel;  /* production | canary */
	const char *name;     /* node name (default: host name) */
	const char *host;
	int port;
	const char *cache; /* downloaded artifacts */
	const char *spool; /* contributions waiting for atelierd */
	int spool_max_files;
	size_t spool_max_bytes;
	int threads;       /* concurrent inferences */
	int torch_threads; /* libtorch intra-op threads (0 = cores / threads) */
	int max_queue;     /* stylize requests waiting for a thread before 503 */
	size_t max_body;
	double http_idle_timeout;
	size_t max_pixels;
	int output_size; /* side of the returned painting */
	int jpeg_quality;
	double heartbeat_interval;
	int poll_wait;    /* long-poll seconds */
	double retry_max; /* backoff cap, seconds */
	size_t max_artifact;
	const char *model_file; /* local serving export loaded at start and on reload */
	const char *device;     /* auto | cpu | cuda */
	const char *admin_token;
	const char *web_dir;                /* serve the page from here instead of the embedded copy */
	double min_ink, max_ink;            /* a contribution's accepted ink ratio: keep equal to atelierd's */
	double rate_stylize, burst_stylize; /* per-client token bucket (rate 0: no limit) */
	double rate_contribute, burst_contribute;
	double rate_publish, burst_publish;
	int ratelimit_slots;  /* client addresses each limiter remembers */
	int trust_proxy;      /* key clients by the last X-Forwarded-For entry */
	double gallery_poll;  /* seconds between reads of atelierd's works feed */
	size_t gallery_cache; /* bytes of images and thumbnails kept */
	int gallery_thumb;    /* thumbnail side */
	int gallery_page;     /* works on a wall page */
};

struct serve_app {
	uv_loop_t *loop;
	struct serve_settings cfg;
	char name[128]; /* resolved node name */
	http_server_t *http;
	struct model_slot *slot;
	struct stats *stats;
	struct spool *spool;
	struct puller *puller;
	struct uplink *uplink;
	struct stylize_queue *sq;
	struct ratelimit *limits[3]; /* limit.c, by enum limit_endpoint; NULL: no limit */
	struct publish *publish;     /* works waiting for atelierd (publish.c) */
	struct gallery *gallery;     /* the works feed and image cache (gallery.c) */
	int upstream_cur;            /* the URL of cfg.atelierd's list the puller last reached (__atomic; puller.c) */
	uint64_t started_at;
	int shutting_down;
	int reloading; /* a local reload is on the threadpool */
};

/* The route table (routes.c). */
extern const struct http_route serve_routes[];
extern const size_t serve_nroutes;
extern const struct http_tag serve_tags[]; /* for the OpenAPI document */
extern const size_t serve_ntags;

/* Loads cfg.model_file off the loop and swaps it in; done(arg, rc) on the
 * loop. AT_EBUSY-like AT_ECONFLICT when a reload is already running. */
int serve_reload(struct serve_app *app, void (*done)(void *arg, int rc, const char *msg), void *arg) AT_MUST_CHECK;

#endif
