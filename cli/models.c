/*
 * models.c — `atelier models`, `atelier ledger MODEL`, `atelier promote MODEL
 * VERSION [--channel C] [--reason TEXT]`, `atelier rollback MODEL [--channel C]
 * [--reason TEXT]`, `atelier nodes`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

/* Model names are [a-z0-9_-] (pipeline_yaml.c) and go into request paths
 * unescaped: anything else is a usage error here, not a confusing 404. */
static int model_arg(const struct cli_args *a, const char *m)
{
	size_t n = strlen(m);
	int ok = n > 0 && n < 64;
	for (size_t i = 0; ok && i < n; i++)
		ok = (m[i] >= 'a' && m[i] <= 'z') || (m[i] >= 'A' && m[i] <= 'Z') || (m[i] >= '0' && m[i] <= '9') ||
		     m[i] == '_' || m[i] == '-' || m[i] == '.';
	if (!ok)
		fprintf(stderr, "atelier %s: \"%s\" is not a model name\n", a->cmd->name, m);
	return ok ? 0 : 2;
}

int cmd_models(struct cli *c, const struct cli_args *a)
{
	json_t *out;
	long st;
	if (a->npos == 1) {
		if (model_arg(a, a->pos[0]))
			return 2;
		char path[256];
		snprintf(path, sizeof path, "/v1/models/%s/versions", a->pos[0]);
		if (cli_json(c, "GET", path, NULL, &st, &out) < 0)
			return 1;
		if (c->json) {
			cli_print_json(out);
		} else {
			printf("%-8s %-14s %-10s %-8s %-10s %-10s %-10s %s\n", "VERSION", "SHA256", "SIZE", "RUN",
			       "DATASET", "PARENT", "WITHDRAWN", "CHANNELS");
			size_t i;
			json_t *v;
			json_array_foreach(json_object_get(out, "versions"), i, v)
			{
				char chans[64] = "";
				size_t k, off = 0;
				json_t *ch;
				json_array_foreach(json_object_get(v, "channels"), k, ch)
				{
					if (off < sizeof chans)
						off += (size_t)snprintf(chans + off, sizeof chans - off, "%s ",
									json_string_value(ch));
				}
				/* trained on withdrawn sketches (sql/014_rights.sql): "!" and how many */
				long long wd = (long long)json_integer_value(json_object_get(v, "withdrawn_sketches"));
				char wds[24] = "-";
				if (wd > 0)
					snprintf(wds, sizeof wds, "!%lld", wd);
				printf("%-8lld %-14.12s %-10lld %-8lld %-10lld %-10lld %-10s %s\n",
				       (long long)json_integer_value(json_object_get(v, "version")),
				       json_string_value(json_object_get(v, "sha256")),
				       (long long)json_integer_value(json_object_get(v, "size")),
				       (long long)json_integer_value(json_object_get(v, "run_id")),
				       (long long)json_integer_value(json_object_get(v, "dataset_id")),
				       (long long)json_integer_value(json_object_get(v, "parent_version")), wds, chans);
			}
		}
		json_decref(out);
		return 0;
	}
	if (cli_json(c, "GET", "/v1/models", NULL, &st, &out) < 0)
		return 1;
	if (c->json) {
		cli_print_json(out);
	} else {
		printf("%-20s %-9s %-10s %s\n", "MODEL", "VERSIONS", "CANARY", "PRODUCTION");
		size_t i;
		json_t *m;
		json_array_foreach(json_object_get(out, "models"), i, m)
		{
			json_t *ch = json_object_get(m, "channels");
			json_t *cn = json_object_get(ch, "canary"), *pr = json_object_get(ch, "production");
			char cs[24] = "-", ps[24] = "-";
			if (json_is_integer(cn))
				snprintf(cs, sizeof cs, "v%lld", (long long)json_integer_value(cn));
			if (json_is_integer(pr))
				snprintf(ps, sizeof ps, "v%lld", (long long)json_integer_value(pr));
			printf("%-20s %-9lld %-10s %s\n", json_string_value(json_object_get(m, "name")),
			       (long long)json_integer_value(json_object_get(m, "versions")), cs, ps);
		}
	}
	json_decref(out);
	return 0;
}

static int move(struct cli *c, const struct cli_args *a, json_t *body)
{
	const char *model = a->pos[0], *channel = cli_arg(a, "channel");
	if (!channel)
		channel = "production";
	if (strcmp(channel, "production") && strcmp(channel, "canary")) {
		fprintf(stderr, "atelier %s: --channel is canary or production, not \"%s\"\n", a->cmd->name, channel);
		json_decref(body);
		return 2;
	}
	const char *reason = cli_arg(a, "reason");
	/* the ledger keeps the reason; without --reason it still says which command moved the channel */
	json_object_set_new(body, "reason",
			    json_string(reason                             ? reason
					: !strcmp(a->cmd->name, "promote") ? "atelier promote"
									   : "atelier rollback"));
	char path[256];
	snprintf(path, sizeof path, "/v1/models/%s/channels/%s", model, channel);
	json_t *out;
	long st;
	int rc = cli_json(c, "POST", path, body, &st, &out);
	json_decref(body);
	if (rc < 0)
		return 1;
	if (c->json) {
		cli_print_json(out);
	} else {
		json_t *from = json_object_get(out, "from");
		char fs[32] = "(none)";
		if (json_is_integer(from))
			snprintf(fs, sizeof fs, "v%lld", (long long)json_integer_value(from));
		if (json_is_true(json_object_get(out, "moved")))
			printf("%s/%s: %s -> v%lld\n", model, channel, fs,
			       (long long)json_integer_value(json_object_get(out, "to")));
		else
			printf("%s/%s: already at v%lld\n", model, channel,
			       (long long)json_integer_value(json_object_get(out, "to")));
	}
	json_decref(out);
	return 0;
}

