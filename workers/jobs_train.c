/*
 * jobs_train.c — the train stage: the training shard → a candidate model
 * version in the registry.
 *
 * Start: a job that has a row in train_checkpoints (an earlier attempt that
 * died or was released) resumes from its highest step; otherwise a fresh
 * trainer, warm-started from the production version of payload.model when
 * params.warm_start is "production" and the channel has one (an architecture
 * mismatch is a permanent failure: the YAML says the shapes must match).
 *
 * Loop: batches are drawn from a generator seeded by (seed, step), so a
 * resumed run draws the batches the dead one would have. Every
 * metrics_every steps the losses go to the metrics table; every
 * checkpoint_every steps the full trainer state goes to the artifact store
 * and its sha256 to train_checkpoints (so a dead worker loses at most that
 * many steps). Cancel stops at once; a worker shutdown (job_stopping)
 * checkpoints first and returns an error, so the job is released and the
 * next worker resumes.
 *
 * End: the serving export goes to the artifact store and is registered with
 * atelier_register_version (idempotent by model + sha256, so a retry after
 * a lost completion registers nothing twice).
 *
 * Gang (resources.workers > 1; docs/training.md): the claimant is rank 0. It
 * hosts the rendezvous store (am_dist_listen) and opens the gang with the
 * store's address; the other ranks are workers that joined the gang
 * (worker.c run_gang_rank) and run this same handler. Once every rank is
 * claimed they form the process group and take rank 0's state (a resumed
 * checkpoint, a warm start). Each rank draws the combined batch's indices
 * and trains on its slice; gradients and losses are averaged. Only rank 0
 * records metrics, checkpoints, reports progress and registers; every rank
 * polls the gang (its lease) about once a second. A rank that dies breaks the
 * others' next collective: rank 0's attempt fails (retryable) and the retry
 * resumes from its last checkpoint with a new gang.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "artifact.h"
#include "atelier_model.h"
#include "dataset.h"
#include "job.h"
#include "log.h"
#include "params.h"
#include "splitmix.h"

struct train {
	struct job_ctx *ctx;
	PGconn *c;
	struct artifact_store *store;
	am_status_t *st;
	am_trainer *t;
	char dir[512];
	char why[768];
	int64_t parent_id; /* 0: none */
	int parent_version;
	int preset_gpu;      /* params.gpu applied: production may have the other preset's shapes */
	char warm_note[256]; /* why a warm start fell back to scratch; "" when it did not */
	/* the gang: rank 0 of world 1 without one */
	int rank, world;
	am_dist *dist;
	double last_poll;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void tmp_path(const struct train *tr, const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", tr->dir, name);
}

/* ---- the gang ---- */

/* Every rank: extends its lease about once a second and stops on a gang that is over. */
static int gang_check(struct train *tr, int force)
{
	if (tr->world <= 1 || (!force && now_s() - tr->last_poll < 1.0))
		return 0;
	tr->last_poll = now_s();
	enum queue_gang_state s;
	int rc = job_gang_poll(tr->ctx, &s);
	if (rc < 0) {
		snprintf(tr->why, sizeof tr->why, "train: gang poll: %s", at_strerror(rc));
		return rc;
	}
	if (s == QUEUE_GANG_FORMED || s == QUEUE_GANG_FILLING)
		return 0;
	snprintf(tr->why, sizeof tr->why, "train: rank %d: the gang is %s", tr->rank, queue_gang_state_name(s));
	return AT_EUNAVAILABLE;
}

static int dist_fail(struct train *tr, const char *what)
{
	snprintf(tr->why, sizeof tr->why, "train: rank %d of %d: %s: %s", tr->rank, tr->world, what,
		 am_status_message(tr->st));
	int rc = am_status_code(tr->st);
	return rc < 0 ? rc : AT_EINTERNAL;
}

/*
 * Rank 0 opens the gang; every rank waits until all are claimed, forms the
 * group and takes rank 0's trainer. A gang the queue gave back (not filled
 * in time) ends the attempt with no outcome.
 */
