/*
 * args.h — the one parser for every subcommand's flags. A command's flags are
 * a table (name, optional short letter, value name or NULL for a switch, doc
 * line) kept in the command table beside its usage and doc; main.c parses
 * argv against it before the command runs, so `--help` anywhere prints the
 * command's usage and runs nothing, and a misspelled flag is a usage error
 * (exit 2) instead of a positional argument (`run --help` once started a run
 * of a pipeline named "--help").
 */
#ifndef ATELIER_CLI_ARGS_H
#define ATELIER_CLI_ARGS_H

#include <stdio.h>

#define CLI_MAX_FLAGS 8
#define CLI_MAX_POS 64 /* `atelier sketches delete ID...` */

struct cli_flag {
	const char *name;  /* without "--", e.g. "channel" */
	char letter;       /* short form ("-f"), or 0 */
	const char *value; /* value name ("FILE"), or NULL for a switch */
	const char *doc;
};

struct cli_command;

/* What a command receives: its flags' values (NULL when absent; "" for a
 * given switch) in the order of its flag table, and its positional words. */
struct cli_args {
	const struct cli_command *cmd;
	const char *val[CLI_MAX_FLAGS];
	char *pos[CLI_MAX_POS];
	int npos;
};

#define CLI_ARGS_HELP 1 /* --help was given: usage printed, run nothing */

/* Parse argv against cmd's flags and positional bounds. Returns 0,
 * CLI_ARGS_HELP after printing the command's help to stdout, or 2 (the usage
 * exit code) after printing the problem and the usage line to stderr. */
int cli_args_parse(const struct cli_command *cmd, int argc, char **argv, struct cli_args *a);

/* The value of flag `name` (which must be in the command's table). */
const char *cli_arg(const struct cli_args *a, const char *name);

/* A whole-number flag: def when absent; 0, or 2 after printing why. */
int cli_arg_long(const struct cli_args *a, const char *name, long def, long min, long max, long *out);

/* "atelier NAME USAGE" with the flags folded in, as one line. */
/* The first positional word as a run number (> 0); 2 after saying why on stderr. */
int cli_arg_run_id(const struct cli_args *a, long long *id);
void cli_args_usage(FILE *f, const struct cli_command *cmd);
/* The usage line, the doc line and one line per flag (`atelier CMD --help`). */
void cli_args_help(FILE *f, const struct cli_command *cmd);

#endif
