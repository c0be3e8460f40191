/* txn.h -- one group of jobs, one transaction (txn.c). Executor threads. */
#ifndef SL_TXN_H
#define SL_TXN_H

#include <stddef.h>

#include "outcome.h"

/* Opens ex's connection if it is not open and idle: the session's bounds
 * (limits.lock_timeout, limits.idle_in_transaction_timeout) set and the
 * job statements prepared. Returns 0, or -1 with the reason in errbuf. */
int sl_txn_connect(struct sl_executor *ex, char *errbuf, size_t errbuf_size);

/* Runs items[0..n) in one transaction (with limits.max_batch 1 and n > 1,
 * a chain: one each, each COMMIT sent with the next job's statements),
 * sending handlers' statements ahead when `ahead`. A job that would wait
 * for a lock inside a group splits it: the jobs before it commit, and it
 * goes first in the next transaction. Returns how many items from the start
 * are finished and committed, each job holding its outcome; the item at
 * that index (if any) needs another attempt, with the reason in its
 * code/message and `wait` set when PostgreSQL could not judge it. *lost
 * says the transaction was lost as a whole (connection, COMMIT), which no
 * single item is known for; *replay that it rolled back and its jobs must
 * run again without `ahead`, which costs no attempt. */
size_t sl_txn_run(struct sl_executor *ex, struct sl_item *items, size_t n, int ahead, int *lost, int *replay);

#endif
