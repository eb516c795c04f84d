/*
 * registry.c — models, versions, channels and the promotion ledger; the
 * long-poll hub serving nodes wait on; artifact downloads; node heartbeats.
 *
 * Long-poll hub: a request for a channel that does not (yet) point past the
 * client's `after` version is parked on a list with a timer for its `wait`.
 * Every channel move NOTIFYs atelier_channels (from any atelierd or worker);
 * the hub then reads that channel once and answers every parked request on it,
 * so a promotion costs one query however many nodes wait. A parked request
 * costs its http_req_t and one uv_timer. A move that lands between a request's
 * first read and its parking is caught by a sequence number: if any
 * notification arrived meanwhile, the request reads again instead of parking.
 *
 * Downloads: the file is opened, read and sent with uv_fs (threadpool) in
 * 256 KiB chunks, the next read only once the previous chunk drained, so a
 * slow client holds at most one chunk of memory. Only a sha256 the database
 * names is served (a model version, a checkpoint, or an artifact_refs row:
 * evaluation samples and shards), never an arbitrary file of the store; the
 * path comes from the validated hex digest alone.
 */
#include "registry.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "artifact.h"
#include "log.h"

#define LP_MAX_WAIT_S 120
#define DL_CHUNK (256 * 1024)

struct waiter {
	struct waiter *prev, *next;
	struct registry *reg;
	http_req_t *req;
	char model[64];
	char channel[16];
	long long after;
	uint64_t deadline_ms; /* loop time when the wait runs out */
	uv_timer_t timer;     /* runs only while parked: a read in flight is never timed out under it */
	int parked;
	uint64_t seq_at_read;
};

struct registry {
	struct app *app;
	struct artifact_store *store;
	struct waiter waiters; /* list head */
	size_t nwaiters;
	uint64_t notify_seq;
	uint64_t answered_by_notify;
	int closing;
};

static struct registry *the_registry; /* handlers reach it through the app */

static const char channel_sql[] =
	"SELECT json_build_object('model', c.model, 'channel', c.channel, 'version', v.version, "
	"'version_id', v.id, 'sha256', v.sha256, 'size', v.size, 'artifact', '/v1/artifacts/' || v.sha256)::text, "
	"v.version FROM channels c JOIN model_versions v ON v.id = c.version_id "
	"WHERE c.model = $1 AND c.channel = $2";

/* ---- long-poll ---- */

static void waiter_timer_closed(uv_handle_t *h)
{
	struct waiter *w = h->data;
	free(w);
}

/* Unpark and free (the timer closes first). The request must be answered already. */
static void waiter_done(struct waiter *w)
{
	if (w->parked) {
		w->prev->next = w->next;
		w->next->prev = w->prev;
		w->reg->nwaiters--;
		w->parked = 0;
	}
	uv_timer_stop(&w->timer);
	uv_close((uv_handle_t *)&w->timer, waiter_timer_closed);
}

static void waiter_timeout(uv_timer_t *t)
{
	struct waiter *w = t->data;
	http_reply_empty(w->req, 304);
	waiter_done(w);
}

static void waiter_reply(struct waiter *w, const char *json, size_t len)
{
	char *copy = malloc(len + 1);
	if (!copy) {
		http_reply_error(w->req, 503, "out of memory", NULL);
		return;
	}
	memcpy(copy, json, len);
	copy[len] = '\n';
	http_reply_owned(w->req, 200, "application/json", copy, len + 1);
}

static void waiter_read(struct waiter *w);

static void on_channel_read(void *arg, int status, PGresult *res)
{
	struct waiter *w = arg;
	if (status < 0) {
		http_reply_error(w->req, 503, "database unavailable", NULL);
		waiter_done(w);
		return;
	}
	if (PQntuples(res) == 1) {
		long long v = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		if (v != w->after) {
			waiter_reply(w, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
			waiter_done(w);
			return;
		}
	}
	if (w->reg->notify_seq != w->seq_at_read) {
		/* a move was announced while we read: read again rather than park */
		waiter_read(w);
		return;
	}
	uint64_t now = uv_now(w->reg->app->loop);
	if (w->reg->closing || now >= w->deadline_ms) {
		http_reply_empty(w->req, 304);
		waiter_done(w);
		return;
	}
	/* park until a move or the wait runs out */
	struct registry *r = w->reg;
	uv_timer_start(&w->timer, waiter_timeout, w->deadline_ms - now, 0);
	w->next = r->waiters.next;
	w->prev = &r->waiters;
	w->next->prev = w;
	r->waiters.next = w;
	r->nwaiters++;
	w->parked = 1;
}

static void waiter_read(struct waiter *w)
{
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, w->model);
	db_param_text(&p, w->channel);
	w->seq_at_read = w->reg->notify_seq;
	if (db_query(w->reg->app->db, channel_sql, &p, on_channel_read, w) < 0) {
		http_reply_error(w->req, 503, "database unavailable", NULL);
		waiter_done(w);
	}
}

