/*
 * main.c — atelierd: settings, subcommands, and the life of the event loop.
 *
 *   atelierd [options]                      migrate, then serve until SIGINT/SIGTERM
 *   atelierd migrate [options]              apply sql/ migrations and exit
 *   atelierd token create --role R [--name N] [--node NODE]   print a new token (shown once;
 *                                           --node binds a node token to that serving node)
 *   atelierd routes                         print the HTTP route table
 *   atelierd errors [--json]                print the error table (code, HTTP status, message)
 *
 * Start-up order: settings → migrations (blocking, before the loop: nothing
 * is served until the schema is current) → pool, auth, HTTP on one loop.
 * Shutdown closes the HTTP server (in-flight requests finish), then the pool,
 * then the signal handles, so uv_loop_close() finds nothing open.
 */
#include <curl/curl.h>
#include <limits.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <signal.h>

#include "app.h"
#include "artifact.h"
#include "artifacts_api.h"
#include "auth.h"
#include "browse.h"
#include "config.h"
#include "events.h"
#include "gc.h"
#include "image.h"
#include "joblog_api.h"
#include "log.h"
#include "longpoll.h"
#include "nodes.h"
#include "notify.h"
#include "pipelines_api.h"
#include "registry.h"
#include "rights.h"
#include "scheduler.h"
#include "supervisor.h"
#include "ui.h"
#include "works_api.h"