static int gang_form(struct train *tr)
{
	struct job_ctx *ctx = tr->ctx;
	int tmo = job_gang_timeout_s(ctx) * 1000, rc;
	const char *host = job_gang_host(ctx);
	if (tr->rank == 0) {
		if (!(tr->dist = am_dist_listen(host, 0, tr->world, tmo, tr->st)))
			return dist_fail(tr, "hosting the store");
		char addr[300];
		snprintf(addr, sizeof addr, "%s:%d", host, am_dist_port(tr->dist));
		if ((rc = job_gang_open(ctx, tr->world, addr)) < 0) {
			snprintf(tr->why, sizeof tr->why, "train: opening the gang: %s", at_strerror(rc));
			return rc;
		}
		log_info("train: job %" PRId64 " waits for %d ranks (store %s)", job_id(ctx), tr->world, addr);
	}
	for (;;) {
		enum queue_gang_state s;
		if ((rc = job_gang_poll(ctx, &s)) < 0) {
			snprintf(tr->why, sizeof tr->why, "train: gang poll: %s", at_strerror(rc));
			return rc;
		}
		if (s == QUEUE_GANG_FORMED)
			break;
		if (s != QUEUE_GANG_FILLING) {
			snprintf(tr->why, sizeof tr->why, "train: gang of %d %s before it formed", tr->world,
				 queue_gang_state_name(s));
			if (s == QUEUE_GANG_RELEASED && tr->rank == 0)
				job_gang_released(ctx);
			return AT_EBUSY;
		}
		if (job_stopping(ctx) || job_sleep_ms(ctx, 100) < 0) {
			snprintf(tr->why, sizeof tr->why, "train: stopped while the gang filled");
			return AT_ECANCELLED;
		}
	}
	tr->last_poll = now_s();
	if (tr->rank > 0) {
		/* host:port, the host possibly an IPv6 literal: the port follows the last ':' */
		char h[300];
		snprintf(h, sizeof h, "%s", job_gang_rendezvous(ctx));
		char *colon = strrchr(h, ':'), *end;
		long port = colon ? strtol(colon + 1, &end, 10) : 0;
		if (!colon || *end || port < 1 || port > 65535) {
			snprintf(tr->why, sizeof tr->why, "train: bad rendezvous address \"%s\"", h);
			return AT_EINVAL;
		}
		*colon = 0;
		if (!(tr->dist = am_dist_connect(h, (int)port, tr->rank, tr->world, tmo, tr->st)))
			return dist_fail(tr, "connecting to rank 0's store");
	}
	if (am_dist_join(tr->dist, host, tr->st) < 0)
		return dist_fail(tr, "forming the process group");
	if (am_dist_attach(tr->dist, tr->t, tr->st) < 0)
		return dist_fail(tr, "taking rank 0's state");
	log_info("train: job %" PRId64 " rank %d of %d in the group", job_id(ctx), tr->rank, tr->world);
	return 0;
}

