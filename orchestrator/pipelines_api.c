/*
 * pipelines_api.c — HTTP handlers for pipelines, runs, and the event stream.
 *
 *   POST /v1/pipelines              apply YAML (parsed on the threadpool)
 *   GET  /v1/pipelines[/{name}]      list / show with history
 *   POST /v1/pipelines/{name}/runs   manual trigger
 *   GET  /v1/runs[/{id}]             list with filters / show with jobs
 *   POST /v1/runs/{id}/cancel
 *   GET  /v1/runs/{id}/metrics       loss curves etc.
 *   GET  /v1/events                  Server-Sent Events of run state changes (the hub: events.c)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "events.h"
#include "log.h"
#include "pipeline.h"
#include "pipeline_yaml.h"
#include "pipelines_api.h"

/* ---- apply ---- */

struct apply {
	uv_work_t work;
	http_req_t *req;
	struct app *app;
	char *filename;
	char *yaml;
	size_t len;
	int rc;
	struct pipeline_error err;
	char *name;
	char *canonical;
	char hash[65];
};

static void apply_free(struct apply *a)
{
	free(a->filename);
	free(a->yaml);
	free(a->name);
	free(a->canonical);
	free(a);
}

static void apply_work(uv_work_t *w)
{
	struct apply *a = w->data;
	pipeline_t *p = NULL;
	a->rc = pipeline_yaml_parse(a->filename, a->yaml, a->len, &p, &a->err);
	if (a->rc < 0)
		return;
	struct at_buf b;
	at_buf_init(&b, 0);
	a->rc = pipeline_to_canonical(p, &b);
	if (a->rc == 0)
		a->rc = pipeline_hash(p, a->hash);
	if (a->rc == 0) {
		a->canonical = at_buf_steal(&b, NULL);
		a->name = strdup(p->name);
	}
	at_buf_free(&b);
	pipeline_free(p);
}

static void apply_stored(void *arg, int status, PGresult *res)
{
	struct apply *a = arg;
	if (status < 0) {
		http_reply_err(a->req, AT_EDB, "could not store the pipeline", NULL);
	} else {
		int created = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
		json_t *o = json_pack("{ss,si,sI,ss,sb}", "pipeline", a->name, "version",
				      (int)strtol(PQgetvalue(res, 0, 1), NULL, 10), "version_id",
				      (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10), "sha256", a->hash,
				      "created", created);
		if (created)
			log_info("pipeline %s: version %s applied", a->name, PQgetvalue(res, 0, 1));
		http_reply_json(a->req, created ? 201 : 200, o);
	}
	apply_free(a);
}

static void apply_parsed(uv_work_t *w, int status)
{
	struct apply *a = w->data;
	if (status < 0 || !http_req_alive(a->req)) {
		http_reply_empty(a->req, HTTP_STATUS_CLIENT_GONE);
		apply_free(a);
		return;
	}
	if (a->rc < 0) {
		json_t *d = json_pack("{ss,si,si,ss}", "file", a->filename, "line", a->err.line, "column",
				      a->err.column, "message", a->err.message);
		/* an expansion bomb is bad content, not a big body: 422 like any invalid pipeline */
		http_reply_err(a->req, AT_EUNPROCESSABLE, a->err.text[0] ? a->err.text : at_strerror(a->rc), d);
		apply_free(a);
		return;
	}
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, a->name);
	db_param_text(&p, a->yaml);
	db_param_text(&p, a->canonical);
	db_param_text(&p, a->hash);
	if (db_query(a->app->db,
		     "SELECT version_id, version, created FROM atelier_apply_pipeline($1, $2, $3::jsonb, $4)", &p,
		     apply_stored, a) < 0) {
		http_reply_err(a->req, AT_EDB, "database unavailable", NULL);
		apply_free(a);
	}
}

