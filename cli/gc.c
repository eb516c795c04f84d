/*
 * gc.c — `atelier gc [--dry-run] [--grace SECONDS]`: atelierd's POST /v1/gc
 * (orchestrator/gc.c decides what is unreferenced), printing each artifact
 * removed (or that would be) and the bytes.
 */
#include <stdio.h>
#include <stdlib.h>

#include "commands.h"

int cmd_gc(struct cli *c, const struct cli_args *a)
{
	long grace;
	if (cli_arg_long(a, "grace", 3600, 0, 365L * 86400, &grace) < 0)
		return 2;
	int dry = cli_arg(a, "dry-run") != NULL;
	json_t *body = json_pack("{sbsI}", "dry_run", dry, "grace_s", (json_int_t)grace), *out = NULL;
	long st;
	int rc = body ? cli_json(c, "POST", "/v1/gc", body, &st, &out) : -1;
	json_decref(body);
	if (rc < 0)
		return 1;
	if (c->json) {
		cli_print_json(out);
		json_decref(out);
		return 0;
	}
	size_t i;
	json_t *it;
	json_array_foreach(json_object_get(out, "items"), i, it)
	{
		printf("%s %s %12lld bytes, %lld s old\n", dry ? "would remove" : "removed",
		       json_string_value(json_object_get(it, "sha256")),
		       (long long)json_integer_value(json_object_get(it, "size")),
		       (long long)json_integer_value(json_object_get(it, "age_s")));
	}
	long long removed = json_integer_value(json_object_get(out, "removed"));
	if ((size_t)removed > json_array_size(json_object_get(out, "items")))
		printf("... and %lld more\n", removed - (long long)json_array_size(json_object_get(out, "items")));
	printf("%s %lld artifacts, %lld bytes, from %s; kept %lld referenced and %lld younger than %lld s "
	       "(%lld bytes)%s\n",
	       dry ? "would remove" : "removed", removed, (long long)json_integer_value(json_object_get(out, "bytes")),
	       json_string_value(json_object_get(out, "store")),
	       (long long)json_integer_value(json_object_get(out, "referenced")),
	       (long long)json_integer_value(json_object_get(out, "young")), (long long)grace,
	       (long long)json_integer_value(json_object_get(out, "kept_bytes")),
	       dry ? " (dry run: nothing removed)" : "");
	long long failed = json_integer_value(json_object_get(out, "failed"));
	if (failed)
		fprintf(stderr, "atelier gc: %lld artifacts could not be removed (see atelierd's log)\n", failed);
	json_decref(out);
	return failed ? 1 : 0;
}
