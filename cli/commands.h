/*
 * commands.h — the CLI's command table. Each command is a function taking the
 * client settings and its parsed arguments (cli/args.h); main.c dispatches by
 * name, and `atelier help` and `atelier CMD --help` print from the same table.
 */
#ifndef ATELIER_CLI_COMMANDS_H
#define ATELIER_CLI_COMMANDS_H

#include "args.h"
#include "client.h"

struct cli_command {
	const char *name; /* may be two words: "token create" */
	int (*run)(struct cli *c, const struct cli_args *a);
	const char *usage; /* positional words, e.g. "MODEL VERSION" (flags come from the table below) */
	const char *doc;
	int min_pos, max_pos; /* how many positional words it takes */
	const struct cli_flag *flags;
	size_t nflags;
};

extern const struct cli_command cli_commands[];
extern const size_t cli_ncommands;

int cmd_import(struct cli *c, const struct cli_args *a);
int cmd_token_create(struct cli *c, const struct cli_args *a);
int cmd_apply(struct cli *c, const struct cli_args *a);
int cmd_pipelines(struct cli *c, const struct cli_args *a);
int cmd_run(struct cli *c, const struct cli_args *a);
int cmd_runs(struct cli *c, const struct cli_args *a);
int cmd_run_show(struct cli *c, const struct cli_args *a);
int cmd_cancel(struct cli *c, const struct cli_args *a);
int cmd_metrics(struct cli *c, const struct cli_args *a);
int cmd_logs(struct cli *c, const struct cli_args *a);
int cmd_synth(struct cli *c, const struct cli_args *a);
int cmd_models(struct cli *c, const struct cli_args *a);
int cmd_ledger(struct cli *c, const struct cli_args *a);
int cmd_promote(struct cli *c, const struct cli_args *a);
int cmd_rollback(struct cli *c, const struct cli_args *a);
int cmd_nodes(struct cli *c, const struct cli_args *a);
int cmd_samples(struct cli *c, const struct cli_args *a);
int cmd_gc(struct cli *c, const struct cli_args *a);
int cmd_sketches_delete(struct cli *c, const struct cli_args *a);
int cmd_sketches_lineage(struct cli *c, const struct cli_args *a);

#endif
