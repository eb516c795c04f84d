/*
 * artifacts_api.c — GET /v1/artifacts/{sha256}: artifact downloads (see
 * artifacts_api.h).
 *
 * The file is opened, read and sent with uv_fs (threadpool) in 256 KiB
 * chunks, the next read only once the previous chunk drained, so a slow
 * client holds at most one chunk of memory. Only a sha256 the database names
 * is served (a model version, a checkpoint, or an artifact_refs row:
 * evaluation samples and shards), never an arbitrary file of the store; the
 * path comes from the validated hex digest alone.
 *
 * With an s3:// store the bytes do not pass through atelierd: once the
 * database names the sha, the answer is a 302 to a presigned GET URL of the
 * object (valid PRESIGN_TTL_S seconds; nodes and the CLI follow it, and a
 * Range header goes along). Signing is a few HMACs, so the loop never waits
 * on the store; docs/artifacts.md has the measurements behind this choice
 * over relaying the object through libcurl multi.
 */
#include "artifacts_api.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "artifact.h"
#include "http_range.h"
#include "log.h"

#define DL_CHUNK (256 * 1024)
/* Long enough for a slow start of a big download (S3 checks the signature
 * when a request starts, not while its body flows), short enough that a
 * leaked URL is soon useless. */
#define PRESIGN_TTL_S 900

struct download {
	struct app *app;
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
		uv_fs_close(d->app->loop, &d->fs, d->fd, dl_close_cb);
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
	if (uv_fs_read(d->app->loop, &d->fs, d->fd, &b, 1, (int64_t)d->pos, dl_read_cb) < 0)
		dl_finish(d);
}

static void dl_start(struct download *d)
{
	char cl[128];
	if (d->range) {
		snprintf(cl, sizeof cl, "bytes %llu-%llu/%llu", (unsigned long long)d->start,
			 (unsigned long long)d->end, (unsigned long long)d->size);
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

static void dl_stat_cb(uv_fs_t *f)
{
	struct download *d = f->data;
	if (f->result < 0) {
		uv_fs_req_cleanup(f);
		http_reply_err(d->req, AT_EIO, "cannot stat artifact", NULL);
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
		int rc = http_range_parse(range, hl, d->size, &d->start, &d->end);
		if (rc == AT_EUNSATISFIABLE) {
			char cr[64];
			snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)d->size);
			http_req_add_header(d->req, "Content-Range", cr);
			http_reply_err(d->req, AT_EUNSATISFIABLE, "range not satisfiable",
				       json_pack("{sI}", "size", (json_int_t)d->size));
			d->req = NULL;
			dl_finish(d);
			return;
		}
		if (rc < 0) {
			http_reply_err(d->req, AT_EINVAL, "malformed Range header (bytes=N-M, bytes=N- or bytes=-S)",
				       NULL);
			d->req = NULL;
			dl_finish(d);
			return;
		}
		d->range = rc == 1; /* 0: ignored (several ranges, another unit), the whole file */
	}
	dl_start(d);
}

static void dl_open_cb(uv_fs_t *f)
{
	struct download *d = f->data;
	if (f->result < 0) {
		uv_fs_req_cleanup(f);
		http_reply_err(d->req, AT_ENOTFOUND, "artifact missing from the store",
			       json_pack("{ss}", "sha256", d->sha));
		d->req = NULL;
		dl_finish(d);
		return;
	}
	d->fd = (uv_file)f->result;
	uv_fs_req_cleanup(f);
	d->fs.data = d;
	if (uv_fs_fstat(d->app->loop, &d->fs, d->fd, dl_stat_cb) < 0) {
		http_reply_err(d->req, AT_EIO, "cannot stat artifact", NULL);
		d->req = NULL;
		dl_finish(d);
	}
}

static void on_artifact_known(void *arg, int status, PGresult *res)
{
	struct download *d = arg;
	if (status < 0) {
		http_reply_err(d->req, AT_EDB, "database unavailable", NULL);
		d->req = NULL;
		dl_finish(d);
		return;
	}
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
		http_reply_err(d->req, AT_ENOTFOUND, "no such artifact", json_pack("{ss}", "sha256", d->sha));
		d->req = NULL;
		dl_finish(d);
		return;
	}
	snprintf(d->ctype, sizeof d->ctype, "%s", PQgetvalue(res, 0, 0));
	if (!artifact_store_is_local(d->app->artifacts)) {
		char url[8192];
		int rc = artifact_presign(d->app->artifacts, d->sha, PRESIGN_TTL_S, url, sizeof url);
		if (rc < 0) {
			http_reply_err(d->req, rc, "cannot sign a URL for the artifact",
				       json_pack("{ss}", "sha256", d->sha));
		} else {
			http_req_add_header(d->req, "Location", url);
			http_req_add_header(d->req, "x-content-sha256", d->sha);
			http_reply_empty(d->req, 302);
		}
		d->req = NULL;
		dl_finish(d);
		return;
	}
	d->fs.data = d;
	if (uv_fs_open(d->app->loop, &d->fs, d->path, O_RDONLY | O_CLOEXEC, 0, dl_open_cb) < 0) {
		http_reply_err(d->req, AT_EIO, "cannot open artifact", NULL);
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
	struct app *app = http_req_app(req);
	const char *sha = http_req_param(req, "sha256");
	if (!artifact_valid_sha(sha)) {
		http_reply_err(req, AT_EINVAL, "not a sha256 (64 lowercase hex digits)",
			       json_pack("{ss}", "sha256", sha));
		return;
	}
	if (!app->artifacts) {
		http_reply_err(req, AT_EUNAVAILABLE, "no artifact store configured", NULL);
		return;
	}
	struct download *d = calloc(1, sizeof *d);
	if (!d) {
		http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
		return;
	}
	d->app = app;
	d->req = req;
	d->fd = -1;
	snprintf(d->sha, sizeof d->sha, "%s", sha);
	if (artifact_store_is_local(app->artifacts) &&
	    artifact_path(app->artifacts, sha, d->path, sizeof d->path) < 0) {
		free(d);
		http_reply_err(req, AT_EINVAL, "bad sha256", NULL);
		return;
	}
	/* Only referenced artifacts are served (not every file in the store). */
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, sha);
	if (db_query(app->db, artifact_known_sql, &p, on_artifact_known, d) < 0) {
		free(d);
		http_reply_err(req, AT_EDB, "database unavailable", NULL);
	}
}

#define S_ARTIFACT "{\"application/octet-stream\":" HTTP_BINARY ",\"image/png\":" HTTP_BINARY "}"

const struct http_route artifacts_api_routes[] = {
	{"GET", "/v1/artifacts/{sha256}", get_artifact, ROLE_ANY,
	 "download an artifact a version or run references: model, checkpoint, shard, sample PNG (Range supported)",
	 .op = "getArtifact", .tag = "artifacts", .params = "{\"sha256\":" API_SHA256 "}", .reply = S_ARTIFACT,
	 .replies = "{\"206\":{\"description\":\"the part a Range: bytes=N-M header asked for\",\"content\":" S_ARTIFACT
		    "},\"302\":{\"description\":\"s3:// store: a presigned GET URL of the object (Range works on it)\","
		    "\"headers\":{\"Location\":{\"schema\":{\"type\":\"string\",\"format\":\"uri\"}}}}}"},
};
const size_t artifacts_api_nroutes = sizeof artifacts_api_routes / sizeof artifacts_api_routes[0];
