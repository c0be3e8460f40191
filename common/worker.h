/* worker.h -- the worker runtime: consume, execute, publish, commit.
 *
 * One call runs a worker until it is told to stop. The calling thread becomes
 * the consumer thread; executor threads are started and joined inside.
 */
#ifndef SL_WORKER_H
#define SL_WORKER_H

#include <stddef.h>

#include "config.h"

struct sl_handler;

/* Gives the worker the program's built-in handlers, the ones worker.conf
 * names without a prefix: `table` (borrowed, n rows, static storage, e.g.
 * workers/registry.c's) must outlive every other call here. Call it once,
 * before sl_worker_check(); without it only plugins can be named. */
void sl_worker_set_builtins(const struct sl_handler *table, size_t n);

/* Checks what the configuration names beyond its syntax: handlers exist
 * (plugins load, once per process: see plugin.h) and schemas load.
 * Returns 0, or -1 with `file:line: what is wrong` in errbuf. */
int sl_worker_check(const struct sl_config *cfg, char *errbuf, size_t errbuf_size);

/* sl_worker_check(), and then what needs PostgreSQL: each SQL handler's
 * function exists with the signature sluice calls, returns jsonb, and its
 * job type's role may execute it (`sluice-worker -n`). A worker starting
 * for real only warns about these: a migration may come later. */
int sl_worker_check_deep(const struct sl_config *cfg, char *errbuf, size_t errbuf_size);

/* Runs the worker with cfg (borrowed; must outlive the call) until SIGTERM or
 * SIGINT (installed here), then drains and stops. Returns the process exit
 * status: 0 after a clean stop (also when the drain deadline abandoned jobs:
 * they are redelivered), 1 when the worker could not start or hit a fatal
 * error, with the reason logged. */
int sl_worker_run(struct sl_config *cfg);

#endif
