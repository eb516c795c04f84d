/*
 * config.h — settings as a typed table: each option has a flag name, an
 * environment variable, a type, a default, a range and a doc line. The same
 * table parses argv and the environment (flags win), checks ranges, and prints
 * --help. (PgBouncer's config table; Redis' config.c.)
 */
#ifndef ATELIER_CONFIG_H
#define ATELIER_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "err.h"

enum config_type { CFG_STR, CFG_INT, CFG_DOUBLE, CFG_BOOL, CFG_SIZE };

struct config_opt {
	const char *name; /* flag without "--", e.g. "port" */
	const char *env;  /* environment variable or NULL */
	enum config_type type;
	size_t offset;   /* into the settings struct */
	const char *def; /* default as text, or NULL (string NULL / 0) */
	double min, max; /* for numbers; min > max means unchecked */
	const char *doc;
};

/* Fill settings (at dst) from defaults, then the environment, then argv.
 * Stops at the first non-option argument; *argi gets its index (argc if none).
 * On error returns AT_EINVAL and writes a message naming the option to err.
 * "--help" returns AT_ECANCELLED after printing usage to stdout.
 * String values point into argv/environ or static defaults (not copied). */
int config_parse(const struct config_opt *opts, size_t n, void *dst, int argc, char **argv, int *argi, char *err,
		 size_t errlen) AT_MUST_CHECK;
void config_usage(FILE *f, const char *prog, const char *synopsis, const struct config_opt *opts, size_t n);

/*
 * The one yes/no vocabulary, for boolean settings and for form fields such as
 * consent (atelierd's POST /v1/sketches, the node's /api/contribute): s[0..len)
 * (not NUL-terminated) is, ignoring case, yes/y/true/1/on (*out = 1) or
 * no/n/false/0/off (*out = 0). Anything else (also "" and surrounding
 * spaces) is AT_EINVAL, which the caller reports naming the field or flag:
 * an unrecognised answer is never taken to mean no.
 */
int config_parse_bool(const char *s, size_t len, int *out) AT_MUST_CHECK;

/* Parse "8MiB", "512k", "1048576" into bytes; AT_EINVAL if malformed. */
int config_parse_size(const char *s, size_t *out) AT_MUST_CHECK;

#endif
