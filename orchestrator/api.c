/*
 * api.c — see api.h. Read endpoints build their JSON in SQL (json_build_object)
 * so types and NULLs come out right and the loop only forwards text.
 */
#include "api.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

struct sql_json {
	http_req_t *req;
	char *not_found;
};

static void on_sql_json(void *arg, int status, PGresult *res)
{
	struct sql_json *q = arg;
	if (status == AT_EDB && res) {
		const char *st = db_sqlstate(res);
		api_log_db_error(q->req, res);
		/* class 22 (data exception): a parameter PostgreSQL could not take */
		if (strncmp(st, "22", 2) == 0)
			http_reply_err(q->req, AT_EINVAL, "invalid parameter: a value is out of range or malformed",
				       json_pack("{ss}", "path", http_req_path(q->req)));
		else
			http_reply_err(q->req, AT_EINTERNAL, "query failed", NULL);
	} else if (status < 0) {
		http_reply_err(q->req, AT_EDB, "database unavailable", NULL);
	} else if (PQntuples(res) < 1 || PQgetisnull(res, 0, 0)) {
		http_reply_err(q->req, AT_ENOTFOUND, q->not_found, json_pack("{ss}", "path", http_req_path(q->req)));
	} else {
		size_t len = (size_t)PQgetlength(res, 0, 0);
		char *copy = malloc(len + 1);
		if (!copy) {
			http_reply_err(q->req, AT_ENOMEM, "out of memory", NULL);
		} else {
			memcpy(copy, PQgetvalue(res, 0, 0), len);
			copy[len] = '\n';
			http_reply_owned(q->req, 200, "application/json", copy, len + 1);
		}
	}
	free(q->not_found);
	free(q);
}

void api_log_db_error(http_req_t *req, PGresult *res)
{
	const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	log_warn("api: %s %s: query failed: SQLSTATE %s: %s [%s]", http_req_method(req), http_req_path(req),
		 res ? db_sqlstate(res) : "-", msg ? msg : "connection lost", http_req_id(req));
}

void api_reply_sql_json(http_req_t *req, const char *sql, const struct db_params *params, const char *not_found)
{
	struct app *app = http_req_app(req);
	struct sql_json *q = calloc(1, sizeof *q);
	if (!q || !(q->not_found = strdup(not_found))) {
		free(q);
		http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
		return;
	}
	q->req = req;
	if (db_query(app->db, sql, params, on_sql_json, q) < 0) {
		free(q->not_found);
		free(q);
		http_reply_err(req, AT_EDB, "database unavailable", NULL);
	}
}

long long api_positive_id(http_req_t *req, const char *value, const char *what)
{
	int64_t v;
	if (http_parse_id(value, &v) < 0) {
		http_reply_err(req, AT_EINVAL, "expected a positive integer",
			       json_pack("{ss,ss}", "field", what, "value", value ? value : ""));
		return 0;
	}
	return v;
}
