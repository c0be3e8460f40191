/* registry.h -- the table of built-in job handlers.
 *
 * The handlers in workers/ are written against <sluice/handler.h>, as a
 * plugin would be; registry.c puts them in a table of struct sl_handler
 * (handler_int.h) that the program hands to the worker
 * (sl_worker_set_builtins) and tests/tools/ledger_probe.c searches.
 */
#ifndef SL_REGISTRY_H
#define SL_REGISTRY_H

#include <stddef.h>

#include "handler_int.h"

/* Returns the handler named `name`, or NULL. The table is static. */
const struct sl_handler *sl_registry_find(const char *name);

/* Returns the whole table and its size in *n. */
const struct sl_handler *sl_registry_all(size_t *n);

#endif
