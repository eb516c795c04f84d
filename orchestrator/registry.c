/*
 * registry.c — models, versions, channels and the promotion ledger (see
 * registry.h): the read routes and promote / roll back. The long-poll on a
 * channel is longpoll.c, downloads artifacts_api.c, heartbeats nodes.c.
 */
#include "registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

int registry_valid_channel(const char *c) { return !strcmp(c, "canary") || !strcmp(c, "production"); }

/* ---- reads ---- */

static void get_models(http_req_t *req)
{
	api_reply_sql_json(
		req,
		"SELECT json_build_object('models', coalesce(json_agg(json_build_object('name', m.name, "
		"'versions', (SELECT count(*) FROM model_versions v WHERE v.model = m.name), "
		"'channels', (SELECT json_object_agg(c.channel, v.version) FROM channels c "
		"  JOIN model_versions v ON v.id = c.version_id WHERE c.model = m.name)) ORDER BY m.name), '[]'))::text "
		"FROM models m",
		NULL, "no models");
}

static void get_versions(http_req_t *req)
{
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, http_req_param(req, "name"));
	api_reply_sql_json(
		req,
		"SELECT json_build_object('model', $1::text, 'versions', coalesce((SELECT json_agg(row_to_json(l) "
		"ORDER BY l.version DESC) FROM model_lineage l WHERE l.model = $1), '[]'))::text "
		"WHERE EXISTS (SELECT 1 FROM models WHERE name = $1)",
		&p, "no such model");
}

/* $1 = the model's name, $2 = the version from the path; -1 when the version
 * is not a positive number (the 400 is sent). */
static int version_params(http_req_t *req, struct db_params *p)
{
	const char *v = http_req_param(req, "version");
	if (!api_positive_id(req, v, "version"))
		return -1;
	db_params_init(p);
	db_param_text(p, http_req_param(req, "name"));
	db_param_text(p, v);
	return 0;
}

static void get_version(http_req_t *req)
{
	struct db_params p;
	if (version_params(req, &p) < 0)
		return;
	api_reply_sql_json(
		req,
		"WITH RECURSIVE chain AS (SELECT id, parent_version_id, version, 0 AS depth FROM model_versions "
		"  WHERE model = $1 AND version = $2::int "
		"  UNION ALL SELECT p.id, p.parent_version_id, p.version, c.depth + 1 FROM model_versions p "
		"  JOIN chain c ON p.id = c.parent_version_id WHERE c.depth < 100) "
		"SELECT json_build_object('version', row_to_json(l), 'config', v.config, "
		"'ancestors', (SELECT json_agg(version ORDER BY depth) FROM chain WHERE depth > 0), "
		"'run', (SELECT row_to_json(s) FROM run_status s WHERE s.run_id = v.run_id), "
		"'dataset', (SELECT json_build_object('id', d.id, 'manifest_sha256', d.manifest_sha256, "
		"  'sketches', d.sketches, 'paintings', d.paintings, 'created_at', d.created_at) FROM datasets d "
		"  WHERE d.id = v.dataset_id))::text "
		"FROM model_versions v JOIN model_lineage l ON l.version_id = v.id WHERE v.model = $1 AND v.version = $2::int",
		&p, "no such model version");
}

/* The gallery evaluate stored with a version (written before its gate decided). */
static void get_samples(http_req_t *req)
{
	struct db_params p;
	if (version_params(req, &p) < 0)
		return;
	api_reply_sql_json(req,
			   "SELECT json_build_object('model', v.model, 'version', v.version, 'samples', "
			   "coalesce(v.metrics->'samples', '[]'), 'evaluation', v.metrics->'evaluation')::text "
			   "FROM model_versions v WHERE v.model = $1 AND v.version = $2::int",
			   &p, "no such model version");
}

