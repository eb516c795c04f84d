/*
 * commands.h — the CLI's command table. Each command is a function taking the
 * client settings and its own arguments; main.c dispatches by name and prints
 * --help from the same table.
 */
#ifndef ATELIER_CLI_COMMANDS_H
#define ATELIER_CLI_COMMANDS_H

#include "client.h"

struct cli_command {
	const char *name; /* may be two words: "token create" */
	int (*run)(struct cli *c, int argc, char **argv);
	const char *usage;
	const char *doc;
};

extern const struct cli_command cli_commands[];
extern const size_t cli_ncommands;

int cmd_import(struct cli *c, int argc, char **argv);
int cmd_token_create(struct cli *c, int argc, char **argv);
int cmd_apply(struct cli *c, int argc, char **argv);
int cmd_pipelines(struct cli *c, int argc, char **argv);
int cmd_run(struct cli *c, int argc, char **argv);
int cmd_runs(struct cli *c, int argc, char **argv);
int cmd_run_show(struct cli *c, int argc, char **argv);
int cmd_cancel(struct cli *c, int argc, char **argv);
int cmd_synth(struct cli *c, int argc, char **argv);
int cmd_models(struct cli *c, int argc, char **argv);
int cmd_promote(struct cli *c, int argc, char **argv);
int cmd_rollback(struct cli *c, int argc, char **argv);
int cmd_nodes(struct cli *c, int argc, char **argv);
int cmd_samples(struct cli *c, int argc, char **argv);

#endif
