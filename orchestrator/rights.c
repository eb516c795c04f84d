/*
 * rights.c — the routes of rights.h. Every reply is built in SQL
 * (api_reply_sql_json); withdrawal is atelier_withdraw_sketches(), so the
 * status, the pixels, the audit row and the trigger's NOTIFY change in one
 * statement whichever route asked.
 *
 * A receipt comes in the X-Atelier-Receipt header (a URL ends up in logs);
 * only its sha256 is looked up. A malformed receipt and an unknown one get the
 * same 404: the reply says nothing about which receipts exist. The audit
 * names a receipt by the first 12 hex digits of its hash, an operator by the
 * token's name.
 */
#include "rights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "fsutil.h"
#include "receipt.h"

#define WITHDRAW_MAX_IDS 1000

/* The receipt's hash into sha and the audit's actor; replies 404 and returns
 * < 0 when there is none or it is malformed. */
static int receipt_of(http_req_t *req, uint8_t sha[32], char actor[32])
{
	if (receipt_of_request(req, "sketch", NULL, sha) < 0)
		return AT_ENOTFOUND;
	char hex[65];
	at_hex_encode(hex, sha, 32);
	snprintf(actor, 32, "receipt:%.12s", hex);
	return 0;
}

static void get_by_receipt(http_req_t *req)
{
	uint8_t sha[32];
	char actor[32];
	if (receipt_of(req, sha, actor) < 0)
		return;
	struct db_params p;
	db_params_init(&p);
	db_param_bin(&p, sha, 32);
	api_reply_sql_json(req,
			   "SELECT json_build_object('kind', 'sketch', 'id', id, 'status', status, 'created_at', "
			   "created_at, 'deleted_at', deleted_at)::text FROM images "
			   "WHERE receipt_sha256 = $1 AND domain = 'sketch' ORDER BY id LIMIT 1",
			   &p, "no sketch has this receipt");
}

static void delete_by_receipt(http_req_t *req)
{
	uint8_t sha[32];
	char actor[32];
	if (receipt_of(req, sha, actor) < 0)
		return;
	struct db_params p;
	db_params_init(&p);
	db_param_bin(&p, sha, 32);
	db_param_text(&p, actor);
	api_reply_sql_json(req,
			   "SELECT json_build_object('kind', 'sketch', 'id', t.id, 'status', 'deleted', 'withdrawn', "
			   "w.n > 0)::text FROM (SELECT id FROM images WHERE receipt_sha256 = $1 AND domain = 'sketch' "
			   "ORDER BY id LIMIT 1) t, LATERAL (SELECT count(*) AS n FROM "
			   "atelier_withdraw_sketches(ARRAY[t.id], $2, 'receipt')) w",
			   &p, "no sketch has this receipt");
}

/* The token's name, as the promotion ledger names it; a token made without
 * one by its id. */
static void operator_actor(http_req_t *req, char actor[80])
{
	const char *who = http_req_principal(req);
	if (who[0])
		snprintf(actor, 80, "operator:%.60s", who);
	else
		snprintf(actor, 80, "operator:token#%lld", (long long)http_req_token_id(req));
}

static void delete_sketch(http_req_t *req)
{
	long long id = api_positive_id(req, http_req_param(req, "id"), "id");
	if (!id)
		return;
	char ids[32], actor[80];
	snprintf(ids, sizeof ids, "{%lld}", id);
	operator_actor(req, actor);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, ids);
	db_param_text(&p, actor);
	api_reply_sql_json(req,
			   "SELECT json_build_object('kind', 'sketch', 'id', t.id, 'status', 'deleted', 'withdrawn', "
			   "w.n > 0)::text FROM (SELECT id FROM images WHERE id = ($1::bigint[])[1] AND domain = "
			   "'sketch') t, LATERAL (SELECT count(*) AS n FROM "
			   "atelier_withdraw_sketches(ARRAY[t.id], $2, 'id')) w",
			   &p, "no such sketch");
}

/* {"ids": [..]} or {"contributor": NAME}, and "dry_run". The ids go to
 * PostgreSQL as one bigint[] literal built from checked integers. */