#define S(f) offsetof(struct settings, f)
static const struct config_opt settings_table[] = {
	{"database-url", "ATELIER_DATABASE_URL", CFG_STR, S(database_url), NULL, 1, 0,
	 "PostgreSQL URL (else libpq's PG* variables)"},
	{"host", "ATELIER_HOST", CFG_STR, S(host), "127.0.0.1", 1, 0, "address to listen on"},
	{"port", "ATELIER_PORT", CFG_INT, S(port), "8080", 0, 65535, "HTTP port (0 = any free port)"},
	{"max-body", "ATELIER_MAX_BODY", CFG_SIZE, S(max_body), "8MiB", 1024, 1 << 30, "request body cap"},
	{"http-idle-timeout", "ATELIER_HTTP_IDLE_TIMEOUT", CFG_DOUBLE, S(http_idle_timeout), "10", 0.5, 3600,
	 "seconds without a byte from a client mid-request before 408 (idle keep-alive: closed)"},
	{"max-pixels", "ATELIER_MAX_PIXELS", CFG_SIZE, S(max_pixels), "40000000", 1, 1e9,
	 "image pixel cap, checked before decoding"},
	{"image-size", "ATELIER_IMAGE_SIZE", CFG_INT, S(image_size), "256", 16, 2048, "canonical square side"},
	{"holdout-fraction", "ATELIER_HOLDOUT_FRACTION", CFG_DOUBLE, S(holdout_fraction), "0.05", 0, 1,
	 "share of images held out for evaluation (by content hash)"},
	{"min-ink", "ATELIER_MIN_INK", CFG_DOUBLE, S(min_ink), "0.002", 0, 1, "sketch ink ratio minimum"},
	{"max-ink", "ATELIER_MAX_INK", CFG_DOUBLE, S(max_ink), "0.95", 0, 1, "sketch ink ratio maximum"},
	{"max-sketches-per-contributor-day", "ATELIER_MAX_SKETCHES_PER_CONTRIBUTOR_DAY", CFG_INT,
	 S(max_sketches_per_contributor_day), "200", 0, 1e9,
	 "sketches with a contributor accepted from one contributor in 24 hours before 429 (0 = no cap)"},
	{"near-duplicate-distance", "ATELIER_NEAR_DUPLICATE_DISTANCE", CFG_INT, S(near_duplicate_distance), "-1", -1, 3,
	 "a sketch whose 64-bit dHash is within this many bits of a stored one is a near-duplicate (-1 = off)"},
	{"node-heartbeat-days", "ATELIER_NODE_HEARTBEAT_DAYS", CFG_INT, S(node_heartbeat_days), "7", 1, 3650,
	 "days of serving-node heartbeat history kept (older rows pruned as heartbeats arrive)"},
	{"db-conns", "ATELIER_DB_CONNS", CFG_INT, S(db_conns), "4", 1, 64, "PostgreSQL query connections"},
	{"sql-dir", "ATELIER_SQL_DIR", CFG_STR, S(sql_dir), NULL, 1, 0, "migrations folder (default: found)"},
	{"artifacts", "ATELIER_ARTIFACTS", CFG_STR, S(artifacts), NULL, 1, 0,
	 "artifact store URI: fs://PATH or s3://BUCKET[/PREFIX] (docs/artifacts.md)"},
	{"local-workers", "ATELIER_LOCAL_WORKERS", CFG_INT, S(local_workers), "0", 0, 64,
	 "spawn and supervise N local atelier-worker processes"},
	{"worker-bin", "ATELIER_WORKER_BIN", CFG_STR, S(worker_bin), NULL, 1, 0, "atelier-worker path"},
	{"no-migrate", NULL, CFG_BOOL, S(no_migrate), "false", 1, 0, "do not apply migrations at start"},
	{"tick-ms", "ATELIER_TICK_MS", CFG_INT, S(tick_ms), "1000", 50, 60000,
	 "leader tick: lease reaping, schedules, leader election"},
	{"webhook-url", "ATELIER_WEBHOOK_URL", CFG_STR, S(webhook_url), NULL, 1, 0,
	 "alert webhook URL(s), comma-separated (up to 8; needs --webhook-secret-file)"},
	{"webhook-secret-file", "ATELIER_WEBHOOK_SECRET_FILE", CFG_STR, S(webhook_secret_file), NULL, 1, 0,
	 "file holding the HMAC-SHA256 key that signs every delivery"},
	{"webhook-events", "ATELIER_WEBHOOK_EVENTS", CFG_STR, S(webhook_events), NULL, 1, 0,
	 "event kinds to deliver, comma-separated (default: all)"},
	{"webhook-timeout", "ATELIER_WEBHOOK_TIMEOUT", CFG_DOUBLE, S(webhook_timeout), "10", 0.1, 300,
	 "seconds one delivery attempt may take"},
	{"webhook-attempts", "ATELIER_WEBHOOK_ATTEMPTS", CFG_INT, S(webhook_attempts), "6", 1, 50,
	 "attempts per delivery before it is logged failed"},
	{"webhook-backoff", "ATELIER_WEBHOOK_BACKOFF", CFG_DOUBLE, S(webhook_backoff), "2", 0.05, 300,
	 "seconds before the first retry; doubles per attempt (at most 300)"},
	{"webhook-queue", "ATELIER_WEBHOOK_QUEUE", CFG_INT, S(webhook_queue), "1000", 1, 100000,
	 "deliveries held in memory; when full the oldest waiting one is dropped"},
	{"webhook-retention-days", "ATELIER_WEBHOOK_RETENTION_DAYS", CFG_INT, S(webhook_retention_days), "14", 1, 3650,
	 "days the delivery log and alert events are kept"},
	{"node-stale-s", "ATELIER_NODE_STALE_S", CFG_INT, S(node_stale_s), "60", 5, 86400,
	 "seconds without a heartbeat before a node.unhealthy alert"},
};
#undef S
#define NSETTINGS (sizeof settings_table / sizeof settings_table[0])

static struct app app;
static uv_signal_t sig_int, sig_term;

/* The folder beside the binary's tree that holds sql/: build/bin/atelierd → ./sql. */
static const char *find_sql_dir(char *buf, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = 0;
		for (int up = 0; up < 4; up++) {
			char *slash = strrchr(exe, '/');
			if (!slash)
				break;
			*slash = 0;
			snprintf(buf, len, "%s/sql/001_foundation.sql", exe);
			if (access(buf, R_OK) == 0) {
				snprintf(buf, len, "%s/sql", exe);
				return buf;
			}
		}
	}
	if (access("sql/001_foundation.sql", R_OK) == 0)
		return "sql";
	return "/usr/share/atelier/sql";
}

static int run_migrations(void)
{
	PGconn *c = db_connect_blocking(app.cfg.database_url, 30000);
	if (!c)
		return AT_EUNAVAILABLE;
	int rc = db_migrate(c, app.cfg.sql_dir);
	PQfinish(c);
	return rc;
}

/* ---- shutdown ---- */