static void get_ledger(http_req_t *req)
{
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, http_req_param(req, "name"));
	api_reply_sql_json(
		req,
		"SELECT json_build_object('model', $1::text, 'ledger', coalesce((SELECT json_agg(json_build_object("
		"'id', p.id, 'channel', p.channel, 'from', fv.version, 'to', tv.version, 'kind', p.kind, "
		"'actor', p.actor, 'reason', p.reason, 'run', p.run_id, 'at', p.created_at) ORDER BY p.id) "
		"FROM promotions p LEFT JOIN model_versions fv ON fv.id = p.from_version_id "
		"LEFT JOIN model_versions tv ON tv.id = p.to_version_id WHERE p.model = $1), '[]'))::text "
		"WHERE EXISTS (SELECT 1 FROM models WHERE name = $1)",
		&p, "no such model");
}

/* ---- promote / roll back ---- */

struct move {
	http_req_t *req;
	char model[64];
	char channel[16];
	long long version; /* 0 for a rollback */
	int force;         /* promote a version whose gate failed (recorded in the reason) */
	char actor[64];
	char *reason; /* malloc'd */
};

static void move_free(struct move *m)
{
	free(m->reason);
	free(m);
}

static void on_moved(void *arg, int status, PGresult *res)
{
	struct move *m = arg;
	if (status == AT_EDB && strcmp(db_sqlstate(res), "P0002") == 0) {
		/* our words, not PostgreSQL's: a missing version reaches SQL as a
		 * NULL id, which PL/pgSQL would print as "<NULL>" */
		char msg[160];
		if (m->version > 0)
			snprintf(msg, sizeof msg, "model %s has no version %lld", m->model, m->version);
		else
			snprintf(msg, sizeof msg, "channel %s/%s has no earlier version to roll back to", m->model,
				 m->channel);
		json_t *d = json_pack("{ss,ss}", "model", m->model, "channel", m->channel);
		if (m->version > 0)
			json_object_set_new(d, "version", json_integer(m->version));
		http_reply_err(m->req, AT_ENOTFOUND, msg, d);
	} else if (status < 0) {
		api_log_db_error(m->req, res);
		http_reply_err(m->req, AT_EDB, "could not move the channel", NULL);
	} else {
		size_t len = (size_t)PQgetlength(res, 0, 0);
		char *copy = malloc(len + 1);
		if (!copy) {
			http_reply_err(m->req, AT_ENOMEM, "out of memory", NULL);
		} else {
			memcpy(copy, PQgetvalue(res, 0, 0), len);
			copy[len] = '\n';
			http_reply_owned(m->req, 200, "application/json", copy, len + 1);
		}
	}
	move_free(m);
}

/* The fields a move's body may hold; anything else is refused by name. */
static const char *const move_fields[] = {"version", "action", "reason", "force"};

/* A promote is {"version": N} (with "action": "promote" optional), a
 * rollback {"action": "rollback"}; both may carry a "reason" string. Unknown
 * fields, wrong types and a rollback that also names a version (which one
 * would win?) are 422 naming the fields. Returns 1 when it replied. */
static int move_body_refused(http_req_t *req, json_t *body)
{
	json_t *unknown = json_array();
	const char *key;
	json_t *val;
	json_object_foreach(body, key, val)
	{
		size_t i = 0;
		while (i < sizeof move_fields / sizeof move_fields[0] && strcmp(key, move_fields[i]) != 0)
			i++;
		if (i == sizeof move_fields / sizeof move_fields[0])
			json_array_append_new(unknown, json_string(key));
	}
	if (json_array_size(unknown)) {
		http_reply_err(req, AT_EUNPROCESSABLE,
			       "unknown fields in the body (known: version, action, reason, force)",
			       json_pack("{so}", "fields", unknown));
		return 1;
	}
	json_decref(unknown);
	json_t *action = json_object_get(body, "action"), *ver = json_object_get(body, "version"),
	       *reason = json_object_get(body, "reason");
	const char *a = json_string_value(action);
	const char *bad = NULL, *msg = NULL;
	if (action && (!a || (strcmp(a, "promote") && strcmp(a, "rollback")))) {
		bad = "action";
		msg = "action must be \"promote\" or \"rollback\"";
	} else if (reason && !json_is_string(reason)) {
		bad = "reason";
		msg = "reason must be a string";
	} else if (a && !strcmp(a, "rollback") && ver) {
		http_reply_err(req, AT_EUNPROCESSABLE,
			       "a rollback goes back to the channel's previous version: it takes no version",
			       json_pack("{s[ss]}", "fields", "action", "version"));
		return 1;
	} else if (!(a && !strcmp(a, "rollback")) &&
		   (!json_is_integer(ver) || json_integer_value(ver) < 1 || json_integer_value(ver) > INT32_MAX)) {
		bad = "version";
		msg = "body must be {\"version\": N} (N a version number, 1..2147483647) or {\"action\": \"rollback\"}";
	}
	if (!bad)
		return 0;
	http_reply_err(req, AT_EUNPROCESSABLE, msg, json_pack("{s[s]}", "fields", bad));
	return 1;
}

