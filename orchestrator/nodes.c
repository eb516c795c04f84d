/*
 * nodes.c — serving-node heartbeats and the fleet view (see nodes.h):
 * POST /v1/nodes/heartbeat upserts the node's row and appends to its history;
 * GET /v1/nodes lists who serves what and whether it is alive.
 */
#include "nodes.h"

#include <string.h>

#include "api.h"

static void on_heartbeat(void *arg, int status, PGresult *res)
{
	http_req_t *req = arg;
	if (status < 0)
		http_reply_err(req, AT_EDB, "could not record the heartbeat", NULL);
	else
		http_reply_json(req, 200, json_pack("{sb}", "ok", 1));
}

static void post_heartbeat(http_req_t *req)
{
	struct app *app = http_req_app(req);
	json_t *b = http_req_json_body(req);
	if (!b)
		return;
	const char *node = json_string_value(json_object_get(b, "node"));
	if (!node || !*node || strlen(node) > 128) {
		json_decref(b);
		http_reply_err(req, AT_EUNPROCESSABLE, "heartbeat needs a \"node\" name (1..128 chars)", json_pack("{ss}", "field", "node"));
		return;
	}
	char *text = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, text);
	int rc = db_query(
		app->db,
		"WITH h AS (SELECT $1::jsonb AS j), up AS (INSERT INTO nodes (name, model, channel, version, requests, errors, "
		"error_rate, p50_ms, p95_ms, last_error, info, started_at, last_seen) SELECT j->>'node', j->>'model', "
		"j->>'channel', (j->>'version')::int, coalesce((j->>'requests')::bigint, 0), "
		"coalesce((j->>'errors')::bigint, 0), (j->>'error_rate')::real, (j->>'p50_ms')::real, (j->>'p95_ms')::real, "
		"j->>'last_error', j, to_timestamp((j->>'started_at')::double precision), now() FROM h "
		"ON CONFLICT (name) DO UPDATE SET model = EXCLUDED.model, channel = EXCLUDED.channel, "
		"version = EXCLUDED.version, requests = EXCLUDED.requests, errors = EXCLUDED.errors, "
		"error_rate = EXCLUDED.error_rate, p50_ms = EXCLUDED.p50_ms, p95_ms = EXCLUDED.p95_ms, "
		"last_error = EXCLUDED.last_error, info = EXCLUDED.info, started_at = EXCLUDED.started_at, "
		"last_seen = now() RETURNING 1) "
		"INSERT INTO node_heartbeats (node, model, channel, version, requests, errors, error_rate, p95_ms) "
		"SELECT j->>'node', j->>'model', j->>'channel', (j->>'version')::int, (j->>'requests')::bigint, "
		"(j->>'errors')::bigint, (j->>'error_rate')::real, (j->>'p95_ms')::real FROM h, up",
		&p, on_heartbeat, req);
	free(text);
	if (rc < 0)
		http_reply_err(req, AT_EDB, "database unavailable", NULL);
}

static void get_nodes(http_req_t *req)
{
	api_reply_sql_json(req,
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
	 .body = HTTP_JSON("{\"type\":\"object\",\"required\":[\"node\"],\"properties\":{\"node\":{\"type\":\"string\","
			   "\"minLength\":1,\"maxLength\":128},\"model\":" API_STR ",\"channel\":" API_STR
			   ",\"version\":" API_INT ",\"requests\":" API_INT ",\"errors\":" API_INT ",\"error_rate\":" API_NUM
			   ",\"p50_ms\":" API_NUM ",\"p95_ms\":" API_NUM ",\"last_error\":" API_NULL("string")
			   ",\"started_at\":{\"type\":\"number\",\"description\":\"unix time\"}}}"),
	 .reply = HTTP_JSON(API_OBJECT("\"ok\":" API_BOOL))},
	{"GET", "/v1/nodes", get_nodes, ROLE_ANY, "the serving fleet: who serves what, health", .op = "listNodes",
	 .tag = "nodes",
	 .reply = HTTP_JSON(API_OBJECT("\"nodes\":" API_ARRAY(API_OBJECT(
		 "\"name\":" API_STR ",\"model\":" API_NULL("string") ",\"channel\":" API_NULL("string")
		 ",\"version\":" API_NULL("integer") ",\"requests\":" API_INT ",\"errors\":" API_INT
		 ",\"error_rate\":" API_NULL("number") ",\"p50_ms\":" API_NULL("number") ",\"p95_ms\":" API_NULL("number")
		 ",\"last_error\":" API_NULL("string") ",\"last_seen\":" API_TIME ",\"alive\":" API_BOOL))))},
};
const size_t nodes_nroutes = sizeof nodes_routes / sizeof nodes_routes[0];