static void signals_close(void)
{
	uv_close((uv_handle_t *)&sig_int, NULL);
	uv_close((uv_handle_t *)&sig_term, NULL);
}

static void db_closed(void *arg)
{
	app.db = NULL;
	signals_close();
}

/* Shutdown order: workers (they may still report to us through the
 * database, not through us, so any order works for them), the scheduler and
 * the event hub first, then HTTP (requests in flight finish), then the database pool. */
static int stop_parts;

static void http_closed(void *arg)
{
	app.http = NULL;
	auth_free(app.auth);
	app.auth = NULL;
	db_pool_close(app.db, db_closed, NULL);
}

static void part_stopped(void *arg)
{
	if (--stop_parts > 0)
		return;
	http_server_close(app.http, http_closed, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
	if (app.shutting_down) {
		log_warn("second signal: exiting now");
		exit(1);
	}
	app.shutting_down = 1;
	log_info("signal %d: shutting down", signum);
	stop_parts = 5; /* events, job-log followers, webhooks, supervisor, scheduler */
	events_stop(app.events, part_stopped, NULL);
	joblog_api_stop(part_stopped, NULL);
	notify_stop(app.notify, part_stopped, NULL);
	longpoll_stop(app.longpoll);
	supervisor_stop(app.supervisor, part_stopped, NULL);
	app.supervisor = NULL;
	scheduler_stop(app.scheduler, part_stopped, NULL);
	app.scheduler = NULL;
}

static int build_routes(void)
{
	const struct {
		const struct http_route *t;
		size_t n;
	} tables[] = {{rights_routes, rights_nroutes}, /* "/v1/sketches/by-receipt" before "/v1/sketches/{id}" */
		      {app_routes, app_nroutes},
		      {pipelines_api_routes, pipelines_api_nroutes},
		      {registry_routes, registry_nroutes},
		      {longpoll_routes, longpoll_nroutes},
		      {artifacts_api_routes, artifacts_api_nroutes},
		      {gc_routes, gc_nroutes},
		      {nodes_routes, nodes_nroutes},
		      {browse_routes, browse_nroutes},
		      {joblog_api_routes, joblog_api_nroutes},
		      {notify_routes, notify_nroutes},
		      {ui_routes, ui_nroutes},
		      {works_api_routes, works_api_nroutes}};
	size_t n = 0;
	for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
		n += tables[i].n;
	app.routes = calloc(n, sizeof *app.routes);
	if (!app.routes)
		return AT_ENOMEM;
	for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
		for (size_t k = 0; k < tables[i].n; k++)
			app.routes[app.nroutes++] = tables[i].t[k];
	return 0;
}

static void on_db_state(void *arg, int connected)
{
	if (connected)
		log_info("database: connected");
	else
		log_warn("database: unreachable (requests needing it get 503; reconnecting)");
}

static int serve(void)
{
	int rc;
	/* One malloc arena per threadpool thread would each keep its own free
	 * memory; two arenas are plenty for short image jobs and keep RSS flat. */
	mallopt(M_ARENA_MAX, 2);
	/* Image decoding runs on the threadpool: one thread per core (set before first use). */
	if (!getenv("UV_THREADPOOL_SIZE")) {
		char n[16];
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		snprintf(n, sizeof n, "%ld", cpus < 2 ? 2 : cpus);
		setenv("UV_THREADPOOL_SIZE", n, 1);
	}
	/* Once, before any thread could touch curl (the webhook client, notify.c). */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_error("cannot initialise libcurl");
		return 1;
	}
	rc = image_init();
	if (rc < 0) {
		log_error("cannot initialise the image codecs");
		return 1;
	}
	if (!app.cfg.no_migrate) {
		rc = run_migrations();
		if (rc < 0) {
			log_error("migrations failed: %s", at_strerror(rc));
			return 1;
		}
	}
	app.loop = uv_default_loop();
	app.started_at = (uint64_t)time(NULL);
	rc = db_pool_new(app.loop, app.cfg.database_url, app.cfg.db_conns, &app.db);
	if (rc < 0) {
		log_error("database pool: %s", at_strerror(rc));
		return 1;
	}
	db_pool_on_state(app.db, on_db_state, NULL);
	rc = auth_new(app.db, &app.auth);
	if (rc < 0) {
		log_error("auth: %s", at_strerror(rc));
		return 1;
	}
	struct http_config hc = {
		.host = app.cfg.host,
		.port = app.cfg.port,
		.max_body = app.cfg.max_body,
		.idle_timeout = app.cfg.http_idle_timeout,
		.server_name = "atelierd",
		.auth = auth_check,
		.auth_arg = app.auth,
		.app = &app,
	};
	rc = artifact_store_open(app.cfg.artifacts, &app.artifacts);
	if (rc < 0) {
		log_error("artifacts: cannot open %s: %s", app.cfg.artifacts ? app.cfg.artifacts : "(default)",
			  at_strerror(rc));
		return 1;
	}
	rc = longpoll_start(&app, &app.longpoll);
	if (rc < 0)
		return 1;
	rc = events_start(&app, &app.events);
	if (rc < 0)
		return 1;
	rc = notify_start(&app, &app.notify);
	if (rc < 0) {
		log_error("webhooks: %s", at_strerror(rc));
		return 1;
	}
	rc = http_server_new(app.loop, &hc, app.routes, app.nroutes, &app.http);
	if (rc < 0)
		return 1;
	rc = scheduler_start(&app, app.cfg.tick_ms, &app.scheduler);
	if (rc < 0) {
		log_error("scheduler: %s", at_strerror(rc));
		return 1;
	}
	/* Local workers find the store and the database through the environment. */
	if (app.cfg.artifacts)
		setenv("ATELIER_ARTIFACTS", app.cfg.artifacts, 1);
	if (app.cfg.local_workers > 0) {
		rc = supervisor_start(&app, app.cfg.local_workers, app.cfg.worker_bin, &app.supervisor);
		if (rc < 0) {
			log_error("local workers: %s", at_strerror(rc));
			return 1;
		}
	}
	uv_signal_init(app.loop, &sig_int);
	uv_signal_init(app.loop, &sig_term);
	uv_signal_start(&sig_int, on_signal, SIGINT);
	uv_signal_start(&sig_term, on_signal, SIGTERM);
	signal(SIGPIPE, SIG_IGN);

	/* Tests and scripts read this line to learn the port. */
	printf("atelierd: listening on http://%s:%d\n", app.cfg.host, http_server_port(app.http));
	fflush(stdout);
	log_info("listening on http://%s:%d (pid %d)", app.cfg.host, http_server_port(app.http), (int)getpid());

	uv_run(app.loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(app.loop);
	if (rc != 0) {
		log_error("event loop closed with handles still open: %s", uv_strerror(rc));
		return 1;
	}
	free(app.routes);
	longpoll_free(app.longpoll);
	artifact_store_close(app.artifacts);
	events_free(app.events);
	notify_free(app.notify);
	free(app.metrics_sql);
	curl_global_cleanup();
	log_info("stopped cleanly");
	return 0;
}

static int cmd_token(int argc, char **argv)
{
	const char *role = NULL, *name = NULL, *node = NULL;
	if (argc < 1 || strcmp(argv[0], "create") != 0) {
		fprintf(stderr,
			"usage: atelierd token create --role operator|node|viewer [--name NAME] [--node NODE]\n");
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--role") == 0 && i + 1 < argc)
			role = argv[++i];
		else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
			name = argv[++i];
		else if (strcmp(argv[i], "--node") == 0 && i + 1 < argc)
			node = argv[++i];
		else {
			fprintf(stderr, "atelierd token create: unexpected argument %s\n", argv[i]);
			return 2;
		}
	}
	if (!role || !http_role_parse(role)) {
		fprintf(stderr, "atelierd token create: --role must be operator, node or viewer\n");
		return 2;
	}
	/* a node token bound to NODE may heartbeat only as NODE (docs/serving.md) */
	if (node && (strcmp(role, "node") != 0 || !nodes_name_valid(node))) {
		fprintf(stderr, "atelierd token create: --node needs --role node and a name of 1..64 of "
				"[A-Za-z0-9._-]\n");
		return 2;
	}
	if (run_migrations() < 0)
		return 1;
	PGconn *c = db_connect_blocking(app.cfg.database_url, 10000);
	if (!c)
		return 1;
	char tok[80];
	int rc = auth_create_token_blocking(c, role, name, node, tok, sizeof tok);
	PQfinish(c);
	if (rc < 0) {
		fprintf(stderr, "atelierd token create: %s\n", at_strerror(rc));
		return 1;
	}
	printf("%s\n", tok);
	return 0;
}

static int cmd_routes(void)
{
	for (size_t i = 0; i < app.nroutes; i++) {
		const struct http_route *r = &app.routes[i];
		char roles[64] = "";
		if (r->roles == ROLE_PUBLIC)
			snprintf(roles, sizeof roles, "public");
		else
			snprintf(roles, sizeof roles, "%s%s%s", r->roles & ROLE_OPERATOR ? "operator " : "",
				 r->roles & ROLE_NODE ? "node " : "", r->roles & ROLE_VIEWER ? "viewer" : "");
		printf("%-6s %-44s %-22s %s\n", r->method, r->pattern, roles, r->doc);
	}
	return 0;
}

/* The error table of lib/err.h as every error reply uses it: tests check
 * replies against this output, so it is printed from the table itself. */
static int cmd_errors(int argc, char **argv)
{
	int as_json = argc > 0 && strcmp(argv[0], "--json") == 0;
	if (argc > (as_json ? 1 : 0)) {
		fprintf(stderr, "usage: atelierd errors [--json]\n");
		return 2;
	}
	json_t *rows = json_array();
	for (int err = AT_ERR_FIRST_ + 1; err < AT_ERR_LAST_; err++) {
		if (as_json)
			json_array_append_new(rows, json_pack("{ss,si,ss}", "code", at_err_name(err), "status",
							      at_err_http_status(err), "message", at_strerror(err)));
		else
			printf("%-14s %d  %s\n", at_err_name(err), at_err_http_status(err), at_strerror(err));
	}
	if (as_json) {
		char *s = json_dumps(rows, JSON_INDENT(1));
		if (s)
			printf("%s\n", s);
		free(s);
	}
	json_decref(rows);
	return 0;
}

int main(int argc, char **argv)
{
	log_init("atelierd");
	/* The subcommand, if any, comes first; settings flags follow it. */
	const char *cmd = "serve";
	int off = 0;
	if (argc > 1 && argv[1][0] != '-') {
		cmd = argv[1];
		off = 1;
	}
	if (strcmp(cmd, "errors") == 0)
		return cmd_errors(argc - 2, argv + 2);
	int argi;
	char err[256];
	int rc;
	if (strcmp(cmd, "token") == 0) {
		/* token create has flags of its own; settings come from the environment. */
		rc = config_parse(settings_table, NSETTINGS, &app.cfg, 1, argv, &argi, err, sizeof err);
		argi = argc;
	} else {
		rc = config_parse(settings_table, NSETTINGS, &app.cfg, argc - off, argv + off, &argi, err, sizeof err);
		argi += off;
	}
	if (rc == AT_ECANCELLED) {
		config_usage(stdout, "atelierd", "[serve|migrate|token create|routes|errors] [options]", settings_table,
			     NSETTINGS);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "atelierd: %s\n", err);
		return 2;
	}
	if (argi < argc) {
		fprintf(stderr, "atelierd: unexpected argument \"%s\" (see --help)\n", argv[argi]);
		return 2;
	}
	char sqlbuf[PATH_MAX];
	if (!app.cfg.sql_dir)
		app.cfg.sql_dir = find_sql_dir(sqlbuf, sizeof sqlbuf);
	if (build_routes() < 0)
		return 1;
	if (strcmp(cmd, "serve") == 0)
		return serve();
	if (strcmp(cmd, "migrate") == 0) {
		rc = run_migrations();
		if (rc < 0) {
			fprintf(stderr, "atelierd migrate: %s\n", at_strerror(rc));
			return 1;
		}
		printf("atelierd migrate: %d migration(s) applied\n", rc);
		return 0;
	}
	if (strcmp(cmd, "token") == 0)
		return cmd_token(argc - 2, argv + 2);
	if (strcmp(cmd, "routes") == 0)
		return cmd_routes();
	fprintf(stderr, "atelierd: unknown command \"%s\" (see --help)\n", cmd);
	return 2;
}