struct broadcast {
	struct registry *reg;
	char model[64];
	char channel[16];
};

static void on_broadcast_read(void *arg, int status, PGresult *res)
{
	struct broadcast *b = arg;
	struct registry *r = b->reg;
	if (status == 0 && PQntuples(res) == 1) {
		long long v = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		struct waiter *w = r->waiters.next;
		while (w != &r->waiters) {
			struct waiter *next = w->next;
			if (!strcmp(w->model, b->model) && !strcmp(w->channel, b->channel) && w->after != v) {
				waiter_reply(w, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
				waiter_done(w);
				r->answered_by_notify++;
			}
			w = next;
		}
	}
	free(b);
}

static void broadcast(struct registry *r, const char *model, const char *channel)
{
	struct broadcast *b = calloc(1, sizeof *b);
	if (!b)
		return;
	b->reg = r;
	snprintf(b->model, sizeof b->model, "%s", model);
	snprintf(b->channel, sizeof b->channel, "%s", channel);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, b->model);
	db_param_text(&p, b->channel);
	if (db_query(r->app->db, channel_sql, &p, on_broadcast_read, b) < 0)
		free(b);
}

/* payload "model:channel:version"; channel NULL = the listen connection came back */
static void on_channels_notify(void *arg, const char *channel, const char *payload)
{
	struct registry *r = arg;
	r->notify_seq++;
	if (!channel) {
		/* we may have missed moves: re-read every parked (model, channel) */
		for (struct waiter *w = r->waiters.next; w != &r->waiters; w = w->next) {
			int seen = 0;
			for (struct waiter *x = r->waiters.next; x != w; x = x->next)
				seen |= !strcmp(x->model, w->model) && !strcmp(x->channel, w->channel);
			if (!seen)
				broadcast(r, w->model, w->channel);
		}
		return;
	}
	char model[64], ch[16];
	const char *c1 = strchr(payload, ':');
	const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	if (!c1 || !c2 || (size_t)(c1 - payload) >= sizeof model || (size_t)(c2 - c1 - 1) >= sizeof ch)
		return;
	snprintf(model, sizeof model, "%.*s", (int)(c1 - payload), payload);
	snprintf(ch, sizeof ch, "%.*s", (int)(c2 - c1 - 1), c1 + 1);
	broadcast(r, model, ch);
}

static int valid_channel(const char *c) { return !strcmp(c, "canary") || !strcmp(c, "production"); }

static void get_channel(http_req_t *req)
{
	struct registry *r = the_registry;
	const char *model = http_req_param(req, "name"), *channel = http_req_param(req, "channel");
	const char *after = http_req_query(req, "after"), *wait = http_req_query(req, "wait");
	if (!valid_channel(channel)) {
		http_reply_error(req, 404, "no such channel (canary or production)", json_pack("{ss}", "channel", channel));
		return;
	}
	if (strlen(model) >= 64) {
		http_reply_error(req, 404, "no such model", NULL);
		return;
	}
	char *end;
	long long a = after ? strtoll(after, &end, 10) : 0;
	if (after && (*end || a < 0)) {
		http_reply_error(req, 400, "after must be a version number", json_pack("{ss}", "field", "after"));
		return;
	}
	long long ws = wait ? strtoll(wait, &end, 10) : 0;
	if (wait && (*end || ws < 0 || ws > LP_MAX_WAIT_S)) {
		http_reply_error(req, 400, "wait must be 0..120 seconds", json_pack("{ss}", "field", "wait"));
		return;
	}
	struct waiter *w = calloc(1, sizeof *w);
	if (!w) {
		http_reply_error(req, 503, "out of memory", NULL);
		return;
	}
	w->reg = r;
	w->req = req;
	w->after = a;
	snprintf(w->model, sizeof w->model, "%s", model);
	snprintf(w->channel, sizeof w->channel, "%s", channel);
	uv_timer_init(r->app->loop, &w->timer);
	w->timer.data = w;
	w->deadline_ms = uv_now(r->app->loop) + (uint64_t)ws * 1000;
	waiter_read(w);
}

