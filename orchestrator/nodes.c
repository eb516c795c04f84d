/*
 * nodes.c — serving-node heartbeats and the fleet view (see nodes.h):
 * POST /v1/nodes/heartbeat upserts the node's row and appends to its history
 * (every field checked, unknown ones dropped, the token bound to the name,
 * history older than --node-heartbeat-days pruned: sql/009_node_trust.sql);
 * GET /v1/nodes lists who serves what and whether it is alive.
 */
#include "nodes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "auth.h"

/* A heartbeat is a few hundred bytes; anything near this is not one. */
#define HEARTBEAT_MAX_BODY 16384

int nodes_name_valid(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > 64)
		return 0;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/* A registry model name (sql/004: models.name's CHECK). */
static int model_name_valid(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > 63 || !strchr("abcdefghijklmnopqrstuvwxyz0123456789", s[0]))
		return 0;
	return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

/* The fields a heartbeat may carry. Everything else is dropped, so a client
 * cannot park data in the database; "info" fields go to nodes.info, the rest
 * to their columns. null is the same as absent (except for "node"). */
enum hb_kind {
	HB_NAME,
	HB_MODEL,
	HB_CHANNEL,
	HB_VERSION,
	HB_COUNT,
	HB_RATE,
	HB_MS,
	HB_TEXT,
	HB_TIME,
	HB_SHA,
	HB_SHORT,
};
static const struct hb_field {
	const char *name;
	enum hb_kind kind;
	int info;
	const char *rule; /* for the 422 message */
} hb_fields[] = {
	{"node", HB_NAME, 0, "a string of 1..64 of [A-Za-z0-9._-]"},
	{"model", HB_MODEL, 0, "a model name (^[a-z0-9][a-z0-9_-]{0,62}$) or null"},
	{"channel", HB_CHANNEL, 0, "\"canary\", \"production\" or null"},
	{"version", HB_VERSION, 0, "an integer in 1..2147483647 or null"},
	{"requests", HB_COUNT, 0, "an integer >= 0"},
	{"errors", HB_COUNT, 0, "an integer >= 0"},
	{"error_rate", HB_RATE, 0, "a number in [0, 1] or null"},
	{"p50_ms", HB_MS, 0, "a number in [0, 1e7] or null"},
	{"p95_ms", HB_MS, 0, "a number in [0, 1e7] or null"},
	{"last_error", HB_TEXT, 0, "a string of at most 1024 bytes or null"},
	{"started_at", HB_TIME, 0, "unix time in [0, 4102444800] or null"},
	{"sha256", HB_SHA, 1, "64 lowercase hex digits, \"\" or null"},
	{"swaps", HB_COUNT, 1, "an integer >= 0"},
	{"swap_failures", HB_COUNT, 1, "an integer >= 0"},
	{"spool_depth", HB_COUNT, 1, "an integer >= 0"},
	{"device", HB_SHORT, 1, "a string of at most 64 bytes or null"},
};

static int hb_value_ok(enum hb_kind k, json_t *v)
{
	const char *s = json_string_value(v);
	double x = json_number_value(v);
	switch (k) {
	case HB_NAME: return s && nodes_name_valid(s);
	case HB_MODEL: return s && model_name_valid(s);
	case HB_CHANNEL: return s && (strcmp(s, "canary") == 0 || strcmp(s, "production") == 0);
	case HB_VERSION: return json_is_integer(v) && json_integer_value(v) >= 1 && json_integer_value(v) <= 2147483647;
	case HB_COUNT: return json_is_integer(v) && json_integer_value(v) >= 0;
	case HB_RATE: return json_is_number(v) && x >= 0 && x <= 1;
	case HB_MS: return json_is_number(v) && x >= 0 && x <= 1e7;
	case HB_TIME: return json_is_number(v) && x >= 0 && x <= 4102444800.0;
	case HB_TEXT: return s && json_string_length(v) <= 1024;
	case HB_SHORT: return s && json_string_length(v) <= 64;
	case HB_SHA: return s && (!*s || (strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64));
	}
	return 0;
}

/* Checks b against hb_fields and splits it: the columns' fields into *hb, the
 * info fields into *info (both new). Returns the offending field or NULL. */
