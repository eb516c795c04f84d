/*
 * models.c — `atelier models`, `atelier promote MODEL VERSION [--channel C]`,
 * `atelier rollback MODEL [--channel C]`, `atelier nodes`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

static void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2));
	if (s)
		puts(s);
	free(s);
}

static const char *channel_arg(int *argc, char **argv, const char *def)
{
	for (int i = 0; i < *argc; i++)
		if (!strcmp(argv[i], "--channel") && i + 1 < *argc) {
			const char *c = argv[i + 1];
			memmove(&argv[i], &argv[i + 2], (size_t)(*argc - i - 2) * sizeof *argv);
			*argc -= 2;
			return c;
		}
	return def;
}

int cmd_models(struct cli *c, int argc, char **argv)
{
	json_t *out;
	long st;
	if (argc == 1) {
		char path[256];
		snprintf(path, sizeof path, "/v1/models/%s/versions", argv[0]);
		if (cli_json(c, "GET", path, NULL, &st, &out) < 0)
			return 1;
		if (c->json) {
			print_json(out);
		} else {
			printf("%-8s %-14s %-10s %-8s %-10s %-10s %s\n", "VERSION", "SHA256", "SIZE", "RUN", "DATASET", "PARENT",
			       "CHANNELS");
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
				printf("%-8lld %-14.12s %-10lld %-8lld %-10lld %-10lld %s\n",
				       (long long)json_integer_value(json_object_get(v, "version")),
				       json_string_value(json_object_get(v, "sha256")),
				       (long long)json_integer_value(json_object_get(v, "size")),
				       (long long)json_integer_value(json_object_get(v, "run_id")),
				       (long long)json_integer_value(json_object_get(v, "dataset_id")),
				       (long long)json_integer_value(json_object_get(v, "parent_version")), chans);
			}
		}
		json_decref(out);
		return 0;
	}
	if (cli_json(c, "GET", "/v1/models", NULL, &st, &out) < 0)
		return 1;
	if (c->json) {
		print_json(out);
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

static int move(struct cli *c, const char *model, const char *channel, json_t *body)
{
	char path[256];
	snprintf(path, sizeof path, "/v1/models/%s/channels/%s", model, channel);
	json_t *out;
	long st;
	int rc = cli_json(c, "POST", path, body, &st, &out);
	json_decref(body);
	if (rc < 0)
		return 1;
	if (c->json) {
		print_json(out);
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

int cmd_promote(struct cli *c, int argc, char **argv)
{
	const char *channel = channel_arg(&argc, argv, "production");
	char *end = NULL;
	long long v = argc == 2 ? strtoll(argv[1], &end, 10) : 0;
	if (argc != 2 || *end || v <= 0) {
		fprintf(stderr, "usage: atelier promote MODEL VERSION [--channel canary|production]\n");
		return 2;
	}
	return move(c, argv[0], channel, json_pack("{sI,ss}", "version", (json_int_t)v, "reason", "atelier promote"));
}

int cmd_rollback(struct cli *c, int argc, char **argv)
{
	const char *channel = channel_arg(&argc, argv, "production");
	if (argc != 1) {
		fprintf(stderr, "usage: atelier rollback MODEL [--channel canary|production]\n");
		return 2;
	}
	return move(c, argv[0], channel, json_pack("{ss,ss}", "action", "rollback", "reason", "atelier rollback"));
}

int cmd_nodes(struct cli *c, int argc, char **argv)
{
	json_t *out;
	long st;
	if (cli_json(c, "GET", "/v1/nodes", NULL, &st, &out) < 0)
		return 1;
	if (c->json) {
		print_json(out);
	} else {
		printf("%-20s %-16s %-11s %-8s %-10s %-8s %-8s %s\n", "NODE", "MODEL", "CHANNEL", "VERSION", "REQUESTS",
		       "ERR%", "P95 ms", "ALIVE");
		size_t i;
		json_t *n;
		json_array_foreach(json_object_get(out, "nodes"), i, n)
		{
			printf("%-20s %-16s %-11s %-8lld %-10lld %-8.2f %-8.0f %s\n", json_string_value(json_object_get(n, "name")),
			       json_string_value(json_object_get(n, "model")) ? json_string_value(json_object_get(n, "model"))
									      : "-",
			       json_string_value(json_object_get(n, "channel")) ? json_string_value(json_object_get(n, "channel"))
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