/* ---- reads ---- */

static void get_models(http_req_t *req)
{
	api_reply_sql_json(req,
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
	api_reply_sql_json(req,
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
	api_reply_sql_json(req,
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
};

static void on_moved(void *arg, int status, PGresult *res)
{
	struct move *m = arg;
	if (status == AT_EDB && strcmp(db_sqlstate(res), "P0002") == 0)
		http_reply_error(m->req, 404, PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY),
				 json_pack("{ss,ss}", "model", m->model, "channel", m->channel));
	else if (status < 0)
		http_reply_error(m->req, 503, "could not move the channel", NULL);
	else {
		size_t len = (size_t)PQgetlength(res, 0, 0);
		char *copy = malloc(len + 1);
		if (!copy) {
			http_reply_error(m->req, 503, "out of memory", NULL);
		} else {
			memcpy(copy, PQgetvalue(res, 0, 0), len);
			copy[len] = '\n';
			http_reply_owned(m->req, 200, "application/json", copy, len + 1);
		}
	}
	free(m);
}

static void post_channel(http_req_t *req)
{
	struct app *app = http_req_app(req);
	const char *model = http_req_param(req, "name"), *channel = http_req_param(req, "channel");
	if (!valid_channel(channel)) {
		http_reply_error(req, 404, "no such channel (canary or production)", json_pack("{ss}", "channel", channel));
		return;
	}
	json_t *body = http_req_json_body(req);
	if (!body)
		return;
	const char *action = json_string_value(json_object_get(body, "action"));
	json_t *ver = json_object_get(body, "version");
	const char *reason = json_string_value(json_object_get(body, "reason"));
	int rollback = action && !strcmp(action, "rollback");
	if ((action && !rollback && strcmp(action, "promote")) || (!rollback && !json_is_integer(ver))) {
		json_decref(body);
		http_reply_error(req, 422, "body must be {\"version\": N} or {\"action\": \"rollback\"}", NULL);
		return;
	}
	struct move *m = calloc(1, sizeof *m);
	if (!m) {
		json_decref(body);
		http_reply_error(req, 503, "out of memory", NULL);
		return;
	}
	m->req = req;
	snprintf(m->model, sizeof m->model, "%s", model);
	snprintf(m->channel, sizeof m->channel, "%s", channel);
	char vs[32], actor[64];
	snprintf(vs, sizeof vs, "%lld", (long long)json_integer_value(ver));
	snprintf(actor, sizeof actor, "api:%s", http_role_name(http_req_role(req)));
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, model);
	db_param_text(&p, channel);
	db_param_text(&p, actor);
	db_param_text(&p, reason ? reason : rollback ? "manual rollback" : "manual promotion");
	int rc;
	if (rollback) {
		rc = db_query(app->db,
			      "SELECT json_build_object('model', $1::text, 'channel', $2::text, 'moved', m.moved, "
			      "'from', (SELECT version FROM model_versions WHERE id = m.from_version_id), "
			      "'to', (SELECT version FROM model_versions WHERE id = m.to_version_id))::text "
			      "FROM atelier_rollback($1, $2, $3, $4, 'rollback', NULL) m",
			      &p, on_moved, m);
	} else {
		db_param_text(&p, vs);
		rc = db_query(app->db,
			      "SELECT json_build_object('model', $1::text, 'channel', $2::text, 'moved', m.moved, "
			      "'from', (SELECT version FROM model_versions WHERE id = m.from_version_id), 'to', $5::int)::text "
			      "FROM atelier_move_channel($1, $2, (SELECT id FROM model_versions WHERE model = $1 AND "
			      "version = $5::int), $3, $4, 'promote', NULL) m",
			      &p, on_moved, m);
	}
	json_decref(body);
	if (rc < 0) {
		free(m);
		http_reply_error(req, 503, "database unavailable", NULL);
	}
}

/* ---- nodes ---- */

static void on_heartbeat(void *arg, int status, PGresult *res)
{
	http_req_t *req = arg;
	if (status < 0)
		http_reply_error(req, 503, "could not record the heartbeat", NULL);
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
		http_reply_error(req, 422, "heartbeat needs a \"node\" name (1..128 chars)", json_pack("{ss}", "field", "node"));
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
		http_reply_error(req, 503, "database unavailable", NULL);
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

/* ---- artifact download ---- */

struct download {
	struct registry *reg;
	http_req_t *req;
	http_stream_t *stream;
	uv_fs_t fs;
	uv_file fd;
	char sha[65];
	char ctype[64]; /* from artifact_refs; octet-stream for models and checkpoints */
	char path[4096];
	uint64_t start, end, pos; /* [start, end] inclusive */
	uint64_t size;
	int range;
	char buf[DL_CHUNK];
};

static void dl_read_next(struct download *d);

static void dl_close_cb(uv_fs_t *f)
{
	struct download *d = f->data;
	uv_fs_req_cleanup(f);
	free(d);
}

static void dl_finish(struct download *d)
{
	if (d->stream) {
		http_stream_end(d->stream);
		d->stream = NULL;
	}
	uv_fs_req_cleanup(&d->fs);
	if (d->fd >= 0) {
		uv_fs_close(d->reg->app->loop, &d->fs, d->fd, dl_close_cb);
		d->fd = -1;
	} else {
		free(d);
	}
}

static void dl_drained(void *arg)
{
	struct download *d = arg;
	if (d->pos > d->end || !http_stream_alive(d->stream)) {
		dl_finish(d);
		return;
	}
	dl_read_next(d);
}

static void dl_read_cb(uv_fs_t *f)
{
	struct download *d = f->data;
	ssize_t n = f->result;
	uv_fs_req_cleanup(f);
	if (n <= 0) {
		log_warn("artifacts: short read on %s", d->path);
		dl_finish(d);
		return;
	}
	d->pos += (uint64_t)n;
	if (http_stream_write(d->stream, d->buf, (size_t)n) < 0) {
		dl_finish(d);
		return;
	}
	/* the next read happens once this chunk drained (dl_drained) */
}

static void dl_read_next(struct download *d)
{
	uint64_t left = d->end - d->pos + 1;
	size_t want = left < DL_CHUNK ? (size_t)left : DL_CHUNK;
	uv_buf_t b = uv_buf_init(d->buf, (unsigned)want);
	d->fs.data = d;
	if (uv_fs_read(d->reg->app->loop, &d->fs, d->fd, &b, 1, (int64_t)d->pos, dl_read_cb) < 0)
		dl_finish(d);
}

static void dl_start(struct download *d)
{
	char cl[128];
	if (d->range) {
		snprintf(cl, sizeof cl, "bytes %llu-%llu/%llu", (unsigned long long)d->start, (unsigned long long)d->end,
			 (unsigned long long)d->size);
		http_req_add_header(d->req, "Content-Range", cl);
	}
	http_req_add_header(d->req, "Accept-Ranges", "bytes");
	http_req_add_header(d->req, "x-content-sha256", d->sha);
	uint64_t len = d->size ? d->end - d->start + 1 : 0;
	d->stream = http_stream_start_sized(d->req, d->range ? 206 : 200, d->ctype, len);
	d->req = NULL;
	if (!d->stream || len == 0) {
		dl_finish(d);
		return;
	}
	http_stream_on_drain(d->stream, dl_drained, d);
	d->pos = d->start;
	dl_read_next(d);
}

static int parse_range(const char *h, size_t n, uint64_t size, uint64_t *start, uint64_t *end)
{
	char buf[64];
	if (n >= sizeof buf || n < 7 || strncmp(h, "bytes=", 6) != 0)
		return -1;
	memcpy(buf, h + 6, n - 6);
	buf[n - 6] = 0;
	char *dash = strchr(buf, '-'), *e;
	if (!dash || strchr(buf, ','))
		return -1;
	*dash = 0;
	if (!*buf)
		return -1; /* suffix ranges are not needed by our clients */
	unsigned long long s = strtoull(buf, &e, 10);
	if (*e)
		return -1;
	unsigned long long en = size ? size - 1 : 0;
	if (dash[1]) {
		en = strtoull(dash + 1, &e, 10);
		if (*e || en < s)
			return -1;
		if (size && en > size - 1)
			en = size - 1;
	}
	if (s >= size)
		return -2;
	*start = s;
	*end = en;
	return 0;
}

static void dl_stat_cb(uv_fs_t *f)
{
	struct download *d = f->data;
	if (f->result < 0) {
		uv_fs_req_cleanup(f);
		http_reply_error(d->req, 500, "cannot stat artifact", NULL);
		d->req = NULL;
		dl_finish(d);
		return;
	}
	d->size = (uint64_t)f->statbuf.st_size;
	uv_fs_req_cleanup(f);
	d->start = 0;
	d->end = d->size ? d->size - 1 : 0;
	size_t hl;
	const char *range = http_req_header(d->req, "range", &hl);
	if (range) {
		int rc = parse_range(range, hl, d->size, &d->start, &d->end);
		if (rc == -2) {
			char cr[64];
			snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)d->size);
			http_req_add_header(d->req, "Content-Range", cr);
			http_reply_error(d->req, 416, "range not satisfiable", json_pack("{sI}", "size", (json_int_t)d->size));
			d->req = NULL;
			dl_finish(d);
			return;
		}
		if (rc < 0) {
			http_reply_error(d->req, 400, "unsupported Range header (use bytes=N- or bytes=N-M)", NULL);
			d->req = NULL;
			dl_finish(d);
			return;
		}
		d->range = 1;
	}
	dl_start(d);
}