/* Saves the trainer, stores it, and records it for the job. */
static int checkpoint(struct train *tr)
{
	char path[600], sha[65], job[32], step[32], parent[32], attempt[16], token[32];
	uint64_t size;
	tmp_path(tr, "checkpoint", path, sizeof path);
	int rc = am_trainer_save(tr->t, path, tr->st);
	if (rc < 0) {
		snprintf(tr->why, sizeof tr->why, "train: saving a checkpoint: %s", am_status_message(tr->st));
		return rc;
	}
	rc = artifact_put_file(tr->store, path, sha, &size);
	unlink(path);
	if (rc < 0) {
		snprintf(tr->why, sizeof tr->why, "train: storing a checkpoint: %s", at_strerror(rc));
		return rc;
	}
	snprintf(job, sizeof job, "%" PRId64, job_id(tr->ctx));
	snprintf(step, sizeof step, "%" PRIu64, am_trainer_steps(tr->t));
	snprintf(parent, sizeof parent, "%" PRId64, tr->parent_id);
	snprintf(attempt, sizeof attempt, "%d", job_attempt(tr->ctx));
	snprintf(token, sizeof token, "%" PRId64, job_token(tr->ctx));
	const char *v[7] = {job, step, sha, tr->parent_id ? parent : NULL, attempt, job_worker_name(tr->ctx), token};
	PGresult *r;
	/* fenced (sql/017_hosts.sql): an attempt that lost its lease must not
	 * replace the new owner's checkpoint at this step */
	rc = dataset_db_exec(tr->c,
			     "INSERT INTO train_checkpoints (job_id, step, sha256, parent_version_id, attempt, worker)"
			     " SELECT $1::bigint, $2::bigint, $3, $4::bigint, $5::int, $6"
			     " WHERE atelier_job_owned($1::bigint, $7::bigint)"
			     " ON CONFLICT (job_id, step) DO UPDATE"
			     " SET sha256 = excluded.sha256, attempt = excluded.attempt, worker = excluded.worker,"
			     " created_at = now() RETURNING 1",
			     7, v, 0, &r, tr->why, sizeof tr->why);
	if (rc < 0)
		return rc;
	int owned = PQntuples(r) == 1;
	PQclear(r);
	if (!owned) {
		snprintf(tr->why, sizeof tr->why,
			 "train: the job is no longer this attempt's (lease ran out, job re-claimed): checkpoint at "
			 "step %s not recorded",
			 step);
		log_warn("job %s: %s", job, tr->why);
		return AT_ESTALE;
	}
	log_info("train: job %s checkpoint at step %s (%.12s)", job, step, sha);
	return 0;
}

/* Resumes from the job's last checkpoint: 1 resumed, 0 none, < 0 error. */
static int try_resume(struct train *tr, const char *device, uint64_t *from)
{
	char job[32], sha[65], path[600];
	snprintf(job, sizeof job, "%" PRId64, job_id(tr->ctx));
	const char *v[1] = {job};
	PGresult *r;
	int rc = dataset_db_exec(tr->c,
				 "SELECT c.step, c.sha256, c.parent_version_id, v.version FROM train_checkpoints c"
				 " LEFT JOIN model_versions v ON v.id = c.parent_version_id"
				 " WHERE c.job_id = $1 ORDER BY c.step DESC LIMIT 1",
				 1, v, 0, &r, tr->why, sizeof tr->why);
	if (rc < 0)
		return rc;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return 0;
	}
	snprintf(sha, sizeof sha, "%s", PQgetvalue(r, 0, 1));
	int64_t parent = PQgetisnull(r, 0, 2) ? 0 : strtoll(PQgetvalue(r, 0, 2), NULL, 10);
	int pver = PQgetisnull(r, 0, 3) ? 0 : (int)strtol(PQgetvalue(r, 0, 3), NULL, 10);
	PQclear(r);
	tmp_path(tr, "resume", path, sizeof path);
	rc = artifact_get_file(tr->store, sha, path);
	if (rc == 0) {
		tr->t = am_trainer_load(path, device, tr->st);
		unlink(path);
	}
	if (rc < 0 || !tr->t) {
		/* Losing a checkpoint costs time, not correctness: start over. */
		log_warn("train: job %s: checkpoint %.12s unusable (%s); starting over", job, sha,
			 rc < 0 ? at_strerror(rc) : am_status_message(tr->st));
		return 0;
	}
	tr->parent_id = parent;
	tr->parent_version = pver;
	*from = am_trainer_steps(tr->t);
	return 1;
}

