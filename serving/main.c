/*
 * main.c — atelier-serve: settings, subcommands, and the life of the loop.
 *
 *   atelier-serve [options]                         serve until SIGINT/SIGTERM
 *   atelier-serve export-random --out FILE [--config JSON]
 *                                                   write an untrained serving export
 *   atelier-serve routes                            print the HTTP route table
 *
 * Start-up: settings → image codecs, libcurl, libtorch threads → model slot,
 * stats, spool (blocking scans before the loop) → HTTP → threads (puller,
 * uplink) → the --model-file load, queued on the threadpool so the node
 * answers /healthz (and 503s) while it loads. SIGHUP reloads --model-file.
 *
 * Shutdown: stop flags for the threads, close HTTP (requests in flight
 * finish, on whatever model they hold), join the threads, close the signal
 * handles; uv_run returns once the threadpool work is done, and
 * uv_loop_close() must find nothing open. Then the model and the rest are
 * freed.
 */
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "atelier_model.h"
#include "config.h"
#include "fsutil.h"
#include "http_client.h"
#include "image.h"
#include "limit.h"
#include "log.h"
#include "gallery.h"
#include "model_slot.h"
#include "publish.h"
#include "puller.h"
#include "serve.h"
#include "spool.h"
#include "stats.h"
#include "stylize.h"
#include "uplink.h"
#include "web.h"

