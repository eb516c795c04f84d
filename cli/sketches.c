/*
 * sketches.c — `atelier sketches delete ID... | --contributor NAME [--dry-run]
 * [--yes]` and `atelier sketches lineage ID`: an operator's side of
 * contributors' rights (orchestrator/rights.c).
 *
 * delete always asks atelierd for a dry run first and prints what would go;
 * it withdraws only after a "y" on a terminal or with --yes, so a script
 * without --yes changes nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"

static int parse_id(const char *cmd, const char *w, long long *id)
{
	char *end;
	long long v = strtoll(w, &end, 10);
	if (!*w || *end || v < 1) {
		fprintf(stderr, "atelier %s: \"%s\" is not a sketch id\n", cmd, w);
		return 2;
	}
	*id = v;
	return 0;
}

static void print_rows(json_t *out, const char *verb)
{
	json_t *rows = json_object_get(out, "sketches");
	printf("%s %zu sketch(es)\n", verb, json_array_size(rows));
	if (json_array_size(rows))
		printf("  %-10s %-9s %-24s %s\n", "ID", "STATUS", "CREATED", "CONTRIBUTOR");
	size_t i;
	json_t *r;
	json_array_foreach(rows, i, r)
	{
		const char *who = json_string_value(json_object_get(r, "contributor"));
		printf("  %-10lld %-9s %-24.19s %s\n", (long long)json_integer_value(json_object_get(r, "id")),
		       json_string_value(json_object_get(r, "status")),
		       json_string_value(json_object_get(r, "created_at")), who ? who : "-");
	}
	json_t *nf = json_object_get(out, "not_found");
	if (json_array_size(nf)) {
		printf("not sketches (left alone):");
		json_array_foreach(nf, i, r) printf(" %lld", (long long)json_integer_value(r));
		printf("\n");
	}
}

int cmd_sketches_delete(struct cli *c, const struct cli_args *a)
{
	const char *who = cli_arg(a, "contributor");
	int dry = cli_arg(a, "dry-run") != NULL, yes = cli_arg(a, "yes") != NULL;
	if ((who != NULL) == (a->npos > 0)) {
		fprintf(stderr, "atelier %s: give sketch ids or --contributor NAME (one of them)\n", a->cmd->name);
		return 2;
	}
	json_t *body = json_object();
	if (who) {
		json_object_set_new(body, "contributor", json_string(who));
	} else {
		json_t *ids = json_array();
		for (int i = 0; i < a->npos; i++) {
			long long id;
			if (parse_id(a->cmd->name, a->pos[i], &id)) {
				json_decref(ids);
				json_decref(body);
				return 2;
			}
			json_array_append_new(ids, json_integer(id));
		}
		json_object_set_new(body, "ids", ids);
	}
	json_object_set_new(body, "dry_run", json_true());
	json_t *out;
	long st;
	int rc = 1;
	if (cli_json(c, "POST", "/v1/sketches/withdraw", body, &st, &out) < 0)
		goto done;
	size_t n = json_array_size(json_object_get(out, "sketches"));
	if (dry || n == 0) {
		if (c->json)
			cli_print_json(out);
		else
			print_rows(out, dry ? "would withdraw" : "nothing to withdraw:");
		json_decref(out);
		rc = 0;
		goto done;
	}
	if (!c->json)
		print_rows(out, "would withdraw");
	json_decref(out);
	if (!yes) {
		if (!isatty(STDIN_FILENO)) {
			fprintf(stderr, "atelier %s: not a terminal: add --yes to withdraw (nothing changed)\n",
				a->cmd->name);
			rc = 2;
			goto done;
		}
		printf("withdraw these %zu sketch(es)? their pixels are deleted for good [y/N] ", n);
		fflush(stdout);
		char line[16];
		if (!fgets(line, sizeof line, stdin) || (line[0] != 'y' && line[0] != 'Y')) {
			printf("nothing changed\n");
			rc = 0;
			goto done;
		}
	}
	json_object_set_new(body, "dry_run", json_false());
	if (cli_json(c, "POST", "/v1/sketches/withdraw", body, &st, &out) < 0)
		goto done;
	if (c->json)
		cli_print_json(out);
	else
		print_rows(out, "withdrew");
	json_decref(out);
	rc = 0;
done:
	json_decref(body);
	return rc;
}

int cmd_sketches_lineage(struct cli *c, const struct cli_args *a)
{
	long long id;
	if (parse_id(a->cmd->name, a->pos[0], &id))
		return 2;
	char path[64];
	snprintf(path, sizeof path, "/v1/sketches/%lld/lineage", id);
	json_t *out;
	long st;
	if (cli_json(c, "GET", path, NULL, &st, &out) < 0)
		return 1;
	if (c->json) {
		cli_print_json(out);
		json_decref(out);
		return 0;
	}
	json_t *sk = json_object_get(out, "sketch");
	printf("sketch %lld: %s (%s)\n", id, json_string_value(json_object_get(sk, "status")),
	       json_string_value(json_object_get(sk, "split")));
	size_t i;
	json_t *r;
	json_t *ds = json_object_get(out, "datasets");
	printf("datasets (%zu):\n", json_array_size(ds));
	json_array_foreach(ds, i, r)
	{
		const char *p = json_string_value(json_object_get(r, "pipeline"));
		printf("  %-8lld %-8s pipeline %s, run %lld\n", (long long)json_integer_value(json_object_get(r, "id")),
		       json_string_value(json_object_get(r, "role")), p ? p : "-",
		       (long long)json_integer_value(json_object_get(r, "run_id")));
	}
	json_t *vs = json_object_get(out, "versions");
	printf("model versions that trained on it (%zu):\n", json_array_size(vs));
	json_array_foreach(vs, i, r)
	{
		char chans[64] = "";
		size_t k, off = 0;
		json_t *ch;
		json_array_foreach(json_object_get(r, "channels"), k, ch)
		{
			if (off < sizeof chans)
				off += (size_t)snprintf(chans + off, sizeof chans - off, " %s", json_string_value(ch));
		}
		printf("  %s v%lld%s%s\n", json_string_value(json_object_get(r, "model")),
		       (long long)json_integer_value(json_object_get(r, "version")),
		       json_is_true(json_object_get(r, "direct")) ? "" : " (through its parent)", chans);
	}
	json_decref(out);
	return 0;
}
