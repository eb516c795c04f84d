/*
 * args.c — see args.h. Flags may come before, between or after positional
 * words; "--" ends the flags; "--name=value" and "--name value" both work.
 */
#include "args.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

static int usage_error(const struct cli_command *cmd, const char *what, const char *arg)
{
	fprintf(stderr, "atelier %s: %s%s%s\n", cmd->name, what, arg ? " " : "", arg ? arg : "");
	cli_args_usage(stderr, cmd);
	return 2;
}

static int find_flag(const struct cli_command *cmd, const char *name, size_t len, char letter)
{
	for (size_t i = 0; i < cmd->nflags; i++) {
		const struct cli_flag *f = &cmd->flags[i];
		if (letter ? f->letter == letter : (strlen(f->name) == len && !strncmp(f->name, name, len)))
			return (int)i;
	}
	return -1;
}

int cli_args_parse(const struct cli_command *cmd, int argc, char **argv, struct cli_args *a)
{
	memset(a, 0, sizeof *a);
	a->cmd = cmd;
	int flags_done = 0;
	for (int i = 0; i < argc; i++) {
		char *w = argv[i];
		if (flags_done || w[0] != '-' || !w[1]) {
			if (a->npos >= cmd->max_pos || a->npos >= CLI_MAX_POS)
				return usage_error(cmd, "unexpected argument", w);
			a->pos[a->npos++] = w;
			continue;
		}
		if (!strcmp(w, "--")) {
			flags_done = 1;
			continue;
		}
		if (!strcmp(w, "--help") || !strcmp(w, "-h")) {
			cli_args_help(stdout, cmd);
			return CLI_ARGS_HELP;
		}
		const char *eq = NULL;
		int k;
		if (w[1] == '-') {
			eq = strchr(w + 2, '=');
			k = find_flag(cmd, w + 2, eq ? (size_t)(eq - w - 2) : strlen(w + 2), 0);
		} else {
			k = w[2] ? -1 : find_flag(cmd, NULL, 0, w[1]);
		}
		if (k < 0)
			return usage_error(cmd, "unknown option", w);
		const struct cli_flag *f = &cmd->flags[k];
		if (!f->value) {
			if (eq)
				return usage_error(cmd, "takes no value:", w);
			a->val[k] = "";
		} else if (eq) {
			a->val[k] = eq + 1;
		} else if (i + 1 < argc) {
			a->val[k] = argv[++i];
		} else {
			return usage_error(cmd, "needs a value:", w);
		}
	}
	if (a->npos < cmd->min_pos)
		return usage_error(cmd, "missing argument", NULL);
	return 0;
}

const char *cli_arg(const struct cli_args *a, const char *name)
{
	int k = find_flag(a->cmd, name, strlen(name), 0);
	return k < 0 ? NULL : a->val[k];
}

int cli_arg_long(const struct cli_args *a, const char *name, long def, long min, long max, long *out)
{
	const char *s = cli_arg(a, name);
	*out = def;
	if (!s)
		return 0;
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (!*s || *end || errno || v < min || v > max) {
		fprintf(stderr, "atelier %s: --%s needs a whole number in %ld..%ld, not \"%s\"\n", a->cmd->name, name,
			min, max, s);
		return 2;
	}
	*out = v;
	return 0;
}

int cli_arg_run_id(const struct cli_args *a, long long *id)
{
	char *end;
	*id = strtoll(a->pos[0], &end, 10);
	if (end == a->pos[0] || *end || *id <= 0) {
		fprintf(stderr, "atelier %s: RUN must be a run number, not \"%s\"\n", a->cmd->name, a->pos[0]);
		return 2;
	}
	return 0;
}

void cli_args_usage(FILE *f, const struct cli_command *cmd)
{
	fprintf(f, "usage: atelier %s%s%s", cmd->name, *cmd->usage ? " " : "", cmd->usage);
	for (size_t i = 0; i < cmd->nflags; i++) {
		const struct cli_flag *fl = &cmd->flags[i];
		if (fl->letter) /* the short form is the one people type: "-f FILE" */
			fprintf(f, " [-%c%s%s]", fl->letter, fl->value ? " " : "", fl->value ? fl->value : "");
		else
			fprintf(f, " [--%s%s%s]", fl->name, fl->value ? " " : "", fl->value ? fl->value : "");
	}
	fputc('\n', f);
}

void cli_args_help(FILE *f, const struct cli_command *cmd)
{
	cli_args_usage(f, cmd);
	fprintf(f, "\n%s\n", cmd->doc);
	if (cmd->nflags)
		fputs("\noptions:\n", f);
	for (size_t i = 0; i < cmd->nflags; i++) {
		const struct cli_flag *fl = &cmd->flags[i];
		char head[64];
		if (fl->letter)
			snprintf(head, sizeof head, "-%c, --%s%s%s", fl->letter, fl->name, fl->value ? " " : "",
				 fl->value ? fl->value : "");
		else
			snprintf(head, sizeof head, "--%s%s%s", fl->name, fl->value ? " " : "",
				 fl->value ? fl->value : "");
		fprintf(f, "  %-28s %s\n", head, fl->doc);
	}
	fputs("  --help                       this text\n", f);
}
