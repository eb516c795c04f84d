/*
 * routes.c — atelierd's HTTP route table (the one place that lists every
 * endpoint, its role and its doc line; /v1/openapi.json and `atelierd routes`
 * are generated from it) and the small handlers that belong to no subsystem:
 * health, readiness, metrics, tokens.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "app.h"
#include "auth.h"
#include "ingest.h"
#include "log.h"
#include "longpoll.h"
#include "nodes.h"
#include "notify.h"
#include "scheduler.h"

static void get_healthz(http_req_t *req) { http_reply_json(req, 200, json_pack("{ss}", "status", "alive")); }

static void readyz_done(void *arg, int status, PGresult *res)
{
	http_req_t *req = arg;
	if (status == 0)
		http_reply_json(req, 200, json_pack("{ss,ss}", "status", "ready", "database", "reachable"));
	else
		http_reply_err(req, AT_EDB, "database unreachable", json_pack("{ss}", "database", "unreachable"));
}

/* Ready only while a query actually round-trips: an idle pool may not have
 * noticed a dead server yet. */
static void get_readyz(http_req_t *req)
{
	struct app *app = http_req_app(req);
	if (db_pool_connected(app->db) == 0 || db_query(app->db, "SELECT 1", NULL, readyz_done, req) < 0)
		http_reply_err(req, AT_EDB, "database unreachable", json_pack("{ss}", "database", "unreachable"));
}

static long rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, rss = 0;
	if (!f)
		return 0;
	if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
		rss = 0;
	fclose(f);
	return rss * sysconf(_SC_PAGESIZE);
}

#define METRICS_SQL_CACHE_MS 5000

/* The process's own numbers, then the database's (atelier_prometheus(),
 * cached METRICS_SQL_CACHE_MS; without the database they are left out and
 * atelier_db_up says why). */
static void metrics_reply(http_req_t *req, const char *sql_text)
{
	struct app *app = http_req_app(req);
	struct at_buf b;
	at_buf_init(&b, 0);
	int rc = http_server_metrics(app->http, &b);
	if (rc == 0)
		rc = ingest_metrics(app, &b);
	if (rc == 0)
		rc = scheduler_metrics(app->scheduler, &b);
	if (rc == 0)
		rc = longpoll_metrics(app->longpoll, &b);
	if (rc == 0)
		rc = notify_metrics(app->notify, &b);
	if (rc == 0)
		rc = at_buf_printf(&b,
				   "# HELP atelier_db_connected Live PostgreSQL query connections.\n"
				   "# TYPE atelier_db_connected gauge\natelier_db_connected %d\n"
				   "# HELP atelier_db_up 1 while at least one PostgreSQL connection is up.\n"
				   "# TYPE atelier_db_up gauge\natelier_db_up %d\n"
				   "# HELP process_resident_memory_bytes Resident set size.\n"
				   "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %ld\n"
				   "# HELP process_start_time_seconds Start time (unix).\n"
				   "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %llu\n",
				   db_pool_connected(app->db), db_pool_connected(app->db) > 0, rss_bytes(),
				   (unsigned long long)app->started_at);
	if (rc == 0 && sql_text)
		rc = at_buf_addstr(&b, sql_text);
	http_reply_buf(req, rc, &b, "text/plain; version=0.0.4");
}

static void metrics_sql_done(void *arg, int status, PGresult *res)
{
	http_req_t *req = arg;
	struct app *app = http_req_app(req);
	if (status == 0 && PQntuples(res) == 1) {
		char *text = strdup(PQgetvalue(res, 0, 0));
		if (text) {
			free(app->metrics_sql);
			app->metrics_sql = text;
			app->metrics_sql_ms = uv_now(app->loop);
		}
	} else if (status == AT_EDB) {
		log_warn("metrics: %s", PQresultErrorMessage(res));
	}
	metrics_reply(req, status == 0 ? app->metrics_sql : NULL);
}

static void get_metrics(http_req_t *req)
{
	struct app *app = http_req_app(req);
	if (app->metrics_sql && uv_now(app->loop) - app->metrics_sql_ms < METRICS_SQL_CACHE_MS) {
		metrics_reply(req, app->metrics_sql);
		return;
	}
	if (db_query(app->db, "SELECT atelier_prometheus()", NULL, metrics_sql_done, req) < 0)
		metrics_reply(req, NULL);
}

static void get_openapi(http_req_t *req)
{
	struct app *app = http_req_app(req);
	http_reply_json(req, 200, http_server_openapi(app->http, "atelierd", app_tags, app_ntags));
}

/* ---- tokens ---- */

struct token_create {
	http_req_t *req;
	char token[80];
	char role[16];
};

