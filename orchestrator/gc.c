/*
 * gc.c — the artifact store's garbage collection (see gc.h).
 *
 * "Referenced" is decided by the database alone, in one query on the loop
 * (referenced_sql): a model version's export, the newest checkpoint of a
 * train job still queued or running (the one a resumed attempt reads;
 * older steps and the checkpoints of ended jobs are never read again, their
 * rows stay as history), an artifact_refs row (dataset shards, evaluation
 * samples), a dataset manifest, and any sha256 that a job's payload or
 * result names (a queued or cached job may still read a shard that nothing
 * else names). The
 * store is then listed and pruned on the threadpool (blocking I/O), with
 * its own store handle so atelierd's stays the loop's.
 *
 * Writes in flight: an artifact is stored before the row that names it is
 * committed (a train job puts the export, then registers the version), so
 * anything younger than the grace period (default one hour) is kept
 * whatever the database says. One collection runs at a time.
 */
#include "gc.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "app.h"
#include "artifact.h"
#include "log.h"

#define GC_MAX_LISTED 1000 /* items named in the answer; the counts cover all */
#define GC_DEFAULT_GRACE_S 3600

static int gc_running;

struct gc {
	struct app *app;
	http_req_t *req;
	uv_work_t work;
	int dry_run;
	long long grace_s;
	char (*refs)[65]; /* sorted, for bsearch */
	size_t nrefs;
	/* the threadpool's results */
	int rc;
	char why[256];
	long long scanned, referenced, young, removed, failed;
	unsigned long long bytes, kept_bytes;
	json_t *items;
	time_t now;
	struct artifact_store *store;
};

static void gc_free(struct gc *g)
{
	json_decref(g->items);
	free(g->refs);
	free(g);
	gc_running = 0;
}

static int cmp_sha(const void *a, const void *b) { return memcmp(a, b, 64); }

static int on_item(const struct artifact_info *in, void *arg)
{
	struct gc *g = arg;
	g->scanned++;
	if (bsearch(in->sha, g->refs, g->nrefs, sizeof *g->refs, cmp_sha)) {
		g->referenced++;
		g->kept_bytes += in->size;
		return 0;
	}
	long long age = (long long)(g->now - in->mtime);
	if (age < g->grace_s) {
		g->young++;
		g->kept_bytes += in->size;
		return 0;
	}
	if (!g->dry_run) {
		/* a failed delete is counted and the walk goes on: the next gc retries */
		int rc = artifact_delete(g->store, in->sha);
		if (rc < 0) {
			log_warn("gc: cannot remove %s: %s", in->sha, at_strerror(rc));
			g->failed++;
			return 0;
		}
	}
	g->removed++;
	g->bytes += in->size;
	if (json_array_size(g->items) < GC_MAX_LISTED)
		json_array_append_new(g->items, json_pack("{sssIsI}", "sha256", in->sha, "size", (json_int_t)in->size,
							  "age_s", (json_int_t)age));
	return 0;
}

static void gc_work(uv_work_t *w)
{
	struct gc *g = w->data;
	g->now = time(NULL);
	g->rc = artifact_store_open(g->app->cfg.artifacts, &g->store);
	if (g->rc < 0) {
		snprintf(g->why, sizeof g->why, "cannot open the artifact store");
		return;
	}
	g->rc = artifact_list(g->store, on_item, g);
	if (g->rc < 0)
		snprintf(g->why, sizeof g->why, "listing the artifact store failed");
	artifact_store_close(g->store);
	g->store = NULL;
}

static void gc_done(uv_work_t *w, int status)
{
	struct gc *g = w->data;
	if (status < 0 || g->rc < 0) {
		http_reply_err(g->req, status < 0 ? AT_ECANCELLED : g->rc, g->why[0] ? g->why : "gc did not run", NULL);
		gc_free(g);
		return;
	}
	log_info("gc: %s %lld artifacts (%llu bytes) of %lld; kept %lld referenced, %lld younger than %llds",
		 g->dry_run ? "would remove" : "removed", g->removed, g->bytes, g->scanned, g->referenced, g->young,
		 g->grace_s);
	json_t *out = json_pack("{sbsIsssIsIsIsIsIsIsIsO}", "dry_run", g->dry_run, "grace_s", (json_int_t)g->grace_s,
				"store", artifact_store_uri(g->app->artifacts), "scanned", (json_int_t)g->scanned,
				"referenced", (json_int_t)g->referenced, "young", (json_int_t)g->young, "removed",
				(json_int_t)g->removed, "failed", (json_int_t)g->failed, "bytes", (json_int_t)g->bytes,
				"kept_bytes", (json_int_t)g->kept_bytes, "items", g->items);
	http_reply_json(g->req, 200, out);
	gc_free(g);
}

