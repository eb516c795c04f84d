/*
 * api.h — small helpers shared by atelierd's HTTP handlers.
 */
#ifndef ATELIERD_API_H
#define ATELIERD_API_H

#include "app.h"

/* Run sql (one row, one text column holding JSON) and reply with it: 200 with
 * the JSON, 404 {"error": not_found} when no row or NULL, 503 when the database
 * is unavailable, 400 when PostgreSQL rejects a parameter (bad input syntax).
 * PostgreSQL's own error text is logged with the request id, never sent. */
void api_reply_sql_json(http_req_t *req, const char *sql, const struct db_params *params, const char *not_found);

/* PostgreSQL's error text names our tables and types: it goes to the log
 * with the request id (here), the client gets our own words. res may be
 * NULL (the connection was lost). */
void api_log_db_error(http_req_t *req, PGresult *res);

/* Parse a positive integer path/query value strictly (http_parse_id: digits
 * only, 1..INT64_MAX); on failure replies 400 naming what and returns 0. */
long long api_positive_id(http_req_t *req, const char *value, const char *what);

/* ---- JSON schemas for the OpenAPI document (struct http_route's texts) ----
 * Shapes of what the handlers' SQL builds; several routes share them. */
#define API_INT "{\"type\":\"integer\"}"
#define API_NUM "{\"type\":\"number\"}"
#define API_STR "{\"type\":\"string\"}"
#define API_BOOL "{\"type\":\"boolean\"}"
#define API_OBJ "{\"type\":\"object\"}"
#define API_TIME "{\"type\":\"string\",\"format\":\"date-time\"}"
#define API_NULL(type) "{\"type\":\"" type "\",\"nullable\":true}"
#define API_NULL_TIME "{\"type\":\"string\",\"format\":\"date-time\",\"nullable\":true}"
#define API_SHA256 "{\"type\":\"string\",\"pattern\":\"^[0-9a-f]{64}$\"}"
#define API_ID "{\"type\":\"integer\",\"format\":\"int64\",\"minimum\":1}"
#define API_ARRAY(items) "{\"type\":\"array\",\"items\":" items "}"
/* an object with these properties ("\"a\":" API_INT ",\"b\":" ...) */
#define API_OBJECT(props) "{\"type\":\"object\",\"properties\":{" props "}}"
#define API_RUN_STATES "[\"queued\",\"running\",\"succeeded\",\"failed\",\"cancelled\",\"skipped\"]"
/* a row of the run_status view */
#define API_RUN                                                                                                   \
	API_OBJECT("\"run_id\":" API_INT ",\"pipeline\":" API_STR ",\"pipeline_version\":" API_INT                \
		   ",\"state\":{\"type\":\"string\",\"enum\":" API_RUN_STATES "},\"trigger\":" API_STR            \
		   ",\"created_at\":" API_TIME ",\"started_at\":" API_NULL_TIME ",\"finished_at\":" API_NULL_TIME \
		   ",\"seconds\":" API_NUM ",\"stages_total\":" API_INT ",\"stages_succeeded\":" API_INT          \
		   ",\"running_stages\":" API_NULL("string") ",\"progress\":" API_NULL(                           \
			   "number") ",\"error\":" API_NULL("string") ",\"eta_seconds\":" API_NULL("integer"))

#endif