static void token_created(void *arg, int status, PGresult *res)
{
	struct token_create *t = arg;
	if (status < 0)
		http_reply_err(t->req, AT_EDB, "could not store the token", NULL);
	else
		http_reply_json(t->req, 201,
				json_pack("{ss,ss,sI}", "token", t->token, "role", t->role, "id",
					  (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10)));
	free(t);
}

static void post_token(http_req_t *req)
{
	struct app *app = http_req_app(req);
	json_t *body = http_req_json_body(req);
	if (!body)
		return;
	const char *role = json_string_value(json_object_get(body, "role"));
	const char *name = json_string_value(json_object_get(body, "name"));
	json_t *nodev = json_object_get(body, "node");
	const char *node = json_string_value(nodev);
	if (!role || !http_role_parse(role)) {
		http_reply_err(req, AT_EUNPROCESSABLE, "role must be one of operator, node, viewer",
			       json_pack("{ss}", "field", "role"));
		json_decref(body);
		return;
	}
	/* node: the serving node a node token may heartbeat as (sql/009) */
	if (nodev && !json_is_null(nodev) && (!node || strcmp(role, "node") != 0 || !nodes_name_valid(node))) {
		http_reply_err(req, AT_EUNPROCESSABLE, "node must be 1..64 of [A-Za-z0-9._-], for role node only",
			       json_pack("{ss}", "field", "node"));
		json_decref(body);
		return;
	}
	struct token_create *t = calloc(1, sizeof *t);
	unsigned char hash[32];
	if (!t || auth_generate(t->token, sizeof t->token, hash) < 0) {
		free(t);
		json_decref(body);
		http_reply_err(req, AT_EUNAVAILABLE, "cannot generate a token", NULL);
		return;
	}
	t->req = req;
	snprintf(t->role, sizeof t->role, "%s", role);
	struct db_params p;
	db_params_init(&p);
	db_param_bin(&p, hash, 32);
	db_param_text(&p, role);
	db_param_text(&p, name);
	db_param_text(&p, node);
	int rc = db_query(app->db,
			  "INSERT INTO api_tokens (token_hash, role, name, node) "
			  "VALUES ($1, $2, $3, $4) RETURNING id",
			  &p, token_created, t);
	json_decref(body);
	if (rc < 0) {
		free(t);
		http_reply_err(req, AT_EDB, "database unavailable", NULL);
	}
}

/* ---- the route table ---- */

const struct http_tag app_tags[] = {
	{"ops", "health, readiness, metrics, this document"},
	{"tokens", "API tokens and their roles"},
	{"ingest", "sketches and paintings: upload, normalise, deduplicate, fetch"},
	{"pipelines", "pipeline definitions, runs, their jobs, metrics and live events"},
	{"registry", "models, versions with lineage, channels and the promotion ledger"},
	{"artifacts", "content-addressed downloads: models, checkpoints, shards, samples"},
	{"nodes", "the serving fleet's heartbeats"},
	{"gallery", "published works: delivered by nodes, their changes feed, hidden by operators"},
	{"rights", "contributors' rights: receipts, withdrawal, a sketch's lineage"},
};
const size_t app_ntags = sizeof app_tags / sizeof app_tags[0];

/* What an upload answers (ingest.c's row_json) and an image's metadata row. */
#define S_UPLOAD                                                                                                      \
	HTTP_JSON(API_OBJECT("\"id\":" API_INT ",\"domain\":{\"type\":\"string\",\"enum\":[\"sketch\",\"painting\"]}" \
			     ",\"sha256\":" API_SHA256 ",\"ink_ratio\":" API_NUM ",\"split\":" API_STR                \
			     ",\"width\":" API_INT ",\"height\":" API_INT ",\"duplicate\":" API_BOOL                  \
			     ",\"near_duplicate\":" API_BOOL ",\"distance\":" API_INT))
#define S_UPLOAD_BODY                                                                                          \
	"{\"image/png\":" HTTP_BINARY ",\"image/jpeg\":" HTTP_BINARY                                           \
	",\"multipart/form-data\":{\"type\":\"object\",\"required\":[\"image\"],\"properties\":{\"image\":"    \
	"{\"type\":\"string\",\"format\":\"binary\",\"description\":\"PNG or JPEG\"},\"contributor\":" API_STR \
	",\"source\":" API_STR ",\"consent\":{\"type\":\"string\",\"description\":\"true, 1, y, yes or on\"}}}}"
#define S_IMAGE_META                                                                                               \
	HTTP_JSON(API_OBJECT(                                                                                      \
		"\"id\":" API_INT ",\"domain\":" API_STR ",\"sha256\":" API_SHA256 ",\"width\":" API_INT           \
		",\"height\":" API_INT ",\"channels\":" API_INT ",\"ink_ratio\":" API_NULL(                        \
			"number") ",\"split\":" API_STR ",\"status\":" API_STR                                     \
				  ",\"contributor\":" API_NULL("string") ",\"consent\":" API_NULL(                 \
					  "boolean") ",\"source\":" API_NULL("string") ",\"created_at\":" API_TIME \
										       ",\"bytes\":" API_INT))
