/*
 * jobs_promote.c — the `promote` stage: the candidate that passed evaluation
 * goes to the canary channel, bakes there while canary nodes report health in
 * their heartbeats, then goes to production — or the canary is rolled back
 * automatically. Every move is a ledger row (atelier_move_channel).
 *
 * Idempotent: the candidate was registered by `train` (by sha256, so once);
 * a move to where a channel already points writes nothing; a retried promote
 * therefore never creates a second version or a second ledger entry.
 *
 * Health during the bake: heartbeats of nodes on this model's canary channel
 * serving the candidate version, received since the canary move. Any of them
 * over max_error_rate or max_p95_ms rolls the canary back. Evidence is
 * required: fewer than min_canary_nodes such nodes (unset: 1 when any node
 * follows this model's canary channel, 0 for a fleet without canary nodes)
 * holds the candidate on canary and fails the stage, production unchanged.
 * Every ledger row the stage writes says what evidence the move had (nodes,
 * requests, worst error rate and p95).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "log.h"
#include "params.h"

static PGresult *q(PGconn *c, const char *sql, int n, const char *const *v)
{
	return PQexecParams(c, sql, n, NULL, v, NULL, NULL, 0);
}

static int ok(PGresult *r) { return PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK; }

int job_promote(struct job_ctx *ctx)
{
	PGconn *c = job_db(ctx);
	json_t *p = job_payload(ctx);
	const char *model = json_string_value(json_object_get(p, "model"));
	json_int_t run = json_integer_value(json_object_get(p, "run"));
	const char *pipeline = json_string_value(json_object_get(p, "pipeline"));
	struct params_reader pr;
	struct promote_params pp;
	params_reader_init(&pr, "promote", p);
	int prc = promote_params_read(&pr, &pp);
	double bake_ms = pp.canary_bake_ms, max_err = pp.max_error_rate, max_p95 = pp.max_p95_ms;
	char runs[32], actor[160];
	snprintf(runs, sizeof runs, "%lld", (long long)run);
	snprintf(actor, sizeof actor, "pipeline:%s", pipeline ? pipeline : "?");
	if (prc < 0) {
		job_errorf(ctx, "%s", pr.why);
		job_no_retry(ctx);
		return prc;
	}
	if (!model || run <= 0) {
		job_errorf(ctx, "promote: payload needs model and run");
		job_no_retry(ctx);
		return AT_EINVAL;
	}

	/* The candidate: what this run's train stage registered. */
	const char *v1[1] = {runs};
	PGresult *r = q(c,
			"SELECT (j.result->>'version_id')::bigint, v.version FROM jobs j JOIN model_versions v "
			"ON v.id = (j.result->>'version_id')::bigint WHERE j.run_id = $1 AND j.kind = 'train' "
			"AND j.state = 'succeeded' ORDER BY j.id DESC LIMIT 1",
			1, v1);
	if (!ok(r) || PQntuples(r) != 1) {
		job_errorf(ctx, "promote: this run has no trained candidate%s%s", ok(r) ? "" : ": ",
			   ok(r) ? "" : PQresultErrorMessage(r));
		int retry = !ok(r);
		PQclear(r);
		if (!retry)
			job_no_retry(ctx);
		return AT_ENOTFOUND;
	}
	char vid[32], vnum[32];
	snprintf(vid, sizeof vid, "%s", PQgetvalue(r, 0, 0));
	snprintf(vnum, sizeof vnum, "%s", PQgetvalue(r, 0, 1));
	PQclear(r);

	/* canary */
	const char *mv[6] = {model, "canary", vid, actor, "passed evaluation", runs};
	r = q(c, "SELECT moved FROM atelier_move_channel($1, $2, $3::bigint, $4, $5, 'promote', $6::bigint)", 6, mv);
	if (!ok(r)) {
		job_errorf(ctx, "promote: canary move failed: %s", PQresultErrorMessage(r));
		PQclear(r);
		return AT_EDB;
	}
	PQclear(r);
	job_progress(ctx, 0.1, "on canary, baking", (int)(bake_ms / 1000));
	log_info("promote: %s v%s on canary; baking %.0f ms", model, vnum, bake_ms);

	/* bake, in steps so cancel and progress stay live */
	r = q(c, "SELECT now()", 0, NULL);
	char since[64];
	snprintf(since, sizeof since, "%s", ok(r) ? PQgetvalue(r, 0, 0) : "now");
	PQclear(r);
	for (double waited = 0; waited < bake_ms;) {
		int step = bake_ms - waited > 500 ? 500 : (int)(bake_ms - waited);
		if (job_sleep_ms(ctx, step) < 0) {
			job_errorf(ctx, "promote: stopped during the canary bake");
			return AT_ECANCELLED;
		}
		waited += step;
		job_progress(ctx, 0.1 + 0.8 * waited / (bake_ms > 0 ? bake_ms : 1), "baking on canary",
			     (int)((bake_ms - waited) / 1000));
	}

	const char *hv[4] = {model, vnum, since, NULL};
	r = q(c,
	      /* requests: each node's counter at its last heartbeat, summed; followers: canary
	       * nodes of this model seen since shortly before the move, whatever they serve */
	      "SELECT count(*), coalesce(max(e), 0), coalesce(max(p), 0), coalesce(sum(n), 0), "
	      "(SELECT count(*) FROM nodes WHERE model = $1 AND channel = 'canary' "
	      "AND last_seen > $3::timestamptz - interval '5 minutes') FROM (SELECT node, max(error_rate) AS e, "
	      "max(p95_ms) AS p, max(requests) AS n FROM node_heartbeats WHERE model = $1 AND channel = 'canary' "
	      "AND version = $2::int AND ts >= $3::timestamptz GROUP BY node) h",
	      3, hv);
	if (!ok(r)) {
		job_errorf(ctx, "promote: cannot read canary health: %s", PQresultErrorMessage(r));
		PQclear(r);
		return AT_EDB;
	}
	long nodes = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	double err = strtod(PQgetvalue(r, 0, 1), NULL), p95 = strtod(PQgetvalue(r, 0, 2), NULL);
	long long requests = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
	long followers = strtol(PQgetvalue(r, 0, 4), NULL, 10);
	PQclear(r);
	long long min_nodes = pp.min_canary_nodes >= 0 ? pp.min_canary_nodes : followers > 0 ? 1 : 0;
	json_t *canary =
		json_pack("{si,sI,sf,sf,sf,sf,sI,si}", "nodes", (int)nodes, "requests", (json_int_t)requests,
			  "max_error_rate", err, "max_p95_ms", p95, "limit_error_rate", max_err, "limit_p95_ms",
			  max_p95, "min_nodes", (json_int_t)min_nodes, "followers", (int)followers);
	char evidence[200];
	snprintf(evidence, sizeof evidence,
		 "%ld canary node%s on v%s (min %lld), %lld requests, max error rate %.4f, max p95 %.0f ms", nodes,
		 nodes == 1 ? "" : "s", vnum, min_nodes, requests, err, p95);

	if (nodes < min_nodes) {
		/* Not unhealthy, unproven: the candidate stays on canary (nothing to
		 * roll back from), production keeps its version. */
		json_decref(canary);
		job_errorf(ctx,
			   "promote: not enough canary evidence after the bake: %s; held on canary, production "
			   "unchanged",
			   evidence);
		job_no_retry(ctx);
		return AT_EUNPROCESSABLE;
	}

	if (nodes > 0 && (err > max_err || p95 > max_p95)) {
		char reason[400];
		snprintf(reason, sizeof reason,
			 "canary unhealthy: error rate %.4f (limit %.4f), p95 %.0f ms (limit %.0f); evidence: %s", err,
			 max_err, p95, max_p95, evidence);
		const char *rb[5] = {model, "canary", actor, reason, runs};
		r = q(c, "SELECT moved FROM atelier_rollback($1, $2, $3, $4, 'auto-rollback', $5::bigint)", 5, rb);
		if (!ok(r))
			log_warn("promote: auto-rollback: %s", PQresultErrorMessage(r));
		PQclear(r);
		json_decref(canary);
		job_errorf(ctx, "%s; canary rolled back", reason);
		job_no_retry(ctx);
		return AT_EUNPROCESSABLE;
	}

	/* production: the ledger row says what the move rested on */
	char why[300];
	snprintf(why, sizeof why, "%s: %s", nodes ? "canary healthy" : "no canary evidence required", evidence);
	const char *pv[6] = {model, "production", vid, actor, why, runs};
	r = q(c, "SELECT moved FROM atelier_move_channel($1, $2, $3::bigint, $4, $5, 'promote', $6::bigint)", 6, pv);
	if (!ok(r)) {
		json_decref(canary);
		job_errorf(ctx, "promote: production move failed: %s", PQresultErrorMessage(r));
		PQclear(r);
		return AT_EDB;
	}
	PQclear(r);
	log_info("promote: %s v%s is in production", model, vnum);
	job_set_result(ctx, json_pack("{ss,sI,sI,so,ss}", "model", model, "version",
				      (json_int_t)strtoll(vnum, NULL, 10), "version_id",
				      (json_int_t)strtoll(vid, NULL, 10), "canary", canary, "production", "moved"));
	return 0;
}