static void dl_open_cb(uv_fs_t *f)
{
	struct download *d = f->data;
	if (f->result < 0) {
		uv_fs_req_cleanup(f);
		http_reply_error(d->req, 404, "artifact missing from the store", json_pack("{ss}", "sha256", d->sha));
		d->req = NULL;
		dl_finish(d);
		return;
	}
	d->fd = (uv_file)f->result;
	uv_fs_req_cleanup(f);
	d->fs.data = d;
	if (uv_fs_fstat(d->reg->app->loop, &d->fs, d->fd, dl_stat_cb) < 0) {
		http_reply_error(d->req, 500, "cannot stat artifact", NULL);
		d->req = NULL;
		dl_finish(d);
	}
}

static void on_artifact_known(void *arg, int status, PGresult *res)
{
	struct download *d = arg;
	if (status < 0) {
		http_reply_error(d->req, 503, "database unavailable", NULL);
		d->req = NULL;
		dl_finish(d);
		return;
	}
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
		http_reply_error(d->req, 404, "no such artifact", json_pack("{ss}", "sha256", d->sha));
		d->req = NULL;
		dl_finish(d);
		return;
	}
	snprintf(d->ctype, sizeof d->ctype, "%s", PQgetvalue(res, 0, 0));
	d->fs.data = d;
	if (uv_fs_open(d->reg->app->loop, &d->fs, d->path, O_RDONLY | O_CLOEXEC, 0, dl_open_cb) < 0) {
		http_reply_error(d->req, 500, "cannot open artifact", NULL);
		d->req = NULL;
		dl_finish(d);
	}
}

