/* registry.c -- the table of built-in job handlers.
 *
 * The table maps the handler names that worker.conf uses to the functions in
 * workers/<family>.c; adding a job family means adding its rows here. Not
 * for: running jobs (the executor), loading plugins (common/plugin.c) or
 * any business logic (the family files).
 */
#include "registry.h"

#include <string.h>

#include "handlers.h"

static const struct sl_api_handler ledger_open = { sl_ledger_open, NULL };
static const struct sl_api_handler ledger_transfer = { sl_ledger_transfer, sl_ledger_transfer_plan };

/* Read-only after compilation, so every thread may read it without locks. */
static const struct sl_handler handlers[] = {
	SL_API_HANDLER("ledger.open", &ledger_open, 0),
	SL_API_HANDLER("ledger.transfer", &ledger_transfer, 1),
};

#define N_HANDLERS (sizeof(handlers) / sizeof(handlers[0]))

/* Returns the handler named `name`, or NULL (also for a NULL name). A linear
 * search: the table is small and is consulted once per job type at start. */
const struct sl_handler *
sl_registry_find(const char *name)
{
	size_t i;

	if (name == NULL)
		return NULL;
	for (i = 0; i < N_HANDLERS; i++)
		if (strcmp(handlers[i].name, name) == 0)
			return &handlers[i];
	return NULL;
}

/* Returns the whole table (borrowed, static) and its size in *n. */
const struct sl_handler *
sl_registry_all(size_t *n)
{
	*n = N_HANDLERS;
	return handlers;
}