/* Warm start from production, when asked and there is one. */
static int warm_start(struct train *tr, const char *model)
{
	int found = 0, version = 0;
	int64_t vid = 0;
	char sha[65], path[600];
	int rc = dataset_db_production(tr->c, model, &found, &vid, &version, sha, tr->why, sizeof tr->why);
	if (rc < 0 || !found)
		return rc;
	tmp_path(tr, "warm", path, sizeof path);
	if ((rc = artifact_get_file(tr->store, sha, path)) < 0) {
		snprintf(tr->why, sizeof tr->why,
			 "train: production model %s v%d (%.12s) is not in the artifact store: %s", model, version, sha,
			 at_strerror(rc));
		return rc;
	}
	rc = am_trainer_warm_start(tr->t, path, tr->st);
	unlink(path);
	if (rc == AT_ECONFLICT && tr->preset_gpu) {
		/* Production was trained with the CPU preset's shapes (or the other
		 * way round): a mixed fleet must not fail every run, so this one
		 * starts from scratch and says why. */
		snprintf(tr->warm_note, sizeof tr->warm_note, "production %s v%d has other shapes: %s", model, version,
			 am_status_message(tr->st));
		log_warn("train: %s; training from scratch", tr->warm_note);
		return 0;
	}
	if (rc < 0) {
		snprintf(tr->why, sizeof tr->why, "train: warm start from %s v%d: %s", model, version,
			 am_status_message(tr->st));
		if (rc == AT_ECONFLICT || rc == AT_EINVAL)
			job_no_retry(tr->ctx);
		return rc;
	}
	tr->parent_id = vid;
	tr->parent_version = version;
	log_info("train: warm start from %s v%d", model, version);
	return 0;
}

/* The model config: params.model on the defaults, with the shard's size and
 * the stage's lr and seed (model keys win when both say). */
static int make_config(const struct train_params *tp, int size, int threads, am_config *cfg, am_status_t *st)
{
	json_t *o = json_deep_copy(tp->model);
	if (!o)
		return AT_ENOMEM;
	json_object_set_new(o, "image_size", json_integer(size));
	if (!json_object_get(o, "lr"))
		json_object_set_new(o, "lr", json_real(tp->lr));
	if (!json_object_get(o, "seed"))
		json_object_set_new(o, "seed", json_integer(tp->seed));
	if (threads > 0 && !json_object_get(o, "threads"))
		json_object_set_new(o, "threads", json_integer(threads));
	char *text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!text)
		return AT_ENOMEM;
	*cfg = am_config_default();
	int rc = am_config_from_json(text, cfg, st);
	free(text);
	return rc;
}

static const char *const loss_names[] = {"loss_gen",  "loss_dis",  "recon_x_a", "recon_x_b", "recon_s_a",
					 "recon_s_b", "recon_c_a", "recon_c_b", "cyc_x_a",   "cyc_x_b",
					 "gen_adv_a", "gen_adv_b", "dis_a",     "dis_b"};
#define NLOSS ((int)(sizeof loss_names / sizeof loss_names[0]))

static void loss_values(const am_losses *l, double *v)
{
	const double x[NLOSS] = {l->gen_total, l->dis_total, l->recon_x_a, l->recon_x_b, l->recon_s_a,
				 l->recon_s_b, l->recon_c_a, l->recon_c_b, l->cyc_x_a,   l->cyc_x_b,
				 l->gen_adv_a, l->gen_adv_b, l->dis_a,     l->dis_b};
	memcpy(v, x, sizeof x);
}

/* ---- presets ---- */

/*
 * Whether this job trains on CUDA: --device cuda, or auto/unset and
 * libtorch sees a GPU. --train-preset gpu|cpu overrides the choice of
 * preset (an operator's switch, and how the tests reach the GPU path's
 * parameter handling on a CPU-only host).
 */
static int wants_gpu_preset(const struct job_ctx *ctx)
{
	const char *p = job_train_preset(ctx);
	if (p && *p)
		return strcmp(p, "gpu") == 0;
	const char *d = job_device(ctx);
	if (d && strcmp(d, "cuda") == 0)
		return 1;
	if (d && *d && strcmp(d, "auto") != 0)
		return 0;
	return strncmp(am_device_name(), "cuda", 4) == 0;
}

/*
 * The params this job trains with (new reference): the stage's, with
 * params.gpu's keys on top when the job trains on a GPU (params.gpu.model's
 * keys on top of params.model's, key by key). The YAML schema checks gpu's
 * keys; "gpu" itself stays (train_params_read requires it, as the canonical
 * params always carry it).
 */