static void post_pipeline(http_req_t *req)
{
	size_t len, ctlen = 0;
	const uint8_t *body = http_req_body(req, &len);
	const char *ct = http_req_header(req, "content-type", &ctlen);
	const char *fname = http_req_query(req, "filename");
	struct apply *a = calloc(1, sizeof *a);
	if (!a) {
		http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
		return;
	}
	a->req = req;
	a->app = http_req_app(req);
	if (ct && ctlen >= 16 && strncasecmp(ct, "application/json", 16) == 0) {
		json_t *j = http_req_json_body(req);
		if (!j) {
			free(a);
			return;
		}
		const char *y = json_string_value(json_object_get(j, "yaml"));
		const char *f = json_string_value(json_object_get(j, "filename"));
		if (!y) {
			json_decref(j);
			free(a);
			http_reply_err(req, AT_EUNPROCESSABLE, "JSON body needs a \"yaml\" string",
				       json_pack("{ss}", "field", "yaml"));
			return;
		}
		a->yaml = strdup(y);
		a->len = strlen(y);
		a->filename = strdup(f ? f : fname ? fname : "pipeline.yaml");
		json_decref(j);
	} else {
		a->yaml = malloc(len + 1);
		if (a->yaml) {
			memcpy(a->yaml, body, len);
			a->yaml[len] = 0;
		}
		a->len = len;
		a->filename = strdup(fname ? fname : "pipeline.yaml");
	}
	if (!a->yaml || !a->filename) {
		apply_free(a);
		http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
		return;
	}
	if (memchr(a->yaml, 0, a->len)) {
		apply_free(a);
		http_reply_err(req, AT_EUNPROCESSABLE, "pipeline YAML contains a NUL byte", NULL);
		return;
	}
	a->work.data = a;
	if (uv_queue_work(a->app->loop, &a->work, apply_work, apply_parsed) < 0) {
		apply_free(a);
		http_reply_err(req, AT_EUNAVAILABLE, "cannot schedule parsing", NULL);
	}
}

static void get_pipelines(http_req_t *req)
{
	api_reply_sql_json(
		req,
		"SELECT json_build_object('pipelines', coalesce(json_agg(json_build_object("
		"'name', p.name, 'version', v.version, 'version_id', v.id, 'sha256', v.sha256, "
		"'model', v.parsed->>'model', 'triggers', v.parsed->'triggers', 'updated_at', p.updated_at, "
		"'last_run', (SELECT json_build_object('id', r.id, 'state', r.state, 'created_at', r.created_at) "
		"  FROM runs r WHERE r.pipeline = p.name ORDER BY r.id DESC LIMIT 1)) ORDER BY p.name), '[]'))::text "
		"FROM pipelines p JOIN pipeline_versions v ON v.id = p.current_version_id",
		NULL, "no pipelines");
}

static void get_pipeline(http_req_t *req)
{
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, http_req_param(req, "name"));
	api_reply_sql_json(
		req,
		"SELECT json_build_object('name', p.name, 'current', json_build_object('version', v.version, "
		"'version_id', v.id, 'sha256', v.sha256, 'yaml', v.yaml, 'parsed', v.parsed, 'created_at', v.created_at), "
		"'history', (SELECT json_agg(json_build_object('version', h.version, 'version_id', h.id, "
		"'sha256', h.sha256, 'created_at', h.created_at) ORDER BY h.version DESC) "
		"FROM pipeline_versions h WHERE h.pipeline = p.name))::text "
		"FROM pipelines p JOIN pipeline_versions v ON v.id = p.current_version_id WHERE p.name = $1",
		&p, "no such pipeline");
}

/* ---- runs ---- */

struct trigger {
	http_req_t *req;
	char name[128];
};

static void run_created(void *arg, int status, PGresult *res)
{
	struct trigger *t = arg;
	if (status == AT_EDB && strcmp(db_sqlstate(res), "P0002") == 0)
		http_reply_err(t->req, AT_ENOTFOUND, "no such pipeline", json_pack("{ss}", "pipeline", t->name));
	else if (status < 0)
		http_reply_err(t->req, AT_EDB, "could not create the run", NULL);
	else {
		int coalesced = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
		http_reply_json(t->req, coalesced ? 200 : 201,
				json_pack("{sI,ss,sb}", "run", (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10),
					  "pipeline", t->name, "coalesced", coalesced));
	}
	free(t);
}

static void manual_checked(void *arg, int status, PGresult *res)
{
	struct trigger *t = arg;
	struct app *app = http_req_app(t->req);
	if (status < 0) {
		http_reply_err(t->req, AT_EDB, "database unavailable", NULL);
		free(t);
		return;
	}
	if (PQntuples(res) == 0) {
		http_reply_err(t->req, AT_ENOTFOUND, "no such pipeline", json_pack("{ss}", "pipeline", t->name));
		free(t);
		return;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "f") == 0) {
		http_reply_err(t->req, AT_ECONFLICT,
			       "this pipeline does not allow manual runs (triggers.manual: false)",
			       json_pack("{ss}", "pipeline", t->name));
		free(t);
		return;
	}
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, t->name);
	if (db_query(app->db, "SELECT run_id, coalesced FROM atelier_create_run($1, 'manual')", &p, run_created, t) <
	    0) {
		http_reply_err(t->req, AT_EDB, "database unavailable", NULL);
		free(t);
	}
}