#define S(f) offsetof(struct serve_settings, f)
static const struct config_opt settings_table[] = {
	{"atelierd", "ATELIER_SERVE_ATELIERD", CFG_STR, S(atelierd), NULL, 1, 0,
	 "atelierd base URL, or several separated by commas (replicas: failover in turn; unset: offline, "
	 "--model-file only, no contributions)"},
	{"token", "ATELIER_NODE_TOKEN", CFG_STR, S(token), NULL, 1, 0, "node token for atelierd"},
	{"model", "ATELIER_SERVE_MODEL", CFG_STR, S(model), "sketch2paint", 1, 0, "model name in the registry"},
	{"channel", "ATELIER_SERVE_CHANNEL", CFG_STR, S(channel), "production", 1, 0,
	 "channel to follow (production|canary)"},
	{"name", "ATELIER_SERVE_NAME", CFG_STR, S(name), NULL, 1, 0, "node name (default: host name)"},
	{"host", "ATELIER_SERVE_HOST", CFG_STR, S(host), "127.0.0.1", 1, 0, "address to listen on"},
	{"port", "ATELIER_SERVE_PORT", CFG_INT, S(port), "8090", 0, 65535, "HTTP port (0 = any free port)"},
	{"cache", "ATELIER_SERVE_CACHE", CFG_STR, S(cache), "var/serve/cache", 1, 0, "downloaded artifacts"},
	{"spool", "ATELIER_SERVE_SPOOL", CFG_STR, S(spool), "var/serve/spool", 1, 0,
	 "contributions waiting for atelierd"},
	{"spool-max", "ATELIER_SERVE_SPOOL_MAX", CFG_INT, S(spool_max_files), "1000", 1, 1e7, "spool bound: files"},
	{"spool-max-bytes", "ATELIER_SERVE_SPOOL_MAX_BYTES", CFG_SIZE, S(spool_max_bytes), "64MiB", 4096, 1e12,
	 "spool bound: bytes"},
	{"threads", "ATELIER_SERVE_THREADS", CFG_INT, S(threads), "0", 0, 256,
	 "concurrent inferences (0 = 2, or one per 16 cores on 32 or more)"},
	{"torch-threads", "ATELIER_SERVE_TORCH_THREADS", CFG_INT, S(torch_threads), "0", 0, 256,
	 "libtorch intra-op threads (0 = cores)"},
	{"max-queue", "ATELIER_SERVE_MAX_QUEUE", CFG_INT, S(max_queue), "64", 0, 100000,
	 "stylize requests waiting for a thread before 503"},
	{"max-body", "ATELIER_SERVE_MAX_BODY", CFG_SIZE, S(max_body), "8MiB", 1024, 1 << 30, "request body cap"},
	{"http-idle-timeout", "ATELIER_SERVE_HTTP_IDLE_TIMEOUT", CFG_DOUBLE, S(http_idle_timeout), "10", 0.5, 3600,
	 "seconds without a byte from a client mid-request before 408 (idle keep-alive: closed)"},
	{"max-pixels", "ATELIER_SERVE_MAX_PIXELS", CFG_SIZE, S(max_pixels), "16000000", 1, 1e9,
	 "image pixel cap, checked before decoding"},
	{"output-size", "ATELIER_SERVE_OUTPUT_SIZE", CFG_INT, S(output_size), "512", 16, 4096,
	 "side of the returned painting"},
	{"jpeg-quality", "ATELIER_SERVE_JPEG_QUALITY", CFG_INT, S(jpeg_quality), "90", 1, 100, "JPEG quality"},
	{"heartbeat-interval", "ATELIER_SERVE_HEARTBEAT", CFG_DOUBLE, S(heartbeat_interval), "5", 0.05, 3600,
	 "seconds between heartbeats"},
	{"poll-wait", "ATELIER_SERVE_POLL_WAIT", CFG_INT, S(poll_wait), "30", 1, 600, "long-poll seconds"},
	{"retry-max", "ATELIER_SERVE_RETRY_MAX", CFG_DOUBLE, S(retry_max), "30", 0.1, 3600,
	 "cap of the retry backoff, seconds"},
	{"max-artifact", "ATELIER_SERVE_MAX_ARTIFACT", CFG_SIZE, S(max_artifact), "2GiB", 1024, 1e12,
	 "largest model artifact accepted"},
	{"model-file", "ATELIER_SERVE_MODEL_FILE", CFG_STR, S(model_file), NULL, 1, 0,
	 "local serving export to load at start (and on SIGHUP or POST /admin/reload)"},
	{"device", "ATELIER_SERVE_DEVICE", CFG_STR, S(device), "auto", 1, 0, "auto | cpu | cuda"},
	{"admin-token", "ATELIER_SERVE_ADMIN_TOKEN", CFG_STR, S(admin_token), NULL, 1, 0,
	 "bearer token for the /admin routes (unset: admin routes refuse every caller)"},
	{"web-dir", "ATELIER_SERVE_WEB_DIR", CFG_STR, S(web_dir), NULL, 1, 0,
	 "serve the drawing page from this folder instead of the embedded copy"},
	/* the same names and defaults as atelierd's (orchestrator/main.c): a
	 * contribution atelierd would refuse is refused here, while its sender waits */
	{"min-ink", "ATELIER_MIN_INK", CFG_DOUBLE, S(min_ink), "0.002", 0, 1,
	 "contributed sketch ink ratio minimum (atelierd's --min-ink)"},
	{"max-ink", "ATELIER_MAX_INK", CFG_DOUBLE, S(max_ink), "0.95", 0, 1,
	 "contributed sketch ink ratio maximum (atelierd's --max-ink)"},
	/* per-client token buckets (serving/limit.c): 429 with Retry-After past them */
	{"rate-stylize", "ATELIER_SERVE_RATE_STYLIZE", CFG_DOUBLE, S(rate_stylize), "20", 0, 1e6,
	 "POST /api/stylize per client address: requests a second (0 = no limit)"},
	{"burst-stylize", "ATELIER_SERVE_BURST_STYLIZE", CFG_DOUBLE, S(burst_stylize), "100", 1, 1e6,
	 "POST /api/stylize per client address: burst above the rate"},
	{"rate-contribute", "ATELIER_SERVE_RATE_CONTRIBUTE", CFG_DOUBLE, S(rate_contribute), "0.5", 0, 1e6,
	 "POST /api/contribute per client address: requests a second (0 = no limit)"},
	{"burst-contribute", "ATELIER_SERVE_BURST_CONTRIBUTE", CFG_DOUBLE, S(burst_contribute), "20", 1, 1e6,
	 "POST /api/contribute per client address: burst above the rate"},
	{"rate-publish", "ATELIER_SERVE_RATE_PUBLISH", CFG_DOUBLE, S(rate_publish), "0.2", 0, 1e6,
	 "POST /api/publish per client address: requests a second (0 = no limit)"},
	{"burst-publish", "ATELIER_SERVE_BURST_PUBLISH", CFG_DOUBLE, S(burst_publish), "10", 1, 1e6,
	 "POST /api/publish per client address: burst above the rate"},
	{"ratelimit-clients", "ATELIER_SERVE_RATELIMIT_CLIENTS", CFG_INT, S(ratelimit_slots), "65536", 8, 1 << 24,
	 "client addresses each rate limiter remembers (least recently seen forgotten first)"},
	{"trust-proxy", "ATELIER_SERVE_TRUST_PROXY", CFG_BOOL, S(trust_proxy), "false", 1, 0,
	 "behind a reverse proxy: rate-limit by the last X-Forwarded-For address, not the TCP peer"},
	/* the gallery (serving/gallery.c, docs/gallery.md) */
	{"gallery-poll", "ATELIER_SERVE_GALLERY_POLL", CFG_DOUBLE, S(gallery_poll), "1", 0.05, 60,
	 "seconds between reads of atelierd's works feed (a hidden work leaves within this)"},
	{"gallery-cache", "ATELIER_SERVE_GALLERY_CACHE", CFG_SIZE, S(gallery_cache), "64MiB", 0, 1e12,
	 "bytes of gallery images and thumbnails kept in memory"},
	{"gallery-thumb", "ATELIER_SERVE_GALLERY_THUMB", CFG_INT, S(gallery_thumb), "256", 32, 1024,
	 "side of a gallery thumbnail, pixels"},
	{"gallery-page", "ATELIER_SERVE_GALLERY_PAGE", CFG_INT, S(gallery_page), "48", 1, 200,
	 "works on a gallery wall page"},
};
#undef S
#define NSETTINGS (sizeof settings_table / sizeof settings_table[0])