#define P_ID "{\"id\":" API_ID "}"
#define R_DUPLICATE                                                                                                                       \
	"{\"200\":{\"description\":\"already stored (duplicate: true), or a sketch within --near-duplicate-distance "                     \
	"of a stored one (near_duplicate: true, the stored sketch's id, sha256 and Hamming distance; not stored)\",\"content\":" S_UPLOAD \
	"}}"
#define R_503                                                                               \
	"{\"503\":{\"description\":\"the database is unreachable\",\"content\":" HTTP_JSON( \
		"{\"$ref\":\"#/components/schemas/Error\"}") "}}"

/* Specific patterns before general ones: "{id}.png" must precede "{id}". */
const struct http_route app_routes[] = {
	{"GET", "/healthz", get_healthz, ROLE_PUBLIC, "liveness: 200 while the process runs", .op = "getHealth",
	 .tag = "ops", .reply = HTTP_JSON(API_OBJECT("\"status\":{\"type\":\"string\",\"enum\":[\"alive\"]}"))},
	{"GET", "/readyz", get_readyz, ROLE_PUBLIC, "readiness: 200 only while PostgreSQL answers",
	 .op = "getReadiness", .tag = "ops",
	 .reply = HTTP_JSON(API_OBJECT("\"status\":{\"type\":\"string\",\"enum\":[\"ready\"]},\"database\":" API_STR)),
	 .replies = R_503},
	{"GET", "/metrics", get_metrics, ROLE_PUBLIC, "Prometheus metrics", .op = "getMetrics", .tag = "ops",
	 .reply = "{\"text/plain\":" HTTP_TEXT "}"},
	{"GET", "/v1/openapi.json", get_openapi, ROLE_PUBLIC, "this API as an OpenAPI document", .op = "getOpenapi",
	 .tag = "ops", .reply = HTTP_JSON(API_OBJ)},
	{"POST", "/v1/tokens", post_token, ROLE_OPERATOR, "create a token {role, name, node}; shown once",
	 .op = "createToken", .tag = "tokens",
	 .body = HTTP_JSON("{\"type\":\"object\",\"required\":[\"role\"],\"properties\":{\"role\":{\"type\":\"string\","
			   "\"enum\":[\"operator\",\"node\",\"viewer\"]},\"name\":" API_STR
			   ",\"node\":{\"type\":\"string\",\"nullable\":true,\"pattern\":\"^[A-Za-z0-9._-]{1,64}$\","
			   "\"description\":\"role node only: the serving node this token may heartbeat as "
			   "(unset: the first name it reports)\"}}}"),
	 .status = 201, .reply = HTTP_JSON(API_OBJECT("\"token\":" API_STR ",\"role\":" API_STR ",\"id\":" API_INT))},
	{"POST", "/v1/sketches", ingest_post_sketch, ROLE_OPERATOR | ROLE_NODE,
	 "upload a sketch (image/png, image/jpeg, or multipart field image)", .op = "uploadSketch", .tag = "ingest",
	 .body = S_UPLOAD_BODY, .status = 201, .reply = S_UPLOAD, .replies = R_DUPLICATE},
	{"GET", "/v1/sketches/{id}.png", ingest_get_sketch_png, ROLE_ANY, "a sketch's normalised image",
	 .op = "getSketchImage", .tag = "ingest", .params = P_ID, .reply = "{\"image/png\":" HTTP_BINARY "}"},
	{"GET", "/v1/sketches/{id}", ingest_get_sketch, ROLE_ANY, "a sketch's metadata", .op = "getSketch",
	 .tag = "ingest", .params = P_ID, .reply = S_IMAGE_META},
	{"POST", "/v1/paintings", ingest_post_painting, ROLE_OPERATOR, "upload a painting (style domain)",
	 .op = "uploadPainting", .tag = "ingest", .body = S_UPLOAD_BODY, .status = 201, .reply = S_UPLOAD,
	 .replies = R_DUPLICATE},
	{"GET", "/v1/paintings/{id}.png", ingest_get_painting_png, ROLE_ANY, "a painting's normalised image",
	 .op = "getPaintingImage", .tag = "ingest", .params = P_ID, .reply = "{\"image/png\":" HTTP_BINARY "}"},
	{"GET", "/v1/paintings/{id}", ingest_get_painting, ROLE_ANY, "a painting's metadata", .op = "getPainting",
	 .tag = "ingest", .params = P_ID, .reply = S_IMAGE_META},
};
const size_t app_nroutes = sizeof app_routes / sizeof app_routes[0];
