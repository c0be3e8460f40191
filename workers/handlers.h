/* handlers.h -- the handler functions of every job family, for the registry.
 *
 * Private to workers/: registry.c puts these in its table and each family
 * file defines its own. Each is a sluice_handler_fn or sluice_plan_fn of
 * <sluice/handler.h>, the same contract a plugin follows.
 */
#ifndef SL_HANDLERS_H
#define SL_HANDLERS_H

#include <sluice/handler.h>

/* ledger.c */
sluice_handler_fn sl_ledger_open;
sluice_handler_fn sl_ledger_transfer;
sluice_plan_fn sl_ledger_transfer_plan;

#endif