static const struct hb_field *hb_validate(json_t *b, json_t **hb, json_t **info)
{
	*hb = json_object();
	*info = json_object();
	for (size_t i = 0; i < sizeof hb_fields / sizeof hb_fields[0]; i++) {
		const struct hb_field *f = &hb_fields[i];
		json_t *v = json_object_get(b, f->name);
		if (!v || (json_is_null(v) && f->kind != HB_NAME))
			continue;
		if (!hb_value_ok(f->kind, v))
			return f;
		json_object_set(f->info ? *info : *hb, f->name, v);
	}
	return NULL;
}

struct heartbeat {
	http_req_t *req;
	char node[65];
};

static void on_heartbeat(void *arg, int status, PGresult *res)
{
	struct heartbeat *h = arg;
	http_req_t *req = h->req;
	struct app *app = http_req_app(req);
	const char *out = status < 0 || PQntuples(res) != 1 ? NULL : PQgetvalue(res, 0, 0);
	if (out && strcmp(out, "bound") == 0)
		auth_token_bound(app->auth, http_req_token_id(req), h->node);
	if (!out)
		http_reply_err(req, AT_EDB, "could not record the heartbeat", NULL);
	else if (strcmp(out, "ok") == 0 || strcmp(out, "bound") == 0)
		http_reply_json(req, 200, json_pack("{sb}", "ok", 1));
	else if (strcmp(out, "revoked") == 0)
		http_reply_err(req, AT_EUNAUTHORIZED, "this token was revoked", NULL);
	else if (strcmp(out, "taken") == 0)
		http_reply_err(req, AT_EFORBIDDEN, "another node token is bound to this node name",
			       json_pack("{ss}", "field", "node"));
	else if (strncmp(out, "bound:", 6) == 0)
		http_reply_err(req, AT_EFORBIDDEN, "this node token is bound to another node name",
			       json_pack("{ss,ss}", "field", "node", "bound_to", out + 6));
	else
		http_reply_err(req, AT_EINTERNAL, "unexpected heartbeat outcome", json_pack("{ss}", "outcome", out));
	free(h);
}

static void post_heartbeat(http_req_t *req)
{
	struct app *app = http_req_app(req);
	size_t blen = 0;
	http_req_body(req, &blen);
	if (blen > HEARTBEAT_MAX_BODY) {
		http_reply_err(req, AT_ETOOBIG, "a heartbeat body is at most 16 KiB",
			       json_pack("{sI,si}", "size", (json_int_t)blen, "limit", HEARTBEAT_MAX_BODY));
		return;
	}
	json_t *b = http_req_json_body(req);
	if (!b)
		return;
	json_t *hb, *info;
	const struct hb_field *bad = hb_validate(b, &hb, &info);
	json_decref(b);
	if (bad) {
		json_decref(hb);
		json_decref(info);
		char msg[160];
		snprintf(msg, sizeof msg, "heartbeat field \"%s\" must be %s", bad->name, bad->rule);
		http_reply_err(req, AT_EUNPROCESSABLE, msg, json_pack("{ss}", "field", bad->name));
		return;
	}
	if (!json_object_get(hb, "node")) {
		json_decref(hb);
		json_decref(info);
		http_reply_err(req, AT_EUNPROCESSABLE, "heartbeat needs a \"node\" name (1..64 of [A-Za-z0-9._-])",
			       json_pack("{ss}", "field", "node"));
		return;
	}
	/* A node token speaks for the one node it is bound to (or binds now,
	 * sql/009); an operator may report for any node. */
	char tokid[24] = "";
	if (!(http_req_role(req) & ROLE_OPERATOR)) {
		if (http_req_token_id(req) <= 0) {
			json_decref(hb);
			json_decref(info);
			http_reply_err(req, AT_EINTERNAL, "the token's identity is unknown", NULL);
			return;
		}
		snprintf(tokid, sizeof tokid, "%lld", (long long)http_req_token_id(req));
	}
	struct heartbeat *h = calloc(1, sizeof *h);
	if (h) {
		h->req = req;
		snprintf(h->node, sizeof h->node, "%s", json_string_value(json_object_get(hb, "node")));
	}
	char *text = json_dumps(hb, JSON_COMPACT);
	char *itext = json_dumps(info, JSON_COMPACT);
	json_decref(hb);
	json_decref(info);
	char days[16];
	snprintf(days, sizeof days, "%d", app->cfg.node_heartbeat_days);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, tokid[0] ? tokid : NULL);
	db_param_text(&p, text);
	db_param_text(&p, itext);
	db_param_text(&p, days);
	int rc = AT_ENOMEM;
	if (h && text && itext)
		rc = db_query(app->db, "SELECT atelier_node_heartbeat($1::bigint, $2::jsonb, $3::jsonb, $4::int)", &p,
			      on_heartbeat, h);
	free(text);
	free(itext);
	if (rc < 0) {
		free(h);
		http_reply_err(req, rc == AT_ENOMEM ? AT_ENOMEM : AT_EDB,
			       rc == AT_ENOMEM ? "out of memory" : "database unavailable", NULL);
	}
}