static void on_refs(void *arg, int status, PGresult *res)
{
	struct gc *g = arg;
	if (status < 0) {
		http_reply_err(g->req, AT_EDB, "database unavailable", NULL);
		gc_free(g);
		return;
	}
	int n = PQntuples(res);
	g->refs = calloc(n > 0 ? (size_t)n : 1, sizeof *g->refs);
	if (!g->refs) {
		http_reply_err(g->req, AT_ENOMEM, "out of memory", NULL);
		gc_free(g);
		return;
	}
	for (int i = 0; i < n; i++)
		if (artifact_valid_sha(PQgetvalue(res, i, 0)))
			memcpy(g->refs[g->nrefs++], PQgetvalue(res, i, 0), 65);
	qsort(g->refs, g->nrefs, sizeof *g->refs, cmp_sha);
	g->work.data = g;
	if (uv_queue_work(g->app->loop, &g->work, gc_work, gc_done) < 0) {
		http_reply_err(g->req, AT_EUNAVAILABLE, "cannot schedule the collection", NULL);
		gc_free(g);
	}
}

/* Every sha256 the database names. The job scan is a regular expression
 * over payload and result text: a new job kind that records an artifact in
 * its result is covered without a change here. */
static const char referenced_sql[] =
	"SELECT sha256 FROM model_versions "
	"UNION SELECT sha256 FROM (SELECT DISTINCT ON (c.job_id) c.sha256 FROM train_checkpoints c "
	"  JOIN jobs j ON j.id = c.job_id WHERE j.state IN ('queued', 'running') ORDER BY c.job_id, c.step DESC) live "
	"UNION SELECT sha256 FROM artifact_refs UNION SELECT manifest_sha256 FROM datasets "
	"UNION SELECT m[1] FROM jobs, regexp_matches(payload::text || coalesce(result::text, ''), "
	"'([0-9a-f]{64})', 'g') AS m";

static void post_gc(http_req_t *req)
{
	struct app *app = http_req_app(req);
	if (!app->artifacts) {
		http_reply_err(req, AT_EUNAVAILABLE, "no artifact store configured", NULL);
		return;
	}
	int dry_run = 0;
	long long grace_s = GC_DEFAULT_GRACE_S;
	size_t len;
	http_req_body(req, &len);
	if (len > 0) {
		json_t *j = http_req_json_body(req);
		if (!j)
			return;
		json_t *d = json_object_get(j, "dry_run"), *gr = json_object_get(j, "grace_s");
		if ((d && !json_is_boolean(d)) || (gr && (!json_is_integer(gr) || json_integer_value(gr) < 0 ||
							  json_integer_value(gr) > 365LL * 86400))) {
			json_decref(j);
			http_reply_err(req, AT_EUNPROCESSABLE,
				       "dry_run must be a boolean, grace_s an integer of seconds in [0, 31536000]",
				       json_pack("{s[ss]}", "fields", "dry_run", "grace_s"));
			return;
		}
		dry_run = d && json_is_true(d);
		if (gr)
			grace_s = json_integer_value(gr);
		json_decref(j);
	}
	if (gc_running) {
		http_reply_err(req, AT_EBUSY, "a collection is already running", NULL);
		return;
	}
	struct gc *g = calloc(1, sizeof *g);
	if (!g || !(g->items = json_array())) {
		free(g);
		http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
		return;
	}
	gc_running = 1;
	g->app = app;
	g->req = req;
	g->dry_run = dry_run;
	g->grace_s = grace_s;
	if (db_query(app->db, referenced_sql, NULL, on_refs, g) < 0) {
		http_reply_err(req, AT_EDB, "database unavailable", NULL);
		gc_free(g);
	}
}

#define S_GC_ITEM API_OBJECT("\"sha256\":" API_SHA256 ",\"size\":" API_INT ",\"age_s\":" API_INT)

const struct http_route gc_routes[] = {
	{"POST", "/v1/gc", post_gc, ROLE_OPERATOR,
	 "remove artifacts no model version, checkpoint, dataset, sample or job refers to (dry_run: only list them)",
	 .op = "collectGarbage", .tag = "artifacts",
	 .body = HTTP_JSON(API_OBJECT("\"dry_run\":" API_BOOL ",\"grace_s\":{\"type\":\"integer\",\"minimum\":0,"
				      "\"description\":\"keep artifacts younger than this (default "
				      "3600): writes whose row is not committed yet\"}")),
	 .reply = HTTP_JSON(API_OBJECT("\"dry_run\":" API_BOOL ",\"grace_s\":" API_INT ",\"store\":" API_STR
				       ",\"scanned\":" API_INT ",\"referenced\":" API_INT ",\"young\":" API_INT
				       ",\"removed\":" API_INT ",\"failed\":" API_INT ",\"bytes\":" API_INT
				       ",\"kept_bytes\":" API_INT ",\"items\":" API_ARRAY(S_GC_ITEM)))},
};
const size_t gc_nroutes = sizeof gc_routes / sizeof gc_routes[0];