static json_t *effective_params(json_t *params, int gpu)
{
	json_t *p = json_deep_copy(params), *preset = json_object_get(params, "gpu");
	if (!p)
		return NULL;
	if (!gpu || !json_is_object(preset))
		return p;
	const char *k;
	json_t *v;
	json_object_foreach(preset, k, v)
	{
		json_t *base = json_object_get(p, k);
		if (strcmp(k, "model") == 0 && json_is_object(base) && json_is_object(v))
			json_object_update(base, v);
		else
			json_object_set(p, k, v);
	}
	return p;
}

int job_train(struct job_ctx *ctx)
{
	json_t *payload = job_payload(ctx), *stage = json_object_get(payload, "params");
	int gpu_preset = wants_gpu_preset(ctx) && json_is_object(json_object_get(stage, "gpu"));
	/* no params object: an empty one, so the reader names the first key missing */
	json_t *params = json_is_object(stage) ? effective_params(stage, gpu_preset) : json_object();
	if (!params) {
		job_errorf(ctx, "train: out of memory");
		return AT_ENOMEM;
	}
	struct params_reader pr;
	struct train_params tp;
	params_reader_init_obj(&pr, "train", params);
	pr.where = "params";
	int prc = train_params_read(&pr, &tp);
	long long steps = tp.steps, batch = tp.batch, ck_every = tp.checkpoint_every, m_every = tp.metrics_every;
	long long seed = tp.seed;
	const char *warm = tp.warm_start;
	const char *model = json_string_value(json_object_get(payload, "model"));
	json_t *shard_sha = dataset_input(payload, "prepare", "train_shard");
	json_t *dataset = dataset_input(payload, "prepare", "dataset");
	json_t *run = json_object_get(payload, "run");
	const char *device = job_device(ctx);
	struct train tr;
	struct shard sh;
	float *bs = NULL, *bp = NULL;
	char *cfg_json = NULL;
	int rc = 0;
	uint64_t resumed_from = 0;
	int resumed = 0;
	am_losses last = {0};

	memset(&tr, 0, sizeof tr);
	tr.ctx = ctx;
	tr.preset_gpu = gpu_preset;
	tr.c = job_db(ctx);
	shard_init(&sh, 0);
	if (prc < 0) {
		snprintf(tr.why, sizeof tr.why, "%s", pr.why);
		job_no_retry(ctx);
		rc = prc;
		goto out;
	}
	if (!model || !json_is_string(shard_sha) || steps < 1 || batch < 1 || batch > 1024 || ck_every < 1 ||
	    m_every < 1) {
		snprintf(tr.why, sizeof tr.why,
			 "train: needs payload.model, inputs.prepare.train_shard, steps >= 1, batch 1..1024, "
			 "checkpoint_every >= 1, metrics_every >= 1");
		job_no_retry(ctx);
		rc = AT_EINVAL;
		goto out;
	}
	if (!(tr.st = am_status_new())) {
		rc = AT_ENOMEM;
		goto out;
	}
	if ((rc = job_gang_role(ctx, &tr.rank, &tr.world)) < 0) {
		snprintf(tr.why, sizeof tr.why, "train: gang size: %s", at_strerror(rc));
		goto out;
	}
	if (tr.world < 1 || batch % tr.world != 0) {
		snprintf(tr.why, sizeof tr.why,
			 "train: params.batch (%lld) must be a multiple of resources.workers (%d): each rank trains on "
			 "an equal slice of every batch",
			 batch, tr.world);
		job_no_retry(ctx);
		rc = AT_EINVAL;
		goto out;
	}
	if (job_scratch_dir("train", tr.dir, sizeof tr.dir) < 0) {
		snprintf(tr.why, sizeof tr.why, "train: cannot create a temporary folder");
		rc = AT_EIO;
		goto out;
	}
	if ((rc = artifact_store_open(job_artifacts_uri(ctx), &tr.store)) < 0) {
		snprintf(tr.why, sizeof tr.why, "train: artifact store %s: %s", job_artifacts_uri(ctx),
			 at_strerror(rc));
		goto out;
	}

	/* ---- data ---- */
	char path[600];
	tmp_path(&tr, "shard", path, sizeof path);
	if ((rc = artifact_get_file(tr.store, json_string_value(shard_sha), path)) < 0 ||
	    (rc = shard_read_file(path, &sh)) < 0) {
		snprintf(tr.why, sizeof tr.why, "train: shard %.12s: %s", json_string_value(shard_sha),
			 at_strerror(rc));
		if (rc != AT_EIO && rc != AT_ENOMEM)
			job_no_retry(ctx);
		goto out;
	}
	unlink(path);
	if (sh.n_sketches < 1 || sh.n_paintings < 1) {
		snprintf(tr.why, sizeof tr.why, "train: the shard has %d sketch and %d painting samples", sh.n_sketches,
			 sh.n_paintings);
		job_no_retry(ctx);
		rc = AT_EUNPROCESSABLE;
		goto out;
	}

	/* ---- trainer: resume, or new (+ warm start) ---- */
	am_config cfg;
	if ((rc = make_config(&tp, sh.size, job_train_threads(ctx), &cfg, tr.st)) < 0) {
		snprintf(tr.why, sizeof tr.why, "train: model config: %s", am_status_message(tr.st));
		job_no_retry(ctx);
		goto out;
	}
	/* Ranks > 0 start fresh: the group brings them rank 0's state. */
	if (tr.rank == 0 && (rc = try_resume(&tr, device, &resumed_from)) < 0)
		goto out;
	resumed = tr.rank == 0 && rc == 1;
	if (resumed) {
		log_info("train: job %" PRId64 " resumed from step %" PRIu64 " (attempt %d)", job_id(ctx), resumed_from,
			 job_attempt(ctx));
	} else {
		if (device && *device)
			snprintf(cfg.device, sizeof cfg.device, "%s", device);
		if (!(tr.t = am_trainer_new(&cfg, tr.st))) {
			rc = am_status_code(tr.st);
			snprintf(tr.why, sizeof tr.why, "train: %s", am_status_message(tr.st));
			if (rc == AT_EINVAL || rc == AT_ERANGE)
				job_no_retry(ctx);
			goto out;
		}
		if (tr.rank == 0 && strcmp(warm, "production") == 0 && (rc = warm_start(&tr, model)) < 0)
			goto out;
	}
	if (tr.world > 1 && (rc = gang_form(&tr)) < 0)
		goto out;
	am_config used;
	am_trainer_get_config(tr.t, &used);
	cfg_json = am_config_to_json(&used);

	/* ---- loop ---- */
	size_t ss = (size_t)sh.size * sh.size;
	/* this rank's slice of every combined batch */
	long long per = batch / tr.world, first = (long long)tr.rank * per;
	bs = malloc((size_t)per * ss * sizeof *bs);
	bp = malloc((size_t)per * 3 * ss * sizeof *bp);
	if (!bs || !bp || !cfg_json) {
		rc = AT_ENOMEM;
		goto out;
	}
	uint64_t start = am_trainer_steps(tr.t), step = start;
	double t0 = now_s();
	while (step < (uint64_t)steps) {
		if (job_cancelled(ctx)) {
			snprintf(tr.why, sizeof tr.why, "train: stopped at step %" PRIu64, step);
			rc = AT_ECANCELLED;
			goto out;
		}
		if (job_stopping(ctx)) {
			/* the worker is shutting down: keep what we have, get released */
			if (tr.rank == 0 && step > start && (rc = checkpoint(&tr)) < 0)
				goto out;
			snprintf(tr.why, sizeof tr.why, "train: worker shutting down at step %" PRIu64, step);
			rc = AT_ECANCELLED;
			goto out;
		}
		uint64_t r = splitmix64_at(((uint64_t)seed << 32) ^ (step + 1));
		for (long long k = 0; k < per; k++) {
			long long b = first + k;
			int i = (int)(splitmix64_at(r + 2 * (uint64_t)b) % (uint64_t)sh.n_sketches);
			int j = (int)(splitmix64_at(r + 2 * (uint64_t)b + 1) % (uint64_t)sh.n_paintings);
			shard_sketch_float(&sh, i, bs + (size_t)k * ss);
			shard_painting_float(&sh, j, bp + (size_t)k * 3 * ss);
		}
		if ((rc = gang_check(&tr, 0)) < 0)
			goto out;
		if ((rc = am_trainer_step(tr.t, bs, bp, (int)per, &last, tr.st)) < 0) {
			snprintf(tr.why, sizeof tr.why, "train: step %" PRIu64 ": %s", step + 1,
				 am_status_message(tr.st));
			goto out;
		}
		step = am_trainer_steps(tr.t);
		double v[NLOSS];
		loss_values(&last, v);
		for (int k = 0; k < NLOSS; k++)
			if (!isfinite(v[k])) {
				snprintf(tr.why, sizeof tr.why,
					 "train: %s is not finite at step %" PRIu64 " (diverged)", loss_names[k], step);
				job_no_retry(ctx);
				rc = AT_EUNPROCESSABLE;
				goto out;
			}
		if (tr.rank > 0)
			continue; /* the job's records are rank 0's */
		if (step % (uint64_t)m_every == 0 || step == (uint64_t)steps) {
			if ((rc = job_metrics(ctx, (int64_t)step, loss_names, v, NLOSS)) < 0) {
				snprintf(tr.why, sizeof tr.why, "train: recording metrics: %s", at_strerror(rc));
				goto out;
			}
		}
		if (step % (uint64_t)ck_every == 0 && step < (uint64_t)steps && (rc = checkpoint(&tr)) < 0)
			goto out;
		double el = now_s() - t0, per = el / (double)(step - start);
		char msg[128];
		snprintf(msg, sizeof msg, "step %" PRIu64 "/%lld gen %.3f dis %.3f", step, steps, last.gen_total,
			 last.dis_total);
		job_progress(ctx, (double)step / (double)steps, msg, (int)ceil(per * (double)((uint64_t)steps - step)));
	}

	if (tr.rank > 0) {
		rc = 0;
		goto out;
	}
	/* ---- export and register ---- */
	char sha[65], uri[512], size_s[32], runs[32], ds[32], parent[32];
	uint64_t size = 0;
	tmp_path(&tr, "export", path, sizeof path);
	if ((rc = am_trainer_export(tr.t, path, tr.st)) < 0) {
		snprintf(tr.why, sizeof tr.why, "train: export: %s", am_status_message(tr.st));
		goto out;
	}
	rc = artifact_put_file(tr.store, path, sha, &size);
	unlink(path);
	if (rc < 0) {
		snprintf(tr.why, sizeof tr.why, "train: storing the export: %s", at_strerror(rc));
		goto out;
	}
	if ((rc = artifact_uri(tr.store, sha, uri, sizeof uri)) < 0) {
		snprintf(tr.why, sizeof tr.why, "train: the export's URI does not fit");
		goto out;
	}
	snprintf(size_s, sizeof size_s, "%" PRIu64, size);
	snprintf(runs, sizeof runs, "%lld", (long long)json_integer_value(run));
	snprintf(ds, sizeof ds, "%lld", (long long)json_integer_value(dataset));
	snprintf(parent, sizeof parent, "%" PRId64, tr.parent_id);
	char jobs[32], token[32];
	snprintf(jobs, sizeof jobs, "%" PRId64, job_id(ctx));
	snprintf(token, sizeof token, "%" PRId64, job_token(ctx));
	const char *v[10] = {model,
			     sha,
			     size_s,
			     uri,
			     json_is_integer(run) ? runs : NULL,
			     json_is_integer(dataset) ? ds : NULL,
			     tr.parent_id ? parent : NULL,
			     cfg_json,
			     jobs,
			     token};
	PGresult *res;
	/* Fenced (sql/017_hosts.sql): an attempt whose lease ran out while it
	 * was cut off registers nothing; another attempt owns the run's version.
	 * The CTE locks the job's row first and the registration runs only
	 * for a row it returned (a select list over an empty FROM is never
	 * evaluated); OFFSET 0 keeps the planner from expanding (r).* into one
	 * call per column. */
	if ((rc = dataset_db_exec(
		     tr.c,
		     "WITH own AS (SELECT 1 WHERE atelier_job_owned($9::bigint, $10::bigint))"
		     " SELECT (r).version_id, (r).version, (r).created FROM (SELECT"
		     " atelier_register_version($1, $2, $3, $4, $5, $6, $7, $8::jsonb, '{}'::jsonb, NULL) r"
		     " FROM own) x",
		     10, v, 0, &res, tr.why, sizeof tr.why)) < 0)
		goto out;
	if (PQntuples(res) != 1) {
		PQclear(res);
		snprintf(tr.why, sizeof tr.why,
			 "train: the job is no longer this attempt's (lease ran out, job re-claimed): its export "
			 "%.12s is not registered",
			 sha);
		log_warn("job %s: %s", jobs, tr.why);
		rc = AT_ESTALE;
		goto out;
	}
	int64_t version_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	int version = (int)strtol(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);

	double fv[NLOSS];
	loss_values(&last, fv);
	json_t *losses = json_object();
	for (int k = 0; k < NLOSS && losses; k++)
		json_object_set_new(losses, loss_names[k], json_real(fv[k]));
	json_error_t jerr;
	json_t *out =
		json_pack("{s:i, s:I, s:s, s:I, s:I, s:o, s:o, s:o, s:o, s:s, s:o, s:s, s:o?, s:O?, s:O?, s:s, s:s?}",
			  "version", version, "version_id", (json_int_t)version_id, "sha256", sha, "size",
			  (json_int_t)size, "steps", (json_int_t)am_trainer_steps(tr.t), "final_losses",
			  losses ? losses : json_null(), "parent_version",
			  tr.parent_id ? json_integer(tr.parent_version) : json_null(), "parent_version_id",
			  tr.parent_id ? json_integer(tr.parent_id) : json_null(), "dataset",
			  json_is_integer(dataset) ? json_integer(json_integer_value(dataset)) : json_null(),
			  "warm_start", tr.parent_id ? "production" : "scratch", "resumed_from_step",
			  resumed ? json_integer((json_int_t)resumed_from) : json_null(), "device", am_device_name(),
			  "config", json_loads(cfg_json, 0, &jerr),
			  /* evaluate needs only train, so the holdout shard travels on */
			  "train_shard", shard_sha, "holdout_shard", dataset_input(payload, "prepare", "holdout_shard"),
			  "preset", gpu_preset ? "gpu" : "cpu", "warm_start_skipped",
			  tr.warm_note[0] ? tr.warm_note : NULL);
	if (out && tr.world > 1) {
		am_dist_stats ds;
		am_dist_get_stats(tr.dist, &ds);
		json_object_set_new(out, "gang",
				    json_pack("{s:i, s:I, s:I, s:I, s:f}", "workers", tr.world, "batch_per_rank",
					      (json_int_t)per, "allreduces", (json_int_t)ds.allreduces,
					      "allreduce_bytes", (json_int_t)ds.bytes, "allreduce_s", ds.seconds));
	}
	log_info("train: job %" PRId64 " registered %s v%d (%.12s, %" PRIu64 " bytes) after %lld steps", job_id(ctx),
		 model, version, sha, size, steps);
	job_set_result(ctx, out);
	rc = 0;
out:
	if (rc < 0)
		job_errorf(ctx, "%s", tr.why[0] ? tr.why : at_strerror(rc));
	free(bs);
	free(bp);
	free(cfg_json);
	json_decref(params);
	shard_free(&sh);
	am_trainer_free(tr.t);
	am_dist_free(tr.dist);
	am_status_free(tr.st);
	artifact_store_close(tr.store);
	if (tr.dir[0]) {
		/* whatever a failed step left behind */
		static const char *const names[] = {"checkpoint", "resume", "warm", "shard", "export"};
		for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
			tmp_path(&tr, names[i], path, sizeof path);
			unlink(path);
		}
		rmdir(tr.dir);
	}
	return rc;
}