static void post_withdraw(http_req_t *req)
{
	json_t *body = http_req_json_body(req);
	if (!body)
		return;
	json_t *ids = json_object_get(body, "ids");
	json_t *who = json_object_get(body, "contributor");
	json_t *dry = json_object_get(body, "dry_run");
	struct at_buf arr;
	at_buf_init(&arr, 0);
	const char *fail = NULL, *field = NULL;
	if ((ids != NULL) == (who != NULL)) {
		fail = "give either ids (a list of sketch ids) or contributor (a name)", field = "ids";
	} else if (dry && !json_is_boolean(dry)) {
		fail = "dry_run must be a boolean", field = "dry_run";
	} else if (who && (!json_is_string(who) || json_string_length(who) < 1 || json_string_length(who) > 128)) {
		fail = "contributor must be a name of 1 to 128 bytes", field = "contributor";
	} else if (ids &&
		   (!json_is_array(ids) || json_array_size(ids) < 1 || json_array_size(ids) > WITHDRAW_MAX_IDS)) {
		fail = "ids must be a list of 1 to 1000 sketch ids", field = "ids";
	}
	int rc = at_buf_addstr(&arr, "{");
	size_t i;
	json_t *v;
	json_array_foreach(fail ? NULL : ids, i, v)
	{
		if (!json_is_integer(v) || json_integer_value(v) < 1) {
			fail = "ids must be positive integers", field = "ids";
			break;
		}
		if (rc == 0)
			rc = at_buf_printf(&arr, "%s%lld", i ? "," : "", (long long)json_integer_value(v));
	}
	if (rc == 0)
		rc = at_buf_addstr(&arr, "}");
	if (fail || rc < 0) {
		if (fail)
			http_reply_err(req, AT_EUNPROCESSABLE, fail, json_pack("{ss}", "field", field));
		else
			http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
		at_buf_free(&arr);
		json_decref(body);
		return;
	}
	char actor[80];
	operator_actor(req, actor);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, ids ? arr.data : NULL);
	db_param_text(&p, who ? json_string_value(who) : NULL);
	db_param_text(&p, actor);
	db_param_text(&p, ids ? "id" : "contributor");
	/* sel: what matches and is not withdrawn yet; the dry run lists it, the
	 * real one withdraws it and lists what atelier_withdraw_sketches took */
	const char *sql =
		json_is_true(dry)
			? "WITH sel AS (SELECT id FROM images WHERE domain = 'sketch' AND status <> 'deleted' AND "
			  "(id = ANY ($1::bigint[]) OR contributor = $2) AND $3::text IS NOT NULL AND $4::text IS NOT "
			  "NULL) "
			  "SELECT json_build_object('dry_run', true, 'sketches', coalesce((SELECT json_agg("
			  "json_build_object('id', i.id, 'status', i.status, 'contributor', i.contributor, 'created_at', "
			  "i.created_at) ORDER BY i.id) FROM images i JOIN sel ON sel.id = i.id), '[]'), 'not_found', "
			  "coalesce((SELECT json_agg(x ORDER BY x) FROM unnest($1::bigint[]) x WHERE NOT EXISTS (SELECT "
			  "1 FROM images WHERE id = x AND domain = 'sketch')), '[]'))::text"
			: "WITH sel AS (SELECT id FROM images WHERE domain = 'sketch' AND status <> 'deleted' AND "
			  "(id = ANY ($1::bigint[]) OR contributor = $2)), "
			  "w AS (SELECT * FROM atelier_withdraw_sketches(ARRAY(SELECT id FROM sel), $3, $4) AS id) "
			  "SELECT json_build_object('dry_run', false, 'sketches', coalesce((SELECT json_agg("
			  "json_build_object('id', i.id, 'status', 'deleted', 'contributor', i.contributor, "
			  "'created_at', i.created_at) ORDER BY i.id) FROM images i JOIN w ON w.id = i.id), '[]'), "
			  "'not_found', coalesce((SELECT json_agg(x ORDER BY x) FROM unnest($1::bigint[]) x WHERE NOT "
			  "EXISTS (SELECT 1 FROM images WHERE id = x AND domain = 'sketch')), '[]'))::text";
	api_reply_sql_json(req, sql, &p, "nothing to withdraw");
	at_buf_free(&arr);
	json_decref(body);
}

static void get_lineage(http_req_t *req)
{
	long long id = api_positive_id(req, http_req_param(req, "id"), "id");
	if (!id)
		return;
	char ids[32];
	snprintf(ids, sizeof ids, "%lld", id);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, ids);
	api_reply_sql_json(
		req,
		"SELECT json_build_object('sketch', json_build_object('id', i.id, 'status', i.status, 'split', i.split, "
		"'contributor', i.contributor, 'created_at', i.created_at, 'deleted_at', i.deleted_at), "
		"'datasets', coalesce((SELECT json_agg(json_build_object('id', d.id, 'pipeline', d.pipeline, "
		"'run_id', d.run_id, 'role', x.role, 'created_at', d.created_at) ORDER BY d.id, x.role) FROM "
		"(SELECT dataset_id, 'train' AS role FROM dataset_members WHERE image_id = i.id UNION ALL "
		"SELECT dataset_id, 'holdout' FROM dataset_holdout WHERE image_id = i.id) x "
		"JOIN datasets d ON d.id = x.dataset_id), '[]'), "
		"'versions', coalesce((SELECT json_agg(json_build_object('model', v.model, 'version', v.version, "
		"'version_id', v.id, 'dataset_id', v.dataset_id, 'direct', s.direct, 'channels', "
		"(SELECT coalesce(json_agg(c.channel ORDER BY c.channel), '[]') FROM channels c "
		"WHERE c.version_id = v.id), 'created_at', v.created_at) ORDER BY v.model, v.version) "
		"FROM atelier_sketch_versions(i.id) s JOIN model_versions v ON v.id = s.version_id), '[]'))::text "
		"FROM images i WHERE i.id = $1::bigint AND i.domain = 'sketch'",
		&p, "no such sketch");
}