static void get_nodes(http_req_t *req)
{
	api_reply_sql_json(
		req,
		"SELECT json_build_object('nodes', coalesce(json_agg(json_build_object('name', name, 'model', model, "
		"'channel', channel, 'version', version, 'requests', requests, 'errors', errors, "
		"'error_rate', error_rate, 'p50_ms', p50_ms, 'p95_ms', p95_ms, 'last_error', last_error, "
		"'last_seen', last_seen, 'alive', last_seen > now() - interval '30 seconds') ORDER BY name), '[]'))::text "
		"FROM nodes",
		NULL, "no nodes");
}

const struct http_route nodes_routes[] = {
	{"POST", "/v1/nodes/heartbeat", post_heartbeat, ROLE_NODE | ROLE_OPERATOR, "serving-node heartbeat",
	 .op = "postHeartbeat", .tag = "nodes",
	 .body = HTTP_JSON(
		 "{\"type\":\"object\",\"required\":[\"node\"],\"description\":\"other fields are dropped; a node "
		 "token may report only as the node it is bound to\",\"properties\":{\"node\":{\"type\":\"string\","
		 "\"pattern\":\"^[A-Za-z0-9._-]{1,64}$\"},\"model\":{\"type\":\"string\",\"nullable\":true,"
		 "\"pattern\":\"^[a-z0-9][a-z0-9_-]{0,62}$\"},\"channel\":{\"type\":\"string\",\"nullable\":true,"
		 "\"enum\":[\"canary\",\"production\",null]},\"version\":{\"type\":\"integer\",\"nullable\":true,"
		 "\"minimum\":1,\"maximum\":2147483647},\"requests\":{\"type\":\"integer\",\"minimum\":0},"
		 "\"errors\":{\"type\":\"integer\",\"minimum\":0},\"error_rate\":{\"type\":\"number\","
		 "\"nullable\":true,\"minimum\":0,\"maximum\":1},\"p50_ms\":{\"type\":\"number\",\"nullable\":true,"
		 "\"minimum\":0,\"maximum\":1e7},\"p95_ms\":{\"type\":\"number\",\"nullable\":true,\"minimum\":0,"
		 "\"maximum\":1e7},\"last_error\":{\"type\":\"string\",\"nullable\":true,\"maxLength\":1024},"
		 "\"started_at\":{\"type\":\"number\",\"nullable\":true,\"minimum\":0,\"maximum\":4102444800,"
		 "\"description\":\"unix time\"},\"sha256\":{\"type\":\"string\",\"nullable\":true,"
		 "\"pattern\":\"^([0-9a-f]{64})?$\"},\"swaps\":{\"type\":\"integer\",\"minimum\":0},"
		 "\"swap_failures\":{\"type\":\"integer\",\"minimum\":0},\"spool_depth\":{\"type\":\"integer\","
		 "\"minimum\":0},\"device\":{\"type\":\"string\",\"nullable\":true,\"maxLength\":64}}}"),
	 .reply = HTTP_JSON(API_OBJECT("\"ok\":" API_BOOL))},
	{"GET", "/v1/nodes", get_nodes, ROLE_ANY, "the serving fleet: who serves what, health", .op = "listNodes",
	 .tag = "nodes",
	 .reply = HTTP_JSON(API_OBJECT("\"nodes\":" API_ARRAY(API_OBJECT(
		 "\"name\":" API_STR
		 ",\"model\":" API_NULL("string") ",\"channel\":" API_NULL("string") ",\"version\":" API_NULL(
			 "integer") ",\"requests\":" API_INT ",\"errors\":" API_INT
				    ",\"error_rate\":" API_NULL("number") ",\"p50_ms\":" API_NULL("number") ",\"p95_ms\":" API_NULL(
					    "number") ",\"last_error\":" API_NULL("string") ",\"last_seen\":" API_TIME
											    ",\"alive\":" API_BOOL))))},
};
const size_t nodes_nroutes = sizeof nodes_routes / sizeof nodes_routes[0];
