/* worker_int.h -- the structures the worker's modules share, and who owns
 * each field.
 *
 * The consumer thread (consumer.c, partition.c, rebalance.c, publish.c)
 * owns partitions, offsets, the producer's delivery reports and every job's
 * life from fetch to acknowledgement. Executor threads (executor.c) own
 * their PostgreSQL connection and run their jobs (job.c, txn.c); they touch
 * a job only between taking it from their queue and handing it back through
 * the done queue. Fields are annotated with the thread that may write them.
 * docs/architecture.md draws the whole.
 *
 * Each module's functions are declared in its own header (partition.h,
 * executor.h, ...): this one holds only the shared structures.
 */
#ifndef SL_WORKER_INT_H
#define SL_WORKER_INT_H

#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "dispatch.h"
#include "metrics.h"
#include "offsets.h"
#include "pgpipe.h"
#include "schema.h"

struct sl_worker;

/* A partition while assigned, and as long as any of its jobs is alive. A
 * partition assigned again after a revoke gets a new struct, so late jobs of
 * the old assignment can never move the new one's offsets. */
struct sl_partition {
	char *topic;
	int32_t partition;
	sl_offsets_t *offsets;         /* consumer thread */
	int jobs;                      /* consumer thread: live jobs of this struct */
	int assigned;                  /* consumer thread */
	int64_t stored;                /* consumer thread: last offset stored, -1 none */
	int dropped;                   /* consumer thread: a fetched message was left untracked */
	atomic_int revoked;            /* set by the consumer thread, read by executors */
	struct sl_partition *next;     /* consumer thread: assignment list */
	struct sl_job *oldest, *newest; /* consumer thread: live jobs in offset order */
	double progress_at;            /* consumer thread: committable last moved (or idle) */
	int64_t last_fetched_ts;       /* consumer thread: Kafka timestamp (ms) of the last fetch */
};

/* A job's outcome, as its result says it (sl_job_status_name()). */
enum sl_job_status {
	SL_JOB_SUCCEEDED = 0,
	SL_JOB_REJECTED,
	SL_JOB_FAILED,
};

/* "succeeded", "rejected" or "failed" (static). */
static inline const char *
sl_job_status_name(enum sl_job_status s)
{
	return s == SL_JOB_SUCCEEDED ? "succeeded" : s == SL_JOB_REJECTED ? "rejected" : "failed";
}

/* What became of a job, decided by its executor. */
enum sl_job_end {
	SL_JOB_END_RESULT = 0,         /* publish `result` (and a dead letter if dlq_code) */
	SL_JOB_END_SKIPPED,            /* not run (revoked or abandoned): redelivered later */
};

/* One fetched message, from fetch to acknowledgement. */
struct sl_job {
	struct sl_job *next;           /* queue link: owner of the queue */
	struct sl_job *p_prev, *p_next; /* consumer thread: the partition's job list */
	rd_kafka_message_t *msg;       /* owned: destroyed when the job is released */
	struct sl_partition *part;     /* the partition struct it was fetched under */
	int64_t offset;
	double fetched_at;             /* monotonic seconds */

	/* Written by the executor, read by the consumer thread after hand-back. */
	enum sl_job_end end;
	char *result;                  /* result event text, malloc'ed */
	const char *result_topic;      /* borrowed from the configuration */
	const struct sl_job_type_rt *jt; /* its job type, NULL if unknown */
	enum sl_job_status status;
	char *dlq_code;                /* malloc'ed; non-NULL: also publish a dead letter */
	char *dlq_message;             /* malloc'ed */
	int attempts;
	int duplicate;                 /* the ledger already had the result */
	double run_seconds;            /* time the executor spent on it */

	/* Consumer thread only. */
	uint64_t key_hash;             /* its key's (or keyless, its partition's), for dispatch.c */
	unsigned executor;             /* the executor it was handed to */
	int pending_acks;
	int result_acked;
	int dlq_acked;
};

/* Jobs an executor takes at once with limits.max_batch 1: each commits
 * alone, its COMMIT sent with the next one's first statement (job.c). */
#define SL_CHAIN_MAX 16

struct sl_group;

struct sl_executor {
	struct sl_worker *w;
	unsigned index;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct sl_job *head, *tail;    /* under mu */
	size_t queued;                 /* under mu */
	int stop;                      /* under mu */
	struct sl_pgconn pg;           /* executor thread; pg.cancel under mu, for the consumer thread */
	struct sl_group *group;        /* executor thread: the group transaction running (txn.c) */
	char bounds_ms[2][24];         /* executor thread: lock and idle bounds, ms (sl_txn_connect) */
	const char *bounds[2];         /* executor thread: pointers to them, sl_sql_bounds's params */
	double undo_share;             /* executor thread: recent groups in which a job not first in its
	                                * transaction was undone, a moving share (txn.c) */
	atomic_int busy;               /* running a job right now */
	atomic_int waiting;            /* its jobs wait for PostgreSQL (not stalled) */
	atomic_llong busy_ns;          /* total time spent running jobs */
	atomic_llong done;             /* jobs handed back */
	atomic_llong progress_at;      /* monotonic ms of the last step forward */
};

