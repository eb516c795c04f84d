/*
 * main.c — `atelier`, the operator CLI: a client of atelierd's HTTP API.
 *
 *   atelier [--url URL] [--token TOKEN] [--json] COMMAND [ARGS]
 *
 * ATELIER_URL and ATELIER_TOKEN set the defaults. Commands come from the table
 * below; `atelier help` prints it.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

static int cmd_help(struct cli *c, int argc, char **argv);

const struct cli_command cli_commands[] = {
	{"import", cmd_import, "DIR --domain sketch|painting", "upload every PNG/JPEG in DIR"},
	{"token create", cmd_token_create, "--role operator|node|viewer [--name N]", "create an API token"},
	{"apply", cmd_apply, "-f FILE", "apply a pipeline YAML (no new version if unchanged)"},
	{"pipelines", cmd_pipelines, "", "list pipelines"},
	{"run show", cmd_run_show, "ID", "a run's stages, attempts, workers, progress"},
	{"run", cmd_run, "PIPELINE", "start a run now"},
	{"runs", cmd_runs, "[--pipeline P] [--state S] [--since T] [--watch]", "list runs (live with --watch)"},
	{"cancel", cmd_cancel, "RUN", "cancel a run"},
	{"models", cmd_models, "[MODEL]", "models and their channels, or one model's versions with lineage"},
	{"promote", cmd_promote, "MODEL VERSION [--channel canary|production]", "move a channel to a version"},
	{"rollback", cmd_rollback, "MODEL [--channel canary|production]", "move a channel back to its previous version"},
	{"samples", cmd_samples, "MODEL VERSION [--sheet FILE]",
	 "a version's evaluation samples (candidate and champion), or a PNG sheet of them"},
	{"nodes", cmd_nodes, "", "the serving fleet and what each node serves"},
	{"synth", cmd_synth, "[--count N] [--seed S] [--size PX] [--out DIR]",
	 "upload N synthetic sketches and N unpaired paintings (source synth); --out DIR writes PNGs instead"},
	{"help", cmd_help, "", "this list"},
};
const size_t cli_ncommands = sizeof cli_commands / sizeof cli_commands[0];

static int cmd_help(struct cli *c, int argc, char **argv)
{
	printf("usage: atelier [--url URL] [--token TOKEN] [--json] COMMAND [ARGS]\n\n"
	       "  ATELIER_URL (default http://127.0.0.1:8080) and ATELIER_TOKEN set the defaults.\n\ncommands:\n");
	for (size_t i = 0; i < cli_ncommands; i++) {
		char head[96];
		snprintf(head, sizeof head, "%s %s", cli_commands[i].name, cli_commands[i].usage);
		printf("  %-58s %s\n", head, cli_commands[i].doc);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct cli c = {
		.url = getenv("ATELIER_URL") ? getenv("ATELIER_URL") : "http://127.0.0.1:8080",
		.token = getenv("ATELIER_TOKEN"),
	};
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--url") && i + 1 < argc)
			c.url = argv[++i];
		else if (!strcmp(argv[i], "--token") && i + 1 < argc)
			c.token = argv[++i];
		else if (!strcmp(argv[i], "--json"))
			c.json = 1;
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return cmd_help(&c, 0, NULL);
		else {
			fprintf(stderr, "atelier: unknown option %s (see atelier help)\n", argv[i]);
			return 2;
		}
	}
	if (i >= argc)
		return cmd_help(&c, 0, NULL), 2;
	/* --json may also follow the command. */
	for (int k = i; k < argc; k++)
		if (!strcmp(argv[k], "--json")) {
			c.json = 1;
			memmove(&argv[k], &argv[k + 1], (size_t)(argc - k - 1) * sizeof *argv);
			argc--;
			k--;
		}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int rc = 2;
	int found = 0;
	for (size_t k = 0; k < cli_ncommands && !found; k++) {
		const char *name = cli_commands[k].name;
		const char *sp = strchr(name, ' ');
		if (sp) {
			size_t l1 = (size_t)(sp - name);
			if (i + 1 < argc && strlen(argv[i]) == l1 && !strncmp(argv[i], name, l1) && !strcmp(argv[i + 1], sp + 1)) {
				found = 1;
				rc = cli_commands[k].run(&c, argc - i - 2, argv + i + 2);
			}
		} else if (!strcmp(argv[i], name)) {
			found = 1;
			rc = cli_commands[k].run(&c, argc - i - 1, argv + i + 1);
		}
	}
	if (!found)
		fprintf(stderr, "atelier: unknown command \"%s\" (see atelier help)\n", argv[i]);
	curl_global_cleanup();
	return rc;
}
