/*
 * main.c — atelier-worker: claims jobs from the PostgreSQL queue and runs
 * them. Flags and environment are a lib/config.c settings table (below), as in
 * every binary; the runtime is worker.c, the job kinds are the table in
 * handlers.c.
 */
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "config.h"
#include "job.h"
#include "log.h"
#include "worker.h"

/* What the table fills; main() turns it into a struct worker_config. */
struct worker_settings {
	const char *url, *name, *kinds;
	int gpus, concurrency, lease_s;
	double poll_s, grace_s;
	int no_reap;
	const char *artifacts, *device, *train_preset;
	int train_threads;
	const char *gang_host;
	int gang_fill_s, gang_timeout_s;
};

#define S(f) offsetof(struct worker_settings, f)
static const struct config_opt settings_table[] = {
	{"database-url", "ATELIER_DATABASE_URL", CFG_STR, S(url), NULL, 1, 0,
	 "PostgreSQL URL or key=value string (unset: libpq's PG* environment)"},
	{"name", "ATELIER_WORKER_NAME", CFG_STR, S(name), NULL, 1, 0,
	 "worker name, unique among workers (unset: HOST.PID)"},
	{"kinds", "ATELIER_WORKER_KINDS", CFG_STR, S(kinds), NULL, 1, 0,
	 "comma-separated job kinds to claim (unset: all below)"},
	{"gpus", "ATELIER_WORKER_GPUS", CFG_INT, S(gpus), "0", 0, 1024, "GPUs this worker offers"},
	{"concurrency", "ATELIER_WORKER_CONCURRENCY", CFG_INT, S(concurrency), "1", 1, 64,
	 "jobs run at once, each on its own thread and connection; --gpus are shared among them"},
	{"lease", NULL, CFG_INT, S(lease_s), "30", 1, 86400, "lease in seconds, renewed every lease/3"},
	{"poll", NULL, CFG_DOUBLE, S(poll_s), "5", 0.05, 3600, "safety-net poll and reap interval when idle, seconds"},
	{"grace", NULL, CFG_DOUBLE, S(grace_s), "10", 0, 86400,
	 "on SIGTERM/SIGINT, seconds a running job may take to finish before it is released"},
	{"no-reap", NULL, CFG_BOOL, S(no_reap), "false", 1, 0,
	 "do not reap expired leases on idle ticks (atelierd does it)"},
	{"artifacts", "ATELIER_ARTIFACTS", CFG_STR, S(artifacts), "fs://var/artifacts", 1, 0,
	 "artifact store URI (fs://PATH or s3://BUCKET[/PREFIX]; docs/artifacts.md), shared with atelierd"},
	{"device", "ATELIER_DEVICE", CFG_STR, S(device), NULL, 1, 0,
	 "model device for train and evaluate: cpu, cuda or auto (unset: auto)"},
	{"train-threads", "ATELIER_TRAIN_THREADS", CFG_INT, S(train_threads), "0", 0, 1024,
	 "libtorch threads when training; 0 = libtorch's choice (a stage's params.model.threads wins)"},
	{"train-preset", "ATELIER_TRAIN_PRESET", CFG_STR, S(train_preset), NULL, 1, 0,
	 "gpu or cpu: force train's params preset (unset: gpu when training on CUDA)"},
	{"gang-host", "ATELIER_GANG_HOST", CFG_STR, S(gang_host), "127.0.0.1", 1, 0,
	 "data-parallel training: this worker's address that the other ranks reach (rank 0's store, Gloo)"},
	{"gang-fill", "ATELIER_GANG_FILL", CFG_INT, S(gang_fill_s), "60", 1, 3600,
	 "seconds a gang may wait for its ranks before it gives its claims back"},
	{"gang-timeout", "ATELIER_GANG_TIMEOUT", CFG_INT, S(gang_timeout_s), "60", 1, 3600,
	 "seconds a collective (forming the group, an all-reduce) may wait for a rank before it fails"},
};
#undef S
#define NSETTINGS (sizeof settings_table / sizeof settings_table[0])

static void usage(FILE *f)
{
	config_usage(f, "atelier-worker", "[options]", settings_table, NSETTINGS);
	fprintf(f, "  %-26s %s\n", "--help", "this text");
	fprintf(f, "\njob kinds:\n");
	for (const struct job_handler *h = job_handlers; h->kind; h++)
		fprintf(f, "  %-14s %s\n", h->kind, h->doc);
	fprintf(f, "\nsignals: SIGTERM/SIGINT stop claiming; running jobs get --grace seconds to finish,\n"
		   "then they are released back to the queue (attempt not counted). A second signal ends the grace.\n");
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
	struct worker_settings set;
	char err[256];
	int argi;
	int rc = config_parse(settings_table, NSETTINGS, &set, argc, argv, &argi, err, sizeof err);
	if (rc == AT_ECANCELLED) {
		usage(stdout);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "atelier-worker: %s\n", err);
		return 2;
	}
	if (argi < argc) {
		fprintf(stderr, "atelier-worker: unexpected argument \"%s\" (see --help)\n", argv[argi]);
		return 2;
	}
	struct worker_config cfg = {.conninfo = set.url,
				    .gpus = set.gpus,
				    .concurrency = set.concurrency,
				    .lease_s = set.lease_s,
				    .poll_s = set.poll_s,
				    .grace_s = set.grace_s,
				    .reap = !set.no_reap,
				    .artifacts = set.artifacts,
				    .device = set.device && *set.device ? set.device : NULL,
				    .train_threads = set.train_threads,
				    .train_preset = set.train_preset && *set.train_preset ? set.train_preset : NULL,
				    .gang_host = set.gang_host,
				    .gang_fill_s = set.gang_fill_s,
				    .gang_timeout_s = set.gang_timeout_s};

	char name[HOST_NAME_MAX + 32];
	if (set.name && *set.name) {
		cfg.name = set.name;
	} else {
		char host[HOST_NAME_MAX + 1] = "host";
		gethostname(host, sizeof host);
		host[sizeof host - 1] = 0;
		snprintf(name, sizeof name, "%s.%d", host, (int)getpid());
		cfg.name = name;
	}

	char *kinds_arg = NULL;
	if (set.kinds && *set.kinds) {
		kinds_arg = strdup(set.kinds);
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