/* One row: the content type to serve the sha with, NULL when nothing names it
 * (each branch is one index probe: sql/007_eval_artifacts.sql). */
static const char artifact_known_sql[] =
	"SELECT coalesce((SELECT content_type FROM artifact_refs WHERE sha256 = $1), "
	"(SELECT 'application/octet-stream' FROM model_versions WHERE sha256 = $1 LIMIT 1), "
	"(SELECT 'application/octet-stream' FROM train_checkpoints WHERE sha256 = $1 LIMIT 1))";

static void get_artifact(http_req_t *req)
{
	struct registry *r = the_registry;
	const char *sha = http_req_param(req, "sha256");
	if (!artifact_valid_sha(sha)) {
		http_reply_error(req, 400, "not a sha256 (64 lowercase hex digits)", json_pack("{ss}", "sha256", sha));
		return;
	}
	if (!r->store) {
		http_reply_error(req, 503, "no artifact store configured", NULL);
		return;
	}
	struct download *d = calloc(1, sizeof *d);
	if (!d) {
		http_reply_error(req, 503, "out of memory", NULL);
		return;
	}
	d->reg = r;
	d->req = req;
	d->fd = -1;
	snprintf(d->sha, sizeof d->sha, "%s", sha);
	if (artifact_path(r->store, sha, d->path, sizeof d->path) < 0) {
		free(d);
		http_reply_error(req, 400, "bad sha256", NULL);
		return;
	}
	/* Only referenced artifacts are served (not every file in the store). */
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, sha);
	if (db_query(r->app->db, artifact_known_sql, &p, on_artifact_known, d) < 0) {
		free(d);
		http_reply_error(req, 503, "database unavailable", NULL);
	}
}