struct sl_job_type_rt {
	const struct sl_job_type *conf;
	const void *handler;           /* const struct sl_handler * */
	sl_schema_t *schema;           /* NULL: no schema */
	struct sl_retry_policy retry;  /* under sl_worker.reload_mu: SIGHUP may change it */
	/* Statements around its handler's (group.c): SET LOCAL ROLE and
	 * statement_timeout of the job type, malloc'ed for the process (their
	 * addresses name prepared statements); NULL: none. */
	char *enter_role, *enter_timeout;
	sl_metrics_series_t *m_ok, *m_rejected, *m_failed, *m_retries, *m_duration;
	/* The largest record batch its result topic takes (max.message.bytes),
	 * read at start (kafka.c); 0: not known. */
	int result_topic_max;
};

/* What a one-record batch adds to its record's key and value (batch header,
 * record framing), with room to spare: the broker compares the batch with
 * the topic's max.message.bytes. */
#define SL_RECORD_OVERHEAD 512

/* The worker's operations surface (ops.c): metrics, HTTP, systemd. */
struct sl_ops {
	sl_metrics_t *metrics;
	void *http;                    /* sl_http_t * */
	sl_metrics_series_t *m_replays, *m_in_flight, *m_util, *m_assigned, *m_duplicates, *m_unknown[3], *m_pg[3];
	sl_metrics_series_t *m_waiting; /* jobs held because PostgreSQL cannot judge them now */
	sl_metrics_series_t *m_round_trips;
	sl_metrics_family_t *f_dead_letters, *f_kafka_errors;
	pthread_mutex_t lag_mu;
	struct sl_lag { char *topic; int32_t partition; int64_t messages; double seconds; } *lag;
	size_t n_lag;                  /* under lag_mu */
	atomic_int joined;             /* the first assignment arrived */
	atomic_int pg_ok;              /* the last PostgreSQL contact worked */
	/* "Cannot judge now" (job.c): executors and jobs waiting for
	 * PostgreSQL, and why, for /readyz and the log. */
	atomic_int waiting;            /* executors waiting */
	atomic_long jobs_waiting;      /* jobs they hold */
	pthread_mutex_t wait_mu;
	char wait_reason[256];         /* under wait_mu: the latest reason */
	double wait_logged_at;         /* under wait_mu: when it was last logged */
	atomic_int brokers_down;       /* a transport error since the last assignment or message */
	char kafka_reason[256];        /* under wait_mu: its words */
	double next_snapshot, next_status, next_watchdog, last_util_at;
	long long last_busy_ns, last_done;
	double rate;                   /* jobs/s over the last snapshot interval */
	int ready_sent;
};

struct sl_worker {
	struct sl_config *cfg;
	rd_kafka_t *consumer;
	rd_kafka_t *producer;
	rd_kafka_t *alone;             /* NULL until a topic refuses a batch (publish.c) */
	/* Compacted result and dead-letter topics, which refuse records without
	 * a key (publish.c gives those one); consumer thread. */
	char **keyed_topics;
	size_t n_keyed_topics;
	rd_kafka_queue_t *consumer_q;  /* for waking the consumer thread */

	struct sl_job_type_rt *types;
	size_t n_types;
	/* The smallest max.message.bytes of the result and dead-letter topics,
	 * read at start (kafka.c), which the producer's batches stay under; 0:
	 * not known. */
	int batch_max;
	/* The same for the outbox relay's producer: the dead-letter and job
	 * topics, where outbox rows go. */
	int relay_batch_max;

	struct sl_executor *executors;
	unsigned n_executors;

	pthread_mutex_t done_mu;
	struct sl_job *done_head, *done_tail; /* under done_mu */

	struct sl_partition *parts;    /* consumer thread: current assignment */
	long in_flight;                /* consumer thread: jobs fetched, not yet released */
	int paused;                    /* consumer thread */
	int abandoning;                /* consumer thread: stopping without waiting for jobs */
	struct sl_dispatch dispatch;   /* consumer thread: the executor each job goes to */
	struct sl_retry_rec *retries;  /* consumer thread: records to produce again (publish.c) */
	double record_error_at;        /* consumer thread: when a failed record was last logged */
	long record_errors_unsaid;     /* consumer thread: failed records not logged since */

	/* What SIGHUP may change (consumer thread, except retry policies). */
	int max_in_flight;
	double shutdown_timeout, revoke_timeout, stall_timeout;
	pthread_mutex_t reload_mu;

	struct sl_ops ops;
	struct sl_relay *relay;        /* consumer thread: the outbox relay (relay.c), NULL: off */

	atomic_int abandon;            /* executors stop starting and committing jobs */
	atomic_int fatal;              /* the producer hit a fatal error */

	/* Counters (any thread). */
	atomic_llong n_fetched, n_succeeded, n_rejected, n_failed, n_dead_letters, n_duplicates,
		n_retries, n_skipped;
};

/* The one place that decides the batch mode: with limits.max_batch above 1
 * an executor's jobs share one transaction (a group); with 1 each has its
 * own, chained (txn.c). */
static inline int
sl_batch_grouped(const struct sl_config *cfg)
{
	return cfg->max_batch > 1;
}

#endif
