/* config.h -- the worker's configuration, loaded from a libconfig file.
 *
 * sl_config_load() reads the file, applies defaults and the environment
 * overrides (SLUICE_KAFKA_BROKERS, SLUICE_PG_CONNINFO), and checks everything
 * it can without connecting anywhere: unknown settings, types, ranges, Kafka
 * properties sluice owns. Errors read `file:line: what is wrong`. Handler
 * names and schema files are checked by the caller (the worker), which knows
 * the registry; the line of each job entry is kept for its messages.
 *
 * A loaded configuration is immutable and may be read from any thread.
 */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stddef.h>

struct sl_kv {
	char *key;
	char *value;
};

struct sl_retry_policy {
	int max_attempts;          /* >= 1; 1 means no retry */
	double initial_backoff;    /* seconds */
	double max_backoff;        /* seconds */
	double multiplier;         /* >= 1 */
};

struct sl_job_type {
	char *type;                /* CloudEvents type, e.g. "ledger.transfer" */
	char *handler;             /* a built-in's name, "sql:SCHEMA.FUNCTION" or "plugin:PATH:NAME" */
	char *schema_path;         /* absolute or relative to the config's folder; NULL: none */
	char *result_topic;
	struct sl_retry_policy retry;
	char *role;                /* SET LOCAL ROLE around its handler's statement; NULL: none */
	double statement_timeout;  /* seconds, SET LOCAL around its handler's statement; 0: none */
	int line;                  /* where the entry starts in the file */
};

/* The outbox relay (relay.h): enqueue from PostgreSQL. */
struct sl_outbox_config {
	int enabled;               /* run the relay when the sluice.outbox table exists */
	char *source;              /* CloudEvents source of rows enqueued without one */
	double poll_interval;      /* seconds between polls of an idle outbox */
	int batch;                 /* rows per fetch, produce and delete */
	double lease_ttl;          /* seconds a shard's lease lasts unless renewed */
};

struct sl_config {
	char *path;                /* as given */
	char *dir;                 /* the file's folder, for relative paths */

	char *brokers;
	char *group;
	char **topics;
	size_t n_topics;
	char *dlq_topic;
	char *result_topic;
	struct sl_kv *kafka_props;
	size_t n_kafka_props;
	struct sl_kv *consumer_props;
	size_t n_consumer_props;
	struct sl_kv *producer_props;
	size_t n_producer_props;

	char *pg_conninfo;         /* "" means libpq's environment; a secret: never log it raw */
	/* postgres.pooling = "transaction": the conninfo reaches PostgreSQL
	 * through a pooler in transaction mode (PgBouncer), which hands each
	 * transaction to any of its server sessions. Then sluice prepares no
	 * named statement and sets nothing for the session: what it needs
	 * (the bounds below, the relay's settings) is set per transaction,
	 * SET LOCAL. 0 ("none", the default): a session is sluice's own. */
	int pg_pooled;

	int executors;
	int max_in_flight;
	int max_job_bytes;
	/* A result event longer than this fails its job ("result_too_large")
	 * instead of reaching the ledger: a result the result topic refuses
	 * could never be published, and its partition would stop there. */
	int max_result_bytes;
	int max_batch;
	double shutdown_timeout;
	double revoke_timeout;
	double stall_timeout;      /* a job running longer, or a partition stuck longer, stops WATCHDOG=1 */
	/* Bounds on what one session may hold, so that a frozen or cut-off
	 * worker cannot hold the others: a lock wait ends with SQLSTATE 55P03
	 * (retried), an idle transaction is ended by the server. Seconds; by
	 * default half the consumer's session.timeout.ms (sl_config_load). */
	double lock_timeout;
	double idle_in_transaction_timeout;

	struct sl_retry_policy retry;
	struct sl_job_type *jobs;
	size_t n_jobs;

	struct sl_outbox_config outbox;

	char *result_source;
	char *http_listen;         /* "" means off */
	int log_level;             /* enum sl_log_level */
	int log_format;            /* enum sl_log_format */
};

/* Loads and checks `path`. Returns a new configuration (free it with
 * sl_config_destroy()), or NULL with `file:line: what is wrong` in errbuf. */
struct sl_config *sl_config_load(const char *path, char *errbuf, size_t errbuf_size);

/* Frees a configuration; NULL is a no-op. */
void sl_config_destroy(struct sl_config *cfg);

/* Returns the job type named `type`, or NULL. */
const struct sl_job_type *sl_config_job_type(const struct sl_config *cfg, const char *type);

/* Resolves a path from the file against the configuration's folder into buf;
 * absolute paths are copied. Returns buf. */
const char *sl_config_path(const struct sl_config *cfg, const char *path, char *buf, size_t buf_size);

/* Logs a warning when `file` (borrowed) can be read by its group or by
 * others, for files that hold a secret; `what` names the secret. This function
 * can't fail (a file it cannot stat is not warned about). */
void sl_config_warn_exposed(const char *file, const char *what);

#endif
