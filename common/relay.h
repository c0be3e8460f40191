/* relay.h -- the outbox relay: jobs enqueued in PostgreSQL, produced to Kafka.
 *
 * sluice.enqueue() (schemas/sql/0006_outbox.sql) writes a job into the
 * outbox table inside the caller's transaction. The relay runs inside the
 * worker process, on its own thread, with its own PostgreSQL connection and
 * its own idempotent producer: it takes the lease of each outbox shard it can,
 * reads committed rows below the transaction-id watermark in (xid, seq)
 * order, produces them as structured CloudEvents, and deletes them (fenced by
 * the lease's epoch) once Kafka acknowledged them. It also moves due delayed
 * jobs into the outbox and fires due schedules. Not for: running jobs (the
 * worker consumes what the relay produced like any other job).
 */
#ifndef SL_RELAY_H
#define SL_RELAY_H

#include <stddef.h>

struct sl_worker;
typedef struct sl_relay sl_relay_t;

/* Starts the relay of worker w (borrowed; it must outlive the relay) when
 * w's outbox.enabled is set. Returns a new relay, or NULL: with errbuf empty
 * when the relay is disabled, else with what went wrong. A relay whose
 * database lacks the outbox migration waits for it, and one that cannot
 * reach PostgreSQL retries: neither is an error here. A fatal error of the
 * relay's idempotent producer stops the relaying and sets w->fatal, so the
 * worker stops and exits non-zero. Consumer thread. */
sl_relay_t *sl_relay_start(struct sl_worker *w, char *errbuf, size_t errbuf_size);

/* Stops the relay: it finishes the batch in hand (waiting a few seconds for
 * Kafka's acknowledgements), gives its leases back, and joins its thread.
 * Rows not acknowledged stay in the outbox and are sent again later. NULL is
 * a no-op. Consumer thread. */
void sl_relay_stop(sl_relay_t *r);

#endif