/* ---- the route table ---- */

#define P_RECEIPT                                                                                          \
	"{\"X-Atelier-Receipt\":{\"type\":\"string\",\"pattern\":\"^[A-Za-z0-9_-]{43}$\",\"description\":" \
	"\"the receipt POST /api/contribute returned (base64url, 43 characters)\"}}"
#define S_STATUS "{\"type\":\"string\",\"enum\":[\"accepted\",\"rejected\",\"deleted\"]}"
#define S_WITHDRAWN                                                                                              \
	HTTP_JSON(API_OBJECT("\"kind\":{\"type\":\"string\",\"enum\":[\"sketch\"]},\"id\":" API_INT              \
			     ",\"status\":{\"type\":\"string\",\"enum\":[\"deleted\"]},\"withdrawn\":{\"type\":" \
			     "\"boolean\",\"description\":\"false: it was withdrawn before (nothing changed now)\"}"))
#define S_SKETCH_ROW                                         \
	API_OBJECT("\"id\":" API_INT ",\"status\":" S_STATUS \
		   ",\"contributor\":" API_NULL("string") ",\"created_at\":" API_TIME)

const struct http_route rights_routes[] = {
	{"GET", "/v1/sketches/by-receipt", get_by_receipt, ROLE_NODE | ROLE_OPERATOR,
	 "the status of the sketch a receipt names (X-Atelier-Receipt header; a serving node forwards it)",
	 .op = "getSketchByReceipt", .tag = "rights", .params = P_RECEIPT,
	 .reply = HTTP_JSON(API_OBJECT("\"kind\":{\"type\":\"string\",\"enum\":[\"sketch\"]},\"id\":" API_INT
				       ",\"status\":" S_STATUS ",\"created_at\":" API_TIME
				       ",\"deleted_at\":" API_NULL_TIME))},
	{"DELETE", "/v1/sketches/by-receipt", delete_by_receipt, ROLE_NODE | ROLE_OPERATOR,
	 "withdraw the sketch a receipt names: status deleted, pixels removed, audited; a wrong receipt is 404 and "
	 "deletes nothing",
	 .op = "withdrawSketchByReceipt", .tag = "rights", .params = P_RECEIPT, .reply = S_WITHDRAWN},
	{"POST", "/v1/sketches/withdraw", post_withdraw, ROLE_OPERATOR,
	 "withdraw sketches by id or by contributor name {ids | contributor, dry_run}", .op = "withdrawSketches",
	 .tag = "rights",
	 .body = HTTP_JSON("{\"type\":\"object\",\"properties\":{\"ids\":{\"type\":\"array\",\"minItems\":1,"
			   "\"maxItems\":1000,\"items\":" API_ID
			   "},\"contributor\":{\"type\":\"string\",\"minLength\":1,"
			   "\"maxLength\":128},\"dry_run\":{\"type\":\"boolean\",\"description\":\"list what would be "
			   "withdrawn, change nothing\"}}}"),
	 .reply = HTTP_JSON(API_OBJECT("\"dry_run\":" API_BOOL
				       ",\"sketches\":" API_ARRAY(S_SKETCH_ROW) ",\"not_found\":" API_ARRAY(API_INT)))},
	{"DELETE", "/v1/sketches/{id}", delete_sketch, ROLE_OPERATOR,
	 "withdraw one sketch (status deleted, pixels removed, audited)", .op = "withdrawSketch", .tag = "rights",
	 .params = "{\"id\":" API_ID "}", .reply = S_WITHDRAWN},
	{"GET", "/v1/sketches/{id}/lineage", get_lineage, ROLE_OPERATOR,
	 "the datasets that held a sketch and the model versions that trained on it (or descend from one that did)",
	 .op = "getSketchLineage", .tag = "rights", .params = "{\"id\":" API_ID "}",
	 .reply = HTTP_JSON(API_OBJECT(
		 "\"sketch\":" API_OBJECT("\"id\":" API_INT ",\"status\":" S_STATUS ",\"split\":" API_STR ",\"contributor\":" API_NULL("string") ",\"created_at\":" API_TIME ",\"deleted_at\":" API_NULL_TIME) ",\"datasets\":" API_ARRAY(
			 API_OBJECT("\"id\":" API_INT ",\"pipeline\":" API_NULL("string") ",\"run_id\":" API_NULL(
				 "integer") ",\"role\":{\"type\":\"string\",\"enum\":[\"train\",\"holdout\"]},"
					    "\"created_at\":" API_TIME)) ",\"versions\":" API_ARRAY(API_OBJECT("\"model\":" API_STR
													       ",\"version\":" API_INT
													       ",\"version_id\":" API_INT
													       ",\"dataset_id\":" API_NULL(
														       "integer") ",\"direct\":{\"type\":\"boolean\","
																  "\"description\":\"trained on a dataset that held it (false: descends "
																  "from a version that did)\"},\"channels\":" API_ARRAY(
																	  API_STR) ",\"created_at\":" API_TIME))))},
};
const size_t rights_nroutes = sizeof rights_routes / sizeof rights_routes[0];
