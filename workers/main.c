/*
 * main.c — atelier-worker: claims jobs from the PostgreSQL queue and runs
 * them. Flags and environment are a table (below); the runtime is worker.c,
 * the job kinds are the table in handlers.c.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "job.h"
#include "log.h"
#include "worker.h"

enum opt_type { OPT_STR, OPT_INT, OPT_DBL, OPT_FLAG };

struct opt {
	const char *name; /* --name */
	enum opt_type type;
	const char *env; /* fallback environment variable, or NULL */
	double min, max;
	const char *doc;
};

enum { O_URL, O_NAME, O_KINDS, O_GPUS, O_CONCURRENCY, O_LEASE, O_POLL, O_GRACE, O_NOREAP, O_HELP };

static const struct opt opts[] = {
	[O_URL] = {"database-url", OPT_STR, "ATELIER_DATABASE_URL", 0, 0,
	 "PostgreSQL URL or key=value string (default: libpq's PG* environment)"},
	[O_NAME] = {"name", OPT_STR, "ATELIER_WORKER_NAME", 0, 0, "worker name, unique among workers (default: HOST.PID)"},
	[O_KINDS] = {"kinds", OPT_STR, "ATELIER_WORKER_KINDS", 0, 0, "comma-separated job kinds to claim (default: all below)"},
	[O_GPUS] = {"gpus", OPT_INT, "ATELIER_WORKER_GPUS", 0, 1024, "GPUs this worker offers (default 0)"},
	[O_CONCURRENCY] = {"concurrency", OPT_INT, "ATELIER_WORKER_CONCURRENCY", 1, 64,
	 "jobs run at once, each on its own thread and connection; --gpus are shared among them (default 1)"},
	[O_LEASE] = {"lease", OPT_INT, NULL, 1, 86400, "lease in seconds, renewed every lease/3 (default 30)"},
	[O_POLL] = {"poll", OPT_DBL, NULL, 0.05, 3600, "safety-net poll and reap interval when idle, seconds (default 5)"},
	[O_GRACE] = {"grace", OPT_DBL, NULL, 0, 86400,
	 "on SIGTERM/SIGINT, seconds a running job may take to finish before it is released (default 10)"},
	[O_NOREAP] = {"no-reap", OPT_FLAG, NULL, 0, 0, "do not reap expired leases on idle ticks (atelierd does it)"},
	[O_HELP] = {"help", OPT_FLAG, NULL, 0, 0, "this text"},
};
#define NOPTS (sizeof opts / sizeof opts[O_URL])

static void usage(FILE *f)
{
	fprintf(f, "usage: atelier-worker [--flag value]...\n\nflags:\n");
	for (size_t i = 0; i < NOPTS; i++)
		fprintf(f, "  --%-14s %s%s%s\n", opts[i].name, opts[i].doc, opts[i].env ? "; env " : "",
			opts[i].env ? opts[i].env : "");
	fprintf(f, "\njob kinds:\n");
	for (const struct job_handler *h = job_handlers; h->kind; h++)
		fprintf(f, "  %-14s %s\n", h->kind, h->doc);
	fprintf(f, "\nsignals: SIGTERM/SIGINT stop claiming; running jobs get --grace seconds to finish,\n"
		   "then they are released back to the queue (attempt not counted). A second signal ends the grace.\n");
}

static int parse_num(const struct opt *o, const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = o->type == OPT_INT ? (double)strtol(s, &end, 10) : strtod(s, &end);
	if (errno || end == s || *end || v < o->min || v > o->max) {
		fprintf(stderr, "atelier-worker: --%s: '%s' is not a number in [%g, %g]\n", o->name, s, o->min,
			o->max);
		return -1;
	}
	*out = v;
	return 0;
}

/* Split "a,b,c" into a NULL-terminated list of known kinds (in place). */
static const char **parse_kinds(char *s)
{
	size_t n = 1;
	for (char *p = s; *p; p++)
		n += *p == ',';
	const char **kinds = calloc(n + 1, sizeof *kinds);
	if (!kinds)
		return NULL;
	size_t k = 0;
	for (char *save = NULL, *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (!job_handler_find(t)) {
			fprintf(stderr, "atelier-worker: --kinds: unknown kind '%s' (see --help)\n", t);
			free(kinds);
			return NULL;
		}
		kinds[k++] = t;
	}
	if (k == 0) {
		fprintf(stderr, "atelier-worker: --kinds: empty\n");
		free(kinds);
		return NULL;
	}
	return kinds;
}

