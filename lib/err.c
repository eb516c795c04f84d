/*
 * err.c — names, messages and HTTP statuses for the AT_E* table in err.h.
 */
#include "err.h"

#define AT_ERR_ROW(name, status, msg) [AT_E##name - AT_ERR_FIRST_ - 1] = {#name, msg, status},
static const struct {
	const char *name;
	const char *msg;
	int status;
} err_table[] = {AT_ERRNO_MAP(AT_ERR_ROW)};
#undef AT_ERR_ROW

int at_err_index(int err)
{
	int i = err - AT_ERR_FIRST_ - 1;
	if (i < 0 || i >= (int)(sizeof err_table / sizeof err_table[0]))
		return -1;
	return i;
}

const char *at_strerror(int err)
{
	if (err == 0)
		return "success";
	int i = at_err_index(err);
	return i < 0 ? "unknown error" : err_table[i].msg;
}

const char *at_err_name(int err)
{
	if (err == 0)
		return "OK";
	int i = at_err_index(err);
	return i < 0 ? "UNKNOWN" : err_table[i].name;
}

int at_err_http_status(int err)
{
	int i = at_err_index(err);
	return i < 0 ? 500 : err_table[i].status;
}