static void move_channel(struct move *m)
{
	struct app *app = http_req_app(m->req);
	char vs[32];
	snprintf(vs, sizeof vs, "%lld", m->version);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, m->model);
	db_param_text(&p, m->channel);
	db_param_text(&p, m->actor);
	db_param_text(&p, m->reason);
	int rc;
	if (m->version == 0) {
		rc = db_query(app->db,
			      "SELECT json_build_object('model', $1::text, 'channel', $2::text, 'moved', m.moved, "
			      "'from', (SELECT version FROM model_versions WHERE id = m.from_version_id), "
			      "'to', (SELECT version FROM model_versions WHERE id = m.to_version_id))::text "
			      "FROM atelier_rollback($1, $2, $3, $4, 'rollback', NULL) m",
			      &p, on_moved, m);
	} else {
		db_param_text(&p, vs);
		rc = db_query(
			app->db,
			"SELECT json_build_object('model', $1::text, 'channel', $2::text, 'moved', m.moved, "
			"'from', (SELECT version FROM model_versions WHERE id = m.from_version_id), 'to', $5::int)::text "
			"FROM atelier_move_channel($1, $2, (SELECT id FROM model_versions WHERE model = $1 AND "
			"version = $5::int), $3, $4, 'promote', NULL) m",
			&p, on_moved, m);
	}
	if (rc < 0) {
		http_reply_err(m->req, AT_EDB, "database unavailable", NULL);
		move_free(m);
	}
}

/* A version whose gate failed moves only with force, and the ledger's reason
 * says it was an override (the pipeline's own promote never gets here: it
 * runs only after a passing evaluate). */
static void on_verdict(void *arg, int status, PGresult *res)
{
	struct move *m = arg;
	if (status < 0) {
		http_reply_err(m->req, AT_EDB, "could not read the version's verdict", NULL);
		move_free(m);
		return;
	}
	int failed = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "false") == 0;
	if (failed && !m->force) {
		char msg[160];
		snprintf(msg, sizeof msg,
			 "model %s version %lld failed its gate: promote it with force: true to override", m->model,
			 m->version);
		http_reply_err(m->req, AT_ECONFLICT, msg,
			       json_pack("{ss,sI,ss}", "model", m->model, "version", (json_int_t)m->version, "gate",
					 "failed"));
		move_free(m);
		return;
	}
	if (failed) {
		char *r = NULL;
		if (asprintf(&r, "override of a failed gate: %s", m->reason) < 0) {
			http_reply_err(m->req, AT_ENOMEM, "out of memory", NULL);
			move_free(m);
			return;
		}
		free(m->reason);
		m->reason = r;
	}
	move_channel(m);
}

#define MOVE_REASON_MAX 1000

