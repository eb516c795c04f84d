/*
 * main.c — `atelier`, the operator CLI: a client of atelierd's HTTP API.
 *
 *   atelier [--url URL] [--token TOKEN] [--json] COMMAND [ARGS]
 *
 * The global flags are a lib/config.c settings table (ATELIER_URL and
 * ATELIER_TOKEN set their defaults); commands come from the command table
 * below. `atelier help` prints both.
 */
#include <curl/curl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "config.h"

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

/* The global flags; they come before the command (--json may also follow it). */
static const struct config_opt settings_table[] = {
	{"url", "ATELIER_URL", CFG_STR, offsetof(struct cli, url), "http://127.0.0.1:8080", 1, 0, "atelierd's base URL"},
	{"token", "ATELIER_TOKEN", CFG_STR, offsetof(struct cli, token), NULL, 1, 0,
	 "API token, sent as a bearer token (atelierd token create, atelier token create)"},
	{"json", NULL, CFG_BOOL, offsetof(struct cli, json), "false", 1, 0,
	 "print the raw JSON answer (also after the command)"},
};
#define NSETTINGS (sizeof settings_table / sizeof settings_table[0])

static int cmd_help(struct cli *c, int argc, char **argv)
{
	config_usage(stdout, "atelier", "[options] COMMAND [ARGS]", settings_table, NSETTINGS);
	printf("  %-26s %s\n\ncommands:\n", "--help", "this text");
	for (size_t i = 0; i < cli_ncommands; i++) {
		char head[96];
		snprintf(head, sizeof head, "%s %s", cli_commands[i].name, cli_commands[i].usage);
		printf("  %-58s %s\n", head, cli_commands[i].doc);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct cli c;
	char err[256];
	int i;
	int rc = config_parse(settings_table, NSETTINGS, &c, argc, argv, &i, err, sizeof err);
	if (rc == AT_ECANCELLED)
		return cmd_help(&c, 0, NULL);
	if (rc < 0) {
		fprintf(stderr, "atelier: %s\n", err);
		return 2;
	}
	/* config_parse stops at a word that is not --flag: "-x" is no command */
	if (i < argc && argv[i][0] == '-') {
		fprintf(stderr, "atelier: unknown option %s (see atelier help)\n", argv[i]);
		return 2;
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
	rc = 2;
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