static void post_run(http_req_t *req)
{
	struct app *app = http_req_app(req);
	struct trigger *t = calloc(1, sizeof *t);
	if (!t) {
		http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
		return;
	}
	t->req = req;
	snprintf(t->name, sizeof t->name, "%s", http_req_param(req, "name"));
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, t->name);
	if (db_query(app->db,
		     "SELECT coalesce((v.parsed->'triggers'->>'manual')::boolean, true) FROM pipelines p "
		     "JOIN pipeline_versions v ON v.id = p.current_version_id WHERE p.name = $1",
		     &p, manual_checked, t) < 0) {
		http_reply_err(req, AT_EDB, "database unavailable", NULL);
		free(t);
	}
}

static const char *const run_states[] = {"queued", "running", "succeeded", "failed", "cancelled", "skipped"};

static void get_runs(http_req_t *req)
{
	const char *pipeline = http_req_query(req, "pipeline");
	const char *state = http_req_query(req, "state");
	const char *since = http_req_query(req, "since");
	const char *before = http_req_query(req, "before");
	const char *limit = http_req_query(req, "limit");
	if (state) {
		int ok = 0;
		for (size_t i = 0; i < sizeof run_states / sizeof run_states[0]; i++)
			ok |= strcmp(state, run_states[i]) == 0;
		if (!ok) {
			http_reply_err(req, AT_EINVAL,
				       "state must be one of queued, running, succeeded, failed, cancelled, skipped",
				       json_pack("{ss,ss}", "field", "state", "value", state));
			return;
		}
	}
	int64_t lim = 50;
	if (limit && (http_parse_id(limit, &lim) < 0 || lim > 500)) {
		http_reply_err(req, AT_ERANGE, "limit must be 1..500", json_pack("{ss}", "field", "limit"));
		return;
	}
	if (before && !api_positive_id(req, before, "before"))
		return;
	char lims[24];
	snprintf(lims, sizeof lims, "%lld", (long long)lim);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, pipeline);
	db_param_text(&p, state);
	db_param_text(&p, since);
	db_param_text(&p, before);
	db_param_text(&p, lims);
	api_reply_sql_json(
		req,
		"SELECT json_build_object('runs', coalesce(json_agg(row_to_json(s) ORDER BY s.run_id DESC), '[]'), "
		"'next_before', CASE WHEN count(*) = $5::int THEN min(s.run_id) END)::text FROM ("
		"SELECT * FROM run_status WHERE ($1::text IS NULL OR pipeline = $1) AND ($2::text IS NULL OR state = $2) "
		"AND ($3::timestamptz IS NULL OR created_at >= $3) AND ($4::bigint IS NULL OR run_id < $4) "
		"ORDER BY run_id DESC LIMIT $5::int) s",
		&p, "no runs");
}

/* Parameters starting with the run id from the path ($1); 0 after replying 400. */
static int run_id_params(http_req_t *req, struct db_params *p)
{
	if (!api_positive_id(req, http_req_param(req, "id"), "id"))
		return 0;
	db_params_init(p);
	db_param_text(p, http_req_param(req, "id"));
	return 1;
}

static void get_run(http_req_t *req)
{
	struct db_params p;
	if (!run_id_params(req, &p))
		return;
	api_reply_sql_json(
		req,
		"SELECT json_build_object('run', row_to_json(s), "
		"'stages', (SELECT json_agg(k ORDER BY k) FROM runs r JOIN pipeline_versions v ON v.id = r.pipeline_version_id, "
		"  jsonb_object_keys(v.parsed->'stages') k WHERE r.id = s.run_id), "
		"'jobs', (SELECT coalesce(json_agg(json_build_object('id', j.id, 'stage', j.stage, 'kind', j.kind, "
		"'state', j.state, 'attempts', j.attempts, 'max_attempts', j.max_attempts, 'worker', j.worker, "
		"'progress', j.progress, 'message', j.progress_msg, 'eta_seconds', j.eta_seconds, "
		"'created_at', j.created_at, 'started_at', j.started_at, 'finished_at', j.finished_at, "
		"'run_after', j.run_after, 'error', j.error, 'result', j.result, 'cancel_requested', j.cancel_requested, "
		"'cache_key', j.cache_key, 'cached_from', (SELECT json_build_object('job', src.id, 'run', src.run_id, "
		"'stage', src.stage) FROM jobs src WHERE src.id = j.cached_from)) "
		"ORDER BY j.id), '[]') FROM jobs j WHERE j.run_id = s.run_id))::text "
		"FROM run_status s WHERE s.run_id = $1::bigint",
		&p, "no such run");
}

