/*
 * config.c — see config.h. Numbers are parsed with strtol/strtod and checked
 * for trailing garbage and range; nothing here uses atoi.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int config_parse_size(const char *s, size_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || v < 0 || !isfinite(v))
		return AT_EINVAL;
	static const struct {
		const char *suffix;
		double mul;
	} units[] = {{"", 1},        {"b", 1},        {"k", 1024},     {"kb", 1024},
		     {"kib", 1024},  {"m", 1 << 20},  {"mb", 1 << 20}, {"mib", 1 << 20},
		     {"g", 1 << 30}, {"gb", 1 << 30}, {"gib", 1 << 30}};
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
		if (strcasecmp(end, units[i].suffix) == 0) {
			double b = v * units[i].mul;
			if (b > (double)SIZE_MAX / 2)
				return AT_EINVAL;
			*out = (size_t)b;
			return 0;
		}
	return AT_EINVAL;
}

int config_parse_bool(const char *s, size_t len, int *out)
{
	static const char *const words[][2] = {{"yes", "no"}, {"y", "n"}, {"true", "false"}, {"1", "0"}, {"on", "off"}};
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
		for (int no = 0; no < 2; no++)
			if (len == strlen(words[i][no]) && strncasecmp(s, words[i][no], len) == 0) {
				*out = !no;
				return 0;
			}
	return AT_EINVAL;
}

static int set_value(const struct config_opt *o, void *dst, const char *val, const char *from, char *err, size_t errlen)
{
	char *p = (char *)dst + o->offset;
	char *end;
	double num = 0;
	switch (o->type) {
	case CFG_STR: *(const char **)p = val; return 0;
	case CFG_BOOL:
		if (config_parse_bool(val, strlen(val), (int *)p) < 0)
			goto bad;
		return 0;
	case CFG_INT: {
		errno = 0;
		long v = strtol(val, &end, 10);
		if (errno || end == val || *end)
			goto bad;
		num = (double)v;
		if (o->min <= o->max && (num < o->min || num > o->max))
			goto range;
		*(int *)p = (int)v;
		return 0;
	}
	case CFG_DOUBLE:
		errno = 0;
		num = strtod(val, &end);
		if (errno || end == val || *end || !isfinite(num))
			goto bad;
		if (o->min <= o->max && (num < o->min || num > o->max))
			goto range;
		*(double *)p = num;
		return 0;
	case CFG_SIZE: {
		size_t v;
		if (config_parse_size(val, &v) < 0)
			goto bad;
		num = (double)v;
		if (o->min <= o->max && (num < o->min || num > o->max))
			goto range;
		*(size_t *)p = v;
		return 0;
	}
	}
bad:
	snprintf(err, errlen, "%s: --%s: invalid value \"%s\"", from, o->name, val);
	return AT_EINVAL;
range:
	snprintf(err, errlen, "%s: --%s: %s is out of range [%g, %g]", from, o->name, val, o->min, o->max);
	return AT_EINVAL;
}

int config_parse(const struct config_opt *opts, size_t n, void *dst, int argc, char **argv, int *argi, char *err,
		 size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		if (opts[i].type == CFG_STR)
			*(const char **)((char *)dst + opts[i].offset) = opts[i].def;
		else if (opts[i].def && set_value(&opts[i], dst, opts[i].def, "default", err, errlen) < 0)
			return AT_EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		const char *v = opts[i].env ? getenv(opts[i].env) : NULL;
		if (v && *v && set_value(&opts[i], dst, v, opts[i].env, err, errlen) < 0)
			return AT_EINVAL;
	}
	int a = 1;
	while (a < argc) {
		const char *arg = argv[a];
		if (strcmp(arg, "--") == 0) {
			a++;
			break;
		}
		if (strncmp(arg, "--", 2) != 0)
			break;
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
			return AT_ECANCELLED;
		const char *name = arg + 2;
		const char *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		const struct config_opt *o = NULL;
		for (size_t i = 0; i < n; i++)
			if (strlen(opts[i].name) == nlen && strncmp(opts[i].name, name, nlen) == 0)
				o = &opts[i];
		if (!o) {
			snprintf(err, errlen, "unknown option --%.*s (see --help)", (int)nlen, name);
			return AT_EINVAL;
		}
		const char *val;
		if (eq) {
			val = eq + 1;
		} else if (o->type == CFG_BOOL) {
			val = "true";
		} else {
			if (a + 1 >= argc) {
				snprintf(err, errlen, "option --%s needs a value", o->name);
				return AT_EINVAL;
			}
			val = argv[++a];
		}
		if (set_value(o, dst, val, "command line", err, errlen) < 0)
			return AT_EINVAL;
		a++;
	}
	*argi = a;
	return 0;
}

void config_usage(FILE *f, const char *prog, const char *synopsis, const struct config_opt *opts, size_t n)
{
	fprintf(f, "usage: %s %s\n\noptions:\n", prog, synopsis);
	for (size_t i = 0; i < n; i++) {
		char flag[64];
		snprintf(flag, sizeof flag, "--%s%s", opts[i].name, opts[i].type == CFG_BOOL ? "" : " V");
		fprintf(f, "  %-26s %s", flag, opts[i].doc);
		if (opts[i].def)
			fprintf(f, " (default %s)", opts[i].def);
		if (opts[i].env)
			fprintf(f, " [%s]", opts[i].env);
		fputc('\n', f);
	}
}