/* ---- life ---- */

int registry_start(struct app *app, struct registry **out)
{
	struct registry *r = calloc(1, sizeof *r);
	if (!r)
		return AT_ENOMEM;
	r->app = app;
	r->waiters.next = r->waiters.prev = &r->waiters;
	int rc = artifact_store_open(app->cfg.artifacts, &r->store);
	if (rc < 0) {
		log_error("artifacts: cannot open %s: %s", app->cfg.artifacts ? app->cfg.artifacts : "(default)",
			  at_strerror(rc));
		free(r);
		return rc;
	}
	rc = db_listen(app->db, "atelier_channels", on_channels_notify, r);
	if (rc < 0) {
		artifact_store_close(r->store);
		free(r);
		return rc;
	}
	the_registry = r;
	*out = r;
	return 0;
}

void registry_stop(struct registry *r)
{
	if (!r)
		return;
	r->closing = 1;
	/* answer every parked long-poll now (304), so shutdown does not wait for them */
	while (r->waiters.next != &r->waiters) {
		struct waiter *w = r->waiters.next;
		http_reply_empty(w->req, 304);
		waiter_done(w);
	}
}

void registry_free(struct registry *r)
{
	if (!r)
		return;
	artifact_store_close(r->store);
	if (the_registry == r)
		the_registry = NULL;
	free(r);
}

int registry_metrics(const struct registry *r, struct at_buf *b)
{
	return at_buf_printf(b,
			     "# HELP atelier_longpoll_waiting Serving-node long-polls held open.\n"
			     "# TYPE atelier_longpoll_waiting gauge\natelier_longpoll_waiting %zu\n"
			     "# HELP atelier_longpoll_notified_total Long-polls answered by a channel move.\n"
			     "# TYPE atelier_longpoll_notified_total counter\natelier_longpoll_notified_total %llu\n",
			     r ? r->nwaiters : 0, (unsigned long long)(r ? r->answered_by_notify : 0));
}

const struct http_route registry_routes[] = {
	{"GET", "/v1/models", get_models, ROLE_ANY, "models with their channels"},
	{"GET", "/v1/models/{name}/versions", get_versions, ROLE_ANY, "versions with lineage and metrics"},
	{"GET", "/v1/models/{name}/versions/{version}/samples", get_samples, ROLE_ANY,
	 "evaluation gallery: {sketch, style, output, slice, role, image_id} as artifact sha256s"},
	{"GET", "/v1/models/{name}/versions/{version}", get_version, ROLE_ANY,
	 "one version: lineage (run, dataset, ancestors), metrics, verdict"},
	{"GET", "/v1/models/{name}/ledger", get_ledger, ROLE_ANY, "the append-only promotion ledger"},
	{"GET", "/v1/models/{name}/channels/{channel}", get_channel, ROLE_ANY,
	 "a channel's version; ?after=V&wait=S holds until it moves past V (else 304)"},
	{"POST", "/v1/models/{name}/channels/{channel}", post_channel, ROLE_OPERATOR,
	 "promote {version: N} or roll back {action: rollback}"},
	{"GET", "/v1/artifacts/{sha256}", get_artifact, ROLE_ANY,
	 "download an artifact a version or run references: model, checkpoint, shard, sample PNG (Range supported)"},
	{"POST", "/v1/nodes/heartbeat", post_heartbeat, ROLE_NODE | ROLE_OPERATOR, "serving-node heartbeat"},
	{"GET", "/v1/nodes", get_nodes, ROLE_ANY, "the serving fleet: who serves what, health"},
};
const size_t registry_nroutes = sizeof registry_routes / sizeof registry_routes[0];