static void post_cancel(http_req_t *req)
{
	struct db_params p;
	if (!run_id_params(req, &p))
		return;
	api_reply_sql_json(
		req,
		"SELECT json_build_object('run', $1::bigint, 'state', s)::text FROM atelier_cancel($1::bigint) s "
		"WHERE s IS NOT NULL",
		&p, "no such run");
}

static void get_run_metrics(http_req_t *req)
{
	struct db_params p;
	if (!run_id_params(req, &p))
		return;
	db_param_text(&p, http_req_query(req, "name"));
	api_reply_sql_json(
		req,
		"SELECT json_build_object('run', $1::bigint, 'series', coalesce((SELECT json_object_agg(name, pts) "
		"FROM (SELECT m.name, json_agg(json_build_array(m.step, m.value) ORDER BY m.step) pts "
		"FROM metrics m JOIN jobs j ON j.id = m.job_id WHERE j.run_id = $1::bigint "
		"AND ($2::text IS NULL OR m.name = $2) GROUP BY m.name) x), '{}'))::text "
		"WHERE EXISTS (SELECT 1 FROM runs WHERE id = $1::bigint)",
		&p, "no such run");
}

/* ---- events ---- */

static void get_events(http_req_t *req)
{
	struct app *app = http_req_app(req);
	const char *run = http_req_query(req, "run");
	long long run_id = 0;
	if (run && !(run_id = api_positive_id(req, run, "run")))
		return;
	events_subscribe(app->events, req, run_id);
}

/* Reply shapes for the OpenAPI document (what the SQL above builds). */
#define S_APPLIED                                                                                       \
	HTTP_JSON(API_OBJECT("\"pipeline\":" API_STR ",\"version\":" API_INT ",\"version_id\":" API_INT \
			     ",\"sha256\":" API_STR ",\"created\":" API_BOOL))
#define S_RUN_CREATED HTTP_JSON(API_OBJECT("\"run\":" API_INT ",\"pipeline\":" API_STR ",\"coalesced\":" API_BOOL))
#define S_JOB                                                                                                                                                    \
	API_OBJECT(                                                                                                                                              \
		"\"id\":" API_INT ",\"stage\":" API_STR ",\"kind\":" API_STR ",\"state\":" API_STR                                                               \
		",\"attempts\":" API_INT ",\"max_attempts\":" API_INT                                                                                            \
		",\"worker\":" API_NULL("string") ",\"progress\":" API_NULL("number") ",\"message\":" API_NULL("string") ",\"eta_seconds\":" API_NULL(           \
			"number") ",\"created_at\":" API_TIME ",\"started_at\":" API_NULL_TIME                                                                   \
				  ",\"finished_at\":" API_NULL_TIME ",\"run_after\":" API_NULL_TIME                                                              \
				  ",\"error\":" API_NULL("string") ",\"result\":" API_NULL(                                                                      \
					  "object") ",\"cancel_requested\":" API_BOOL                                                                            \
						    ",\"cache_key\":" API_NULL(                                                                                  \
							    "string") ",\"cached_from\":{\"type\":\"object\",\"nullable\":true,\"properties\":{\"job\":" API_INT \
								      ",\"run\":" API_INT ",\"stage\":" API_STR "}}")
#define P_RUN_ID "\"id\":" API_ID