static struct serve_app app;
static uv_signal_t sig_int, sig_term, sig_hup;

/* ---- local reloads ---- */

struct reload {
	uv_work_t work;
	struct serve_app *app;
	void (*done)(void *, int, const char *);
	void *arg;
	int rc;
	char msg[256];
};

static void reload_work(uv_work_t *w)
{
	struct reload *r = w->data;
	r->rc = model_slot_load(r->app->slot, r->app->cfg.model_file, 0, NULL, r->app->cfg.model_file, r->msg,
				sizeof r->msg);
}

static void reload_after(uv_work_t *w, int status)
{
	struct reload *r = w->data;
	r->app->reloading = 0;
	if (r->done)
		r->done(r->arg, r->rc, r->msg);
	free(r);
}

int serve_reload(struct serve_app *a, void (*done)(void *, int, const char *), void *arg)
{
	if (a->reloading)
		return AT_ECONFLICT;
	struct reload *r = calloc(1, sizeof *r);
	if (!r)
		return AT_ENOMEM;
	r->app = a;
	r->done = done;
	r->arg = arg;
	r->work.data = r;
	if (uv_queue_work(a->loop, &r->work, reload_work, reload_after) != 0) {
		free(r);
		return AT_EINTERNAL;
	}
	a->reloading = 1;
	return 0;
}

static void logged_reload_done(void *arg, int rc, const char *msg)
{
	if (rc < 0)
		log_error("reload of %s failed: %s", app.cfg.model_file, msg);
}

/* ---- auth: one admin token, for the /admin routes ---- */

static int admin_auth(void *arg, http_req_t *req, const char *token, size_t len, http_auth_done done)
{
	const char *want = app.cfg.admin_token;
	if (!want || strlen(want) != len)
		return 0;
	unsigned char diff = 0;
	for (size_t i = 0; i < len; i++)
		diff |= (unsigned char)(token[i] ^ want[i]);
	return diff == 0 ? ROLE_OPERATOR : 0;
}

/* ---- shutdown ---- */

static void http_closed(void *arg)
{
	app.http = NULL;
	/* Both threads were told to stop with the signal; each notices within
	 * about a second (libcurl's progress callback), so these joins are short. */
	puller_free(app.puller);
	app.puller = NULL;
	uplink_free(app.uplink);
	app.uplink = NULL;
	gallery_free(app.gallery);
	app.gallery = NULL;
	uv_close((uv_handle_t *)&sig_int, NULL);
	uv_close((uv_handle_t *)&sig_term, NULL);
	uv_close((uv_handle_t *)&sig_hup, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
	if (signum == SIGHUP) {
		if (!app.cfg.model_file) {
			log_warn("SIGHUP: no --model-file to reload");
			return;
		}
		log_info("SIGHUP: reloading %s", app.cfg.model_file);
		if (serve_reload(&app, logged_reload_done, NULL) < 0)
			log_warn("SIGHUP: a reload is already running");
		return;
	}
	if (app.shutting_down) {
		log_warn("second signal: exiting now");
		exit(1);
	}
	app.shutting_down = 1;
	log_info("signal %d: shutting down", signum);
	puller_stop(app.puller);
	uplink_stop(app.uplink);
	gallery_stop(app.gallery);
	http_server_close(app.http, http_closed, NULL);
}

/* ---- serve ---- */

static int safe_name(const char *s)
{
	if (!s || !*s || strlen(s) > 64)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
		      *s == '_' || *s == '.'))
			return 0;
	return 1;
}

