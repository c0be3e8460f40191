/* relay_int.h -- private structures and functions shared by the relay's files.
 *
 * relay.c runs the relay thread (connection, producer, batches), relay_lease.c
 * takes, renews and gives back shard leases, relay_event.c writes the
 * CloudEvents and dead letters and checks data against schemas. Everything
 * here is for the relay thread only, unless a field says otherwise.
 */
#ifndef SL_RELAY_INT_H
#define SL_RELAY_INT_H

#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "metrics.h"

struct sl_worker;
struct sl_config;

/* A shard whose lease this relay holds. */
struct held {
	int shard;
	long long epoch;
	double renewed_at;         /* sl_now() of the last renewal */
};

/* The relay of one worker (relay.h). */
struct sl_relay {
	struct sl_worker *w;       /* borrowed */
	const struct sl_config *cfg; /* borrowed from w */
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;                  /* under mu */
	PGcancel *cancel;          /* under mu: cancels conn's statement at a stop */

	/* Relay thread only, from here on. */
	PGconn *conn;
	rd_kafka_t *producer;
	char holder[160];          /* this relay's name in sluice.outbox_leases */
	struct held *held;
	size_t n_held, cap_held;
	int share;                 /* shards this relay should hold (sluice.outbox_heartbeat()) */
	long pending;              /* rows of the batch in flight (delivery callback) */
	long deleted;              /* rows deleted since the last vacuum */
	double vacuumed_at;        /* sl_now() of the last vacuum */
	int waiting_logged;        /* "waiting for the migration" said once */
	double pg_warned_at;
	atomic_int fatal;          /* the producer hit a fatal error: relaying is over */
	/* The max.message.bytes of the topics the relay sent to (0: could not
	 * be read, -1: the topic does not exist), asked when it happened;
	 * held_until, until when the rows of a topic that refuses every row
	 * (missing, or not ours to write) are left in the outbox; compacted,
	 * whether it refuses records without a key; batch_cap,
	 * the limit the producer's batches are kept under (0: none). */
	struct topic_limit {
		char *topic;
		int max;
		double asked_at;
		double held_until;
		double held_logged_at;
		int compacted;         /* refuses records without a key */
	} *limits;
	size_t n_limits;
	int batch_cap;
	/* Tests only (SLUICE_TEST_RELAY_FATAL_AFTER=N): once N rows were
	 * produced, librdkafka is told to raise a fatal idempotence error. */
	long test_fatal_after, produced;

	sl_metrics_series_t *m_depth, *m_delayed, *m_lag, *m_relayed, *m_dead_letters, *m_held;
};

/* relay.c: runs sql with text parameters; returns the result (TUPLES_OK or
 * COMMAND_OK), or NULL with the server's message in errbuf and the SQLSTATE
 * (at least 6 bytes) in sqlstate. */
PGresult *sl__relay_query(struct sl_relay *r, const char *sql, int n, const char *const *values, char *sqlstate,
                          char *errbuf, size_t errbuf_size);

/* relay.c: runs a statement that returns one integer; returns it (-1 for
 * NULL), or -1 after dropping the connection (r->conn NULL) or logging. */
long long sl__relay_scalar(struct sl_relay *r, const char *sql, int n, const char *const *values);

/* relay.c: drops the connection and forgets the leases; `why` (may be NULL)
 * is logged, at most once in ten seconds. */
void sl__relay_disconnect(struct sl_relay *r, const char *why);

/* relay_lease.c */
void sl__relay_drop_held(struct sl_relay *r, size_t i);
int sl__relay_renew(struct sl_relay *r, size_t i);
int sl__relay_refresh_leases(struct sl_relay *r);
void sl__relay_release_leases(struct sl_relay *r);

/* relay_event.c */
void sl__relay_append(char **buf, size_t *len, size_t *cap, const char *s);
char *sl__relay_event_text(const char *id, const char *source, const char *type, const char *time,
                           const char *data);
int sl__relay_check_data(const struct sl_worker *w, const char *type, const char *data, char *code, char *msg,
                         size_t msg_size);
rd_kafka_headers_t *sl__relay_dead_letter_headers(const char *code, const char *message, const char *topic);

#endif