static void post_channel(http_req_t *req)
{
	struct app *app = http_req_app(req);
	const char *model = http_req_param(req, "name"), *channel = http_req_param(req, "channel");
	if (!registry_valid_channel(channel)) {
		http_reply_err(req, AT_ENOTFOUND, "no such channel (canary or production)",
			       json_pack("{ss}", "channel", channel));
		return;
	}
	json_t *body = http_req_json_body(req);
	if (!body)
		return;
	if (move_body_refused(req, body)) {
		json_decref(body);
		return;
	}
	const char *action = json_string_value(json_object_get(body, "action"));
	json_t *ver = json_object_get(body, "version"), *force = json_object_get(body, "force");
	const char *reason = json_string_value(json_object_get(body, "reason"));
	int rollback = action && !strcmp(action, "rollback");
	if ((force && !json_is_boolean(force)) || (reason && strlen(reason) > MOVE_REASON_MAX)) {
		/* name the field before the body (which owns force) is released */
		const char *field = force && !json_is_boolean(force) ? "force" : "reason";
		json_decref(body);
		http_reply_err(req, AT_EUNPROCESSABLE, "force must be a boolean and reason at most 1000 bytes",
			       json_pack("{s[s]}", "fields", field));
		return;
	}
	struct move *m = calloc(1, sizeof *m);
	if (m)
		m->reason = strdup(reason ? reason : rollback ? "manual rollback" : "manual promotion");
	if (!m || !m->reason) {
		if (m)
			move_free(m);
		json_decref(body);
		http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
		return;
	}
	m->req = req;
	snprintf(m->model, sizeof m->model, "%s", model);
	snprintf(m->channel, sizeof m->channel, "%s", channel);
	m->version = rollback ? 0 : (long long)json_integer_value(ver);
	m->force = json_is_true(force);
	/* The ledger names who moved the channel: the token's name; a token
	 * created without one is known only by its role. */
	const char *who = http_req_principal(req);
	if (who[0])
		snprintf(m->actor, sizeof m->actor, "%s", who);
	else
		snprintf(m->actor, sizeof m->actor, "api:%s", http_role_name(http_req_role(req)));
	json_decref(body);
	if (rollback) {
		move_channel(m);
		return;
	}
	char vs[32];
	snprintf(vs, sizeof vs, "%lld", m->version);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, model);
	db_param_text(&p, vs);
	if (db_query(
		    app->db,
		    "SELECT coalesce(verdict->>'passed', '') FROM model_versions WHERE model = $1 AND version = $2::int",
		    &p, on_verdict, m) < 0) {
		move_free(m);
		http_reply_err(req, AT_EDB, "database unavailable", NULL);
	}
}

/* Reply shapes for the OpenAPI document (what the SQL above builds). */
#define S_WITHDRAWN_COUNT                                                                                  \
	"{\"type\":\"integer\",\"description\":\"withdrawn sketches it trained on, itself or through its " \
	"ancestors; above 0 flags the version\"}"
#define S_LINEAGE /* a row of the model_lineage view */                                                                                                                                                                                                    \
	API_OBJECT(                                                                                                                                                                                                                                        \
		"\"model\":" API_STR ",\"version\":" API_INT ",\"version_id\":" API_INT ",\"sha256\":" API_SHA256                                                                                                                                          \
		",\"size\":" API_INT ",\"created_at\":" API_TIME                                                                                                                                                                                           \
		",\"run_id\":" API_NULL("integer") ",\"pipeline\":" API_NULL("string") ",\"dataset_id\":" API_NULL("integer") ",\"dataset_manifest\":" API_NULL("string") ",\"dataset_sketches\":" API_NULL("integer") ",\"dataset_paintings\":" API_NULL( \
			"integer") ",\"parent_version\":" API_NULL("integer") ",\"metrics\":" API_NULL("object") ",\"verdict\":" API_NULL("object") ",\"withdrawn_sketches\":" S_WITHDRAWN_COUNT                                                           \
																		    ",\"channels\":{\"type\":\"array\",\"nullable\":true,\"items\":" API_STR                               \
																		    "}")
#define P_MODEL "\"name\":{\"type\":\"string\",\"description\":\"the model's name\"}"
#define P_VERSION "\"version\":{\"type\":\"integer\",\"minimum\":1}"