int cmd_promote(struct cli *c, const struct cli_args *a)
{
	char *end = NULL;
	long long v = strtoll(a->pos[1], &end, 10);
	if (*end || v <= 0 || end == a->pos[1]) {
		fprintf(stderr, "atelier promote: VERSION must be a version number, not \"%s\"\n", a->pos[1]);
		return 2;
	}
	if (model_arg(a, a->pos[0]))
		return 2;
	return move(c, a, json_pack("{sI}", "version", (json_int_t)v));
}

int cmd_rollback(struct cli *c, const struct cli_args *a)
{
	if (model_arg(a, a->pos[0]))
		return 2;
	return move(c, a, json_pack("{ss}", "action", "rollback"));
}

/* A timestamp from the API ("2026-12-03T13:07:52.123456+00:00") cut to the
 * minute for a table column. */
static const char *short_time(const char *ts, char *out, size_t n)
{
	if (!ts)
		return "-";
	snprintf(out, n, "%.16s", ts);
	char *t = strchr(out, 'T');
	if (t)
		*t = ' ';
	return out;
}

int cmd_ledger(struct cli *c, const struct cli_args *a)
{
	if (model_arg(a, a->pos[0]))
		return 2;
	char path[256];
	snprintf(path, sizeof path, "/v1/models/%s/ledger", a->pos[0]);
	json_t *out;
	long st;
	if (cli_json(c, "GET", path, NULL, &st, &out) < 0)
		return 1;
	if (c->json) {
		cli_print_json(out);
		json_decref(out);
		return 0;
	}
	printf("%-16s %-20s %-10s %-11s %-12s %s\n", "WHEN", "WHO", "ACTION", "CHANNEL", "FROM -> TO", "REASON");
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(out, "ledger"), i, e)
	{
		char when[24], move[40], fs[16] = "-", ts[16] = "-";
		json_t *from = json_object_get(e, "from"), *to = json_object_get(e, "to");
		if (json_is_integer(from))
			snprintf(fs, sizeof fs, "v%lld", (long long)json_integer_value(from));
		if (json_is_integer(to))
			snprintf(ts, sizeof ts, "v%lld", (long long)json_integer_value(to));
		snprintf(move, sizeof move, "%s -> %s", fs, ts);
		const char *actor = json_string_value(json_object_get(e, "actor"));
		const char *reason = json_string_value(json_object_get(e, "reason"));
		const char *kind = json_string_value(json_object_get(e, "kind"));
		const char *chan = json_string_value(json_object_get(e, "channel"));
		printf("%-16s %-20s %-10s %-11s %-12s %s\n",
		       short_time(json_string_value(json_object_get(e, "at")), when, sizeof when), actor ? actor : "-",
		       kind ? kind : "-", chan ? chan : "-", move, reason ? reason : "");
	}
	json_decref(out);
	return 0;
}

int cmd_nodes(struct cli *c, const struct cli_args *a)
{
	json_t *out;
	long st;
	if (cli_json(c, "GET", "/v1/nodes", NULL, &st, &out) < 0)
		return 1;
	if (c->json) {
		cli_print_json(out);
	} else {
		printf("%-20s %-16s %-11s %-8s %-10s %-8s %-8s %s\n", "NODE", "MODEL", "CHANNEL", "VERSION", "REQUESTS",
		       "ERR%", "P95 ms", "ALIVE");
		size_t i;
		json_t *n;
		json_array_foreach(json_object_get(out, "nodes"), i, n)
		{
			printf("%-20s %-16s %-11s %-8lld %-10lld %-8.2f %-8.0f %s\n",
			       json_string_value(json_object_get(n, "name")),
			       json_string_value(json_object_get(n, "model"))
				       ? json_string_value(json_object_get(n, "model"))
				       : "-",
			       json_string_value(json_object_get(n, "channel"))
				       ? json_string_value(json_object_get(n, "channel"))
				       : "-",
			       (long long)json_integer_value(json_object_get(n, "version")),
			       (long long)json_integer_value(json_object_get(n, "requests")),
			       100 * json_number_value(json_object_get(n, "error_rate")),
			       json_number_value(json_object_get(n, "p95_ms")),
			       json_is_true(json_object_get(n, "alive")) ? "yes" : "no");
		}
	}
	json_decref(out);
	return 0;
}