const struct http_route pipelines_api_routes[] = {
	{"POST", "/v1/pipelines", post_pipeline, ROLE_OPERATOR,
	 "apply pipeline YAML (body: YAML, or JSON {yaml, filename}); same content = no new version",
	 .op = "applyPipeline", .tag = "pipelines",
	 .params =
		 "{\"filename\":{\"type\":\"string\",\"description\":\"named in parse errors (default pipeline.yaml)\"}}",
	 .body = "{\"application/yaml\":" HTTP_TEXT
		 ",\"application/json\":{\"type\":\"object\",\"required\":[\"yaml\"],"
		 "\"properties\":{\"yaml\":" API_STR ",\"filename\":" API_STR "}}}",
	 .status = 201, .reply = S_APPLIED,
	 .replies = "{\"200\":{\"description\":\"the same content as the current version: no new version\","
		    "\"content\":" S_APPLIED "}}"},
	{"GET", "/v1/pipelines", get_pipelines, ROLE_ANY, "list pipelines with their current version and last run",
	 .op = "listPipelines", .tag = "pipelines",
	 .reply = HTTP_JSON(API_OBJECT("\"pipelines\":" API_ARRAY(API_OBJECT(
		 "\"name\":" API_STR ",\"version\":" API_INT ",\"version_id\":" API_INT ",\"sha256\":" API_STR
		 ",\"model\":" API_NULL("string") ",\"triggers\":" API_NULL(
			 "object") ",\"updated_at\":" API_TIME
				   ",\"last_run\":{\"type\":\"object\",\"nullable\":true,\"properties\":{\"id\":" API_INT
				   ",\"state\":" API_STR ",\"created_at\":" API_TIME "}}"))))},
	{"GET", "/v1/pipelines/{name}", get_pipeline, ROLE_ANY,
	 "a pipeline: current version (YAML, parsed) and history", .op = "getPipeline", .tag = "pipelines",
	 .reply = HTTP_JSON(API_OBJECT("\"name\":" API_STR ",\"current\":" API_OBJECT(
		 "\"version\":" API_INT ",\"version_id\":" API_INT ",\"sha256\":" API_STR ",\"yaml\":" API_STR
		 ",\"parsed\":" API_OBJ
		 ",\"created_at\":" API_TIME) ",\"history\":" API_ARRAY(API_OBJECT("\"version\":" API_INT
										   ",\"version_id\":" API_INT
										   ",\"sha256\":" API_STR
										   ",\"created_at\":" API_TIME))))},
	{"POST", "/v1/pipelines/{name}/runs", post_run, ROLE_OPERATOR, "start a run now (manual trigger)",
	 .op = "startRun", .tag = "pipelines", .status = 201, .reply = S_RUN_CREATED,
	 .replies = "{\"200\":{\"description\":\"a queued run of the pipeline took this trigger (coalesced: true)\","
		    "\"content\":" S_RUN_CREATED "}}"},
	{"GET", "/v1/runs", get_runs, ROLE_ANY, "runs; filters: pipeline, state, since, before (id cursor), limit",
	 .op = "listRuns", .tag = "pipelines",
	 .params = "{\"pipeline\":" API_STR ",\"state\":{\"type\":\"string\",\"enum\":" API_RUN_STATES "},"
		   "\"since\":{\"type\":\"string\",\"description\":\"runs created at or after this time (PostgreSQL "
		   "timestamptz input)\"},\"before\":{\"type\":\"integer\",\"format\":\"int64\",\"minimum\":1,"
		   "\"description\":\"runs with a smaller id: the previous page's next_before\"},"
		   "\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":500,\"default\":50}}",
	 .reply = HTTP_JSON(API_OBJECT("\"runs\":" API_ARRAY(
		 API_RUN) ",\"next_before\":{\"type\":\"integer\","
			  "\"nullable\":true,\"description\":\"the cursor for the next page; null: last page\"}"))},
	{"GET", "/v1/runs/{id}", get_run, ROLE_ANY, "a run with its stages and jobs (attempts, worker, progress)",
	 .op = "getRun", .tag = "pipelines", .params = "{" P_RUN_ID "}",
	 .reply = HTTP_JSON(API_OBJECT("\"run\":" API_RUN
				       ",\"stages\":{\"type\":\"array\",\"nullable\":true,\"items\":" API_STR
				       "},\"jobs\":" API_ARRAY(S_JOB)))},
	{"POST", "/v1/runs/{id}/cancel", post_cancel, ROLE_OPERATOR,
	 "cancel a run (running jobs stop at next heartbeat)", .op = "cancelRun", .tag = "pipelines",
	 .params = "{" P_RUN_ID "}", .reply = HTTP_JSON(API_OBJECT("\"run\":" API_INT ",\"state\":" API_STR))},
	{"GET", "/v1/runs/{id}/metrics", get_run_metrics, ROLE_ANY, "metric series of a run (?name=)",
	 .op = "getRunMetrics", .tag = "pipelines",
	 .params = "{" P_RUN_ID ",\"name\":{\"type\":\"string\",\"description\":\"only this series\"}}",
	 .reply = HTTP_JSON(API_OBJECT(
		 "\"run\":" API_INT ",\"series\":{\"type\":\"object\",\"description\":\"series name -> [step, value] "
		 "points in step order\",\"additionalProperties\":" API_ARRAY(
			 "{\"type\":\"array\",\"minItems\":2,\"maxItems\":2,\"items\":" API_NUM "}") "}"))},
	{"GET", "/v1/events", get_events, ROLE_ANY, "Server-Sent Events of run and job state changes (?run=)",
	 .op = "streamEvents", .tag = "pipelines",
	 .params =
		 "{\"run\":{\"type\":\"integer\",\"format\":\"int64\",\"minimum\":1,\"description\":\"only this run's "
		 "events\"}}",
	 .reply = "{\"text/event-stream\":{\"type\":\"string\",\"description\":\"event: NAME / data: JSON\"}}"},
};
const size_t pipelines_api_nroutes = sizeof pipelines_api_routes / sizeof pipelines_api_routes[0];