const struct http_route registry_routes[] = {
	{"GET", "/v1/models", get_models, ROLE_ANY, "models with their channels", .op = "listModels", .tag = "registry",
	 .reply = HTTP_JSON(API_OBJECT("\"models\":" API_ARRAY(API_OBJECT(
		 "\"name\":" API_STR ",\"versions\":" API_INT ",\"channels\":{\"type\":\"object\",\"nullable\":true,"
		 "\"description\":\"channel -> version\",\"additionalProperties\":" API_INT "}"))))},
	{"GET", "/v1/models/{name}/versions", get_versions, ROLE_ANY, "versions with lineage and metrics",
	 .op = "listVersions", .tag = "registry", .params = "{" P_MODEL "}",
	 .reply = HTTP_JSON(API_OBJECT("\"model\":" API_STR ",\"versions\":" API_ARRAY(S_LINEAGE)))},
	{"GET", "/v1/models/{name}/versions/{version}/samples", get_samples, ROLE_ANY,
	 "evaluation gallery: {sketch, style, output, slice, role, image_id} as artifact sha256s", .op = "getSamples",
	 .tag = "registry", .params = "{" P_MODEL "," P_VERSION "}",
	 .reply = HTTP_JSON(API_OBJECT("\"model\":" API_STR ",\"version\":" API_INT
				       ",\"samples\":" API_ARRAY(API_OBJ) ",\"evaluation\":" API_NULL("object")))},
	{"GET", "/v1/models/{name}/versions/{version}", get_version, ROLE_ANY,
	 "one version: lineage (run, dataset, ancestors), metrics, verdict", .op = "getVersion", .tag = "registry",
	 .params = "{" P_MODEL "," P_VERSION "}",
	 .reply = HTTP_JSON(API_OBJECT("\"version\":" S_LINEAGE ",\"config\":" API_NULL(
		 "object") ",\"ancestors\":{\"type\":\"array\","
			   "\"nullable\":true,\"description\":\"parent versions, nearest first\",\"items\":" API_INT "}"
			   ",\"run\":{\"type\":\"object\",\"nullable\":true,\"allOf\":[" API_RUN
			   "]},\"dataset\":{\"type\":\"object\",\"nullable\":true,"
			   "\"properties\":{\"id\":" API_INT ",\"manifest_sha256\":" API_SHA256 ",\"sketches\":" API_INT
			   ",\"paintings\":" API_INT ",\"created_at\":" API_TIME "}}"))},
	{"GET", "/v1/models/{name}/ledger", get_ledger, ROLE_ANY, "the append-only promotion ledger", .op = "getLedger",
	 .tag = "registry", .params = "{" P_MODEL "}",
	 .reply = HTTP_JSON(API_OBJECT("\"model\":" API_STR ",\"ledger\":" API_ARRAY(API_OBJECT(
		 "\"id\":" API_INT ",\"channel\":" API_STR ",\"from\":" API_NULL("integer") ",\"to\":" API_NULL(
			 "integer") ",\"kind\":" API_STR ",\"actor\":" API_STR
				    ",\"reason\":" API_NULL("string") ",\"run\":" API_NULL(
					    "integer") ",\"at\":" API_TIME))))},
	{"POST", "/v1/models/{name}/channels/{channel}", post_channel, ROLE_OPERATOR,
	 "promote {version: N} or roll back {action: rollback}", .op = "moveChannel", .tag = "registry",
	 .params = "{" P_MODEL ",\"channel\":{\"type\":\"string\",\"enum\":[\"canary\",\"production\"]}}",
	 .body = HTTP_JSON(
		 "{\"type\":\"object\",\"properties\":{\"action\":{\"type\":\"string\",\"enum\":[\"promote\","
		 "\"rollback\"],\"default\":\"promote\"},\"version\":{\"type\":\"integer\",\"minimum\":1,"
		 "\"description\":\"the version to promote (needed for a promote, refused with a rollback)\"},"
		 "\"reason\":{\"type\":\"string\",\"maxLength\":1000,\"description\":\"recorded in the ledger\"},"
		 "\"force\":{\"type\":\"boolean\",\"default\":false,"
		 "\"description\":\"promote a version whose gate failed (the ledger's reason says so)\"}},"
		 "\"additionalProperties\":false}"),
	 .reply = HTTP_JSON(API_OBJECT("\"model\":" API_STR ",\"channel\":" API_STR ",\"moved\":" API_BOOL
				       ",\"from\":" API_NULL("integer") ",\"to\":" API_NULL("integer")))},
};
const size_t registry_nroutes = sizeof registry_routes / sizeof registry_routes[0];
