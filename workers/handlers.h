/* handlers.h -- the handler functions of every job family, for the registry.
 *
 * Private to workers/: registry.c puts these in its table and each family
 * file defines its own. Everyone else finds a handler by name through
 * registry.h. Each function follows the contract in registry.h.
 */
#ifndef SL_HANDLERS_H
#define SL_HANDLERS_H

#include "registry.h"

/* ledger.c */
enum sl_outcome sl_ledger_open(struct sl_job_ctx *ctx);
enum sl_outcome sl_ledger_transfer(struct sl_job_ctx *ctx);
int sl_ledger_transfer_plan(struct sl_job_ctx *ctx, struct sl_plan *plan);

#endif
