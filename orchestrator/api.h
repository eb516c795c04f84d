/*
 * api.h — small helpers shared by atelierd's HTTP handlers.
 */
#ifndef ATELIERD_API_H
#define ATELIERD_API_H

#include "app.h"

/* Run sql (one row, one text column holding JSON) and reply with it: 200 with
 * the JSON, 404 {"error": not_found} when no row or NULL, 503 when the database
 * is unavailable, 400 when PostgreSQL rejects a parameter (bad input syntax). */
void api_reply_sql_json(http_req_t *req, const char *sql, const struct db_params *params, const char *not_found);

/* Parse a positive integer path/query value; on failure replies 400 naming
 * what and returns 0. */
long long api_positive_id(http_req_t *req, const char *value, const char *what);

#endif