int main(int argc, char **argv)
{
	const char *val[NOPTS] = {0};
	for (size_t i = 0; i < NOPTS; i++)
		if (opts[i].env)
			val[i] = getenv(opts[i].env);
	for (int a = 1; a < argc; a++) {
		const char *arg = argv[a];
		size_t i;
		if (strncmp(arg, "--", 2) != 0)
			goto bad;
		arg += 2;
		const char *eq = strchr(arg, '=');
		size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
		for (i = 0; i < NOPTS; i++)
			if (strlen(opts[i].name) == len && strncmp(opts[i].name, arg, len) == 0)
				break;
		if (i == NOPTS)
			goto bad;
		if (opts[i].type == OPT_FLAG) {
			val[i] = "1";
		} else if (eq) {
			val[i] = eq + 1;
		} else if (a + 1 < argc) {
			val[i] = argv[++a];
		} else {
			fprintf(stderr, "atelier-worker: --%s needs a value\n", opts[i].name);
			return 2;
		}
		continue;
	bad:
		fprintf(stderr, "atelier-worker: unknown argument '%s'\n\n", argv[a]);
		usage(stderr);
		return 2;
	}
	if (val[O_HELP]) {
		usage(stdout);
		return 0;
	}

	struct worker_config cfg = {.gpus = 0, .concurrency = 1, .lease_s = 30, .poll_s = 5, .grace_s = 10, .reap = 1};
	double num;
	cfg.conninfo = val[O_URL];
	if (val[O_GPUS] && parse_num(&opts[O_GPUS], val[O_GPUS], &num) < 0)
		return 2;
	if (val[O_GPUS])
		cfg.gpus = (int)num;
	if (val[O_CONCURRENCY] && parse_num(&opts[O_CONCURRENCY], val[O_CONCURRENCY], &num) < 0)
		return 2;
	if (val[O_CONCURRENCY])
		cfg.concurrency = (int)num;
	if (val[O_LEASE] && parse_num(&opts[O_LEASE], val[O_LEASE], &num) < 0)
		return 2;
	if (val[O_LEASE])
		cfg.lease_s = (int)num;
	if (val[O_POLL] && parse_num(&opts[O_POLL], val[O_POLL], &num) < 0)
		return 2;
	if (val[O_POLL])
		cfg.poll_s = num;
	if (val[O_GRACE] && parse_num(&opts[O_GRACE], val[O_GRACE], &num) < 0)
		return 2;
	if (val[O_GRACE])
		cfg.grace_s = num;
	cfg.reap = !val[O_NOREAP];

	char name[HOST_NAME_MAX + 32];
	if (val[O_NAME] && *val[O_NAME]) {
		cfg.name = val[O_NAME];
	} else {
		char host[HOST_NAME_MAX + 1] = "host";
		gethostname(host, sizeof host);
		host[sizeof host - 1] = 0;
		snprintf(name, sizeof name, "%s.%d", host, (int)getpid());
		cfg.name = name;
	}

	char *kinds_arg = NULL;
	if (val[O_KINDS] && *val[O_KINDS]) {
		kinds_arg = strdup(val[O_KINDS]);
		cfg.kinds = kinds_arg ? parse_kinds(kinds_arg) : NULL;
	} else {
		size_t n = 0;
		while (job_handlers[n].kind)
			n++;
		const char **all = calloc(n + 1, sizeof *all);
		for (size_t i = 0; all && i < n; i++)
			all[i] = job_handlers[i].kind;
		cfg.kinds = all;
	}
	if (!cfg.kinds) {
		free(kinds_arg);
		return 2;
	}

	log_init("worker");
	/* Spawned by atelierd --local-workers: die with it (a crashed or killed
	 * daemon must not leave orphan workers holding leases). The parent's pid
	 * is checked after arming, in case it died before we got here. */
	const char *ppid = getenv("ATELIER_PARENT_PID");
	if (ppid) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if ((long)getppid() != strtol(ppid, NULL, 10)) {
			log_warn("parent %s is gone; exiting", ppid);
			free(cfg.kinds);
			free(kinds_arg);
			return 0;
		}
	}
	int status = worker_run(&cfg);
	free(cfg.kinds);
	free(kinds_arg);
	return status;
}
