/*
 * rights.h — contributors' rights over their sketches (issue 15): status and
 * withdrawal by receipt (through a serving node), withdrawal by an operator
 * (ids or a contributor name), and a sketch's lineage. The database does the
 * work (sql/014_rights.sql): one function withdraws, audits and notifies.
 */
#ifndef ATELIERD_RIGHTS_H
#define ATELIERD_RIGHTS_H

#include "app.h"

extern const struct http_route rights_routes[];
extern const size_t rights_nroutes;

#endif