static int check_settings(void)
{
	struct serve_settings *c = &app.cfg;
	if (!safe_name(c->model) || !safe_name(c->channel)) {
		fprintf(stderr, "atelier-serve: --model and --channel are names of [A-Za-z0-9._-], at most 64\n");
		return -1;
	}
	if (c->atelierd && !c->token) {
		fprintf(stderr, "atelier-serve: --atelierd needs --token (a node token)\n");
		return -1;
	}
	char why[256];
	if (c->atelierd && http_client_check_base(c->atelierd, why, sizeof why) < 0) {
		fprintf(stderr,
			"atelier-serve: --atelierd takes an http:// or https:// URL, or several separated by commas: %s\n",
			why);
		return -1;
	}
	if (c->name)
		snprintf(app.name, sizeof app.name, "%s", c->name);
	else if (gethostname(app.name, sizeof app.name - 1) != 0)
		snprintf(app.name, sizeof app.name, "serve-%d", (int)getpid());
	if (!safe_name(app.name)) {
		fprintf(stderr, "atelier-serve: node name \"%s\" must be [A-Za-z0-9._-], at most 64 (see --name)\n",
			app.name);
		return -1;
	}
	/* trailing slashes: http_client_init trims each URL of the list */
	return 0;
}

static int serve(void)
{
	int rc;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	/* Two passes side by side, each allowed every core: much of a MUNIT
	 * pass (normalisations, upsampling, small convolutions) does not spread
	 * over libtorch's intra-op threads, and a second pass fills the gaps.
	 * Measured on 2 cores, 8 clients, 256x256: 2 x 2 threads 0.69 req/s,
	 * 1 x 2 threads 0.48, 4 x 1 thread 0.57, 2 x 1 thread 0.42; one client's
	 * latency is the same with 1 x 2 and 2 x 2. */
	if (app.cfg.threads == 0)
		app.cfg.threads = cpus >= 32 ? (int)(cpus / 16) : 2;
	/* Inference runs on the threadpool, at most cfg.threads at once; two
	 * more threads keep spool writes and reloads from queueing behind it.
	 * Must be set before the first uv_queue_work. */
	if (!getenv("UV_THREADPOOL_SIZE")) {
		char n[16];
		snprintf(n, sizeof n, "%d", app.cfg.threads + 2);
		setenv("UV_THREADPOOL_SIZE", n, 1);
	}
	if (image_init() < 0) {
		log_error("cannot initialise the image codecs");
		return 1;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_error("cannot initialise libcurl");
		return 1;
	}
	int tt = app.cfg.torch_threads;
	if (tt == 0)
		tt = cpus < 1 ? 1 : (int)cpus;
	if (am_set_threads(tt, NULL) < 0)
		log_warn("cannot set libtorch threads to %d", tt);
	if (web_init(app.cfg.web_dir) < 0)
		return 1;
	if (model_slot_new(app.cfg.device, app.cfg.output_size, &app.slot) < 0 || stats_new(&app.stats) < 0 ||
	    stylize_queue_new(&app.sq) < 0 || limit_init(&app) < 0)
		return 1;
	if (app.cfg.atelierd) {
		rc = spool_open(app.cfg.spool, app.cfg.spool_max_files, app.cfg.spool_max_bytes, &app.spool);
		if (rc < 0)
			return 1;
		/* published works wait in a spool of their own beside the contributions */
		char works_dir[4096];
		snprintf(works_dir, sizeof works_dir, "%s/works", app.cfg.spool);
		if (publish_open(works_dir, app.cfg.spool_max_files, app.cfg.spool_max_bytes, &app.publish) < 0)
			return 1;
		if (at_mkdir_p(app.cfg.cache) < 0) {
			log_error("cannot create the cache folder %s: %s", app.cfg.cache, strerror(errno));
			return 1;
		}
	}
	app.loop = uv_default_loop();
	app.started_at = (uint64_t)time(NULL);
	struct http_config hc = {
		.host = app.cfg.host,
		.port = app.cfg.port,
		.max_body = app.cfg.max_body,
		.idle_timeout = app.cfg.http_idle_timeout,
		.server_name = "atelier-serve",
		.auth = admin_auth,
		.app = &app,
	};
	rc = http_server_new(app.loop, &hc, serve_routes, serve_nroutes, &app.http);
	if (rc < 0)
		return 1;
	uv_signal_init(app.loop, &sig_int);
	uv_signal_init(app.loop, &sig_term);
	uv_signal_init(app.loop, &sig_hup);
	uv_signal_start(&sig_int, on_signal, SIGINT);
	uv_signal_start(&sig_term, on_signal, SIGTERM);
	uv_signal_start(&sig_hup, on_signal, SIGHUP);
	signal(SIGPIPE, SIG_IGN);

	if (app.cfg.atelierd) {
		if (puller_start(&app, &app.puller) < 0 || uplink_start(&app, &app.uplink) < 0 ||
		    gallery_start(&app, &app.gallery) < 0) {
			log_error("cannot start the puller and uplink threads");
			return 1;
		}
	}
	if (app.cfg.model_file && serve_reload(&app, logged_reload_done, NULL) < 0)
		log_error("cannot queue the load of %s", app.cfg.model_file);

	/* Tests and scripts read this line to learn the port. */
	printf("atelier-serve: listening on http://%s:%d\n", app.cfg.host, http_server_port(app.http));
	fflush(stdout);
	log_info("listening on http://%s:%d (pid %d, node %s, %s/%s, device %s, %d inference thread(s) x %d torch "
		 "thread(s))",
		 app.cfg.host, http_server_port(app.http), (int)getpid(), app.name, app.cfg.model, app.cfg.channel,
		 am_device_name(), app.cfg.threads, tt);

	uv_run(app.loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(app.loop);
	model_slot_free(app.slot);
	stats_free(app.stats);
	spool_free(app.spool);
	publish_free(app.publish);
	stylize_queue_free(app.sq);
	limit_free(&app);
	web_free();
	curl_global_cleanup();
	if (rc != 0) {
		log_error("event loop closed with handles still open: %s", uv_strerror(rc));
		return 1;
	}
	log_info("stopped cleanly");
	return 0;
}

/* ---- subcommands ---- */

static int cmd_export_random(int argc, char **argv)
{
	const char *out = NULL, *json = NULL;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
			out = argv[++i];
		else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			json = argv[++i];
		else {
			fprintf(stderr, "usage: atelier-serve export-random --out FILE [--config JSON]\n");
			return 2;
		}
	}
	if (!out) {
		fprintf(stderr, "usage: atelier-serve export-random --out FILE [--config JSON]\n");
		return 2;
	}
	int rc = 1;
	am_status_t *st = am_status_new();
	am_trainer *t = NULL;
	am_config cfg = am_config_default();
	if (!st)
		return 1;
	if (json && am_config_from_json(json, &cfg, st) < 0) {
		fprintf(stderr, "atelier-serve export-random: --config: %s\n", am_status_message(st));
		goto out;
	}
	t = am_trainer_new(&cfg, st);
	if (!t || am_trainer_export(t, out, st) < 0) {
		fprintf(stderr, "atelier-serve export-random: %s\n", am_status_message(st));
		goto out;
	}
	printf("%s\n", out);
	rc = 0;
out:
	am_trainer_free(t);
	am_status_free(st);
	return rc;
}

