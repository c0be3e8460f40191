/* txn.h -- one group of jobs, one transaction (txn.c). Executor threads. */
#ifndef SL_TXN_H
#define SL_TXN_H

#include <stddef.h>

#include "outcome.h"

/* Opens ex's connection if it is not open and idle: the session's bounds
 * (limits.lock_timeout, limits.idle_in_transaction_timeout) set and the
 * job statements prepared. Returns 0, or -1 with the reason in errbuf. */
int sl_txn_connect(struct sl_executor *ex, char *errbuf, size_t errbuf_size);

/* How carefully a group runs. Its first try is optimistic: most groups
 * succeed whole, and a savepoint (a subtransaction, with an id of its own
 * once it writes) is most of what a job costs the server beyond its own
 * work. A group that cannot finish that way rolls back and runs again more
 * carefully, which costs no attempt. */
enum sl_txn_care {
	SL_TXN_OPTIMISTIC, /* plans sent ahead, no savepoints: a job that fails,
	                    * unless first in its transaction, rolls the group back */
	SL_TXN_SAVEPOINTS, /* plans sent ahead, a savepoint per job: a job that
	                    * fails is undone alone */
	SL_TXN_STEPWISE,   /* savepoints, and each handler's statements sent as
	                    * it runs, none ahead */
};

/* How carefully ex's next batch starts: optimistic, unless a quarter or
 * more of its recent groups had a job undone that was not the first of its
 * transaction (contended rows: each such group would roll back and run
 * again), and then with savepoints. */
enum sl_txn_care sl_txn_first_care(const struct sl_executor *ex);

/* Runs items[0..n) in one transaction (with limits.max_batch 1 and n > 1,
 * a chain: one each, each COMMIT sent with the next job's statements),
 * as carefully as *care says. A job that would wait
 * for a lock inside a group splits it: the jobs before it commit, and it
 * goes first in the next transaction. Returns how many items from the start
 * are finished and committed, each job holding its outcome; the item at
 * that index (if any) needs another attempt, with the reason in its
 * code/message and `wait` set when PostgreSQL could not judge it. *lost
 * says the transaction was lost as a whole (connection, COMMIT), which no
 * single item is known for; *replay that it rolled back and its jobs must
 * run again as carefully as the raised *care says, which costs no attempt. */
size_t sl_txn_run(struct sl_executor *ex, struct sl_item *items, size_t n, enum sl_txn_care *care, int *lost,
                  int *replay);

#endif