static int cmd_routes(void)
{
	for (size_t i = 0; i < serve_nroutes; i++) {
		const struct http_route *r = &serve_routes[i];
		printf("%-6s %-20s %-9s %s\n", r->method, r->pattern, r->roles == ROLE_PUBLIC ? "public" : "admin",
		       r->doc);
	}
	return 0;
}

int main(int argc, char **argv)
{
	log_init("atelier-serve");
	if (argc > 1 && strcmp(argv[1], "export-random") == 0)
		return cmd_export_random(argc - 2, argv + 2);
	if (argc > 1 && strcmp(argv[1], "routes") == 0)
		return cmd_routes();
	int off = argc > 1 && strcmp(argv[1], "serve") == 0 ? 1 : 0;
	int argi;
	char err[256];
	int rc = config_parse(settings_table, NSETTINGS, &app.cfg, argc - off, argv + off, &argi, err, sizeof err);
	if (rc == AT_ECANCELLED) {
		config_usage(stdout, "atelier-serve", "[serve|export-random|routes] [options]", settings_table,
			     NSETTINGS);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "atelier-serve: %s\n", err);
		return 2;
	}
	if (argi + off < argc) {
		fprintf(stderr, "atelier-serve: unexpected argument \"%s\" (see --help)\n", argv[argi + off]);
		return 2;
	}
	if (check_settings() < 0)
		return 2;
	return serve();
}
