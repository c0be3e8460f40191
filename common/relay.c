/* relay.c -- the outbox relay: committed outbox rows to Kafka, then deleted.
 *
 * One thread per worker, with a PostgreSQL connection and an idempotent
 * producer of its own, so that neither the executors' connections nor the
 * results producer ever wait for it. Each round it (1) takes or renews the
 * leases of the outbox shards (sluice.outbox_leases), (2) moves due delayed
 * jobs into the outbox and fires due schedules (both under row locks with
 * SKIP LOCKED, so every worker may do it), and (3) for every shard it holds,
 * reads a batch below the watermark in (xid, seq) order, produces each row
 * as a structured CloudEvent (or, when the worker knows the job type and the
 * data fails its schema, a dead letter), waits for every acknowledgement and
 * deletes the acknowledged rows through sluice.outbox_ack(), which checks the
 * lease's epoch. Why that order is gap-free and keeps per-key order is
 * explained at the top of schemas/sql/0006_outbox.sql.
 *
 * Failure rules: a row is deleted only after Kafka acknowledged it, so a
 * crash at any instant resends, never loses; a lost lease (SQLSTATE SL004)
 * drops the shard; PostgreSQL trouble drops the connection and the leases
 * and tries again; a fatal idempotence error stops the relay for good and
 * sets the worker's fatal flag, so the worker exits non-zero. What each
 * topic takes is asked before the relay produces to it (learn_limit()): its
 * batches stay under it, and a row above it alone is a dead letter. A topic
 * that refuses every row (it does not exist, or is not ours to write) is
 * held (hold_topic()): its rows stay, left out of the batches for a while,
 * and the other topics' rows go on.
 *
 * Leases are relay_lease.c's, the CloudEvents and dead letters
 * relay_event.c's; relay_int.h holds what the three share. Not for:
 * consuming or running jobs, or the outbox's SQL (0006_outbox.sql).
 */
#include "relay.h"

#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"
#include "relay_int.h"
#include "worker_int.h"

/* Seconds a stopping relay waits for the acknowledgements of its batch. */
#define STOP_ACK_WAIT 5.0
/* The relay vacuums sluice.outbox itself after deleting this many rows (or
 * some rows and VACUUM_SECONDS): autovacuum visits a database once per
 * autovacuum_naptime (a minute by default), and at thousands of deletes a
 * second the table would grow by a minute of dead rows between visits. */
#define VACUUM_ROWS 50000
#define VACUUM_SECONDS 30.0

/* A topic's limit learnt after a refusal is asked again after this long: an
 * operator may raise it meanwhile. */
#define LIMIT_TTL 60.0
/* Seconds a round spends at most asking for topics' limits. */
#define LEARN_WAIT 3.0
/* Seconds the rows of a topic that refuses every row (it does not exist,
 * or the relay may not write to it) stay out of the relay's batches before
 * it tries the topic again; and how often it says so again. */
#define HOLD_SECONDS 10.0
#define HOLD_LOG_SECONDS 60.0

/* One outbox row of a batch; strings borrowed from the batch's PGresult. */
struct row {
	const char *xid, *seq, *id;
	const char *topic;         /* where it was produced: its own, or the dead-letter topic */
	int state;                 /* 0 in flight, 1 acknowledged, -1 failed */
	rd_kafka_resp_err_t err;
	int dead_letter;           /* produced to the dead-letter topic */
	int keyless;               /* produced without a key */
	int kept;                  /* not produced: too large for its topic and the dead-letter
	                            * topic (KEPT_TOO_LARGE), or its topic is held (KEPT_HELD) */
};

#define KEPT_TOO_LARGE 1
#define KEPT_HELD 2

/* ---- small helpers ---------------------------------------------------- */

static int
stopping(struct sl_relay *r)
{
	int s;

	pthread_mutex_lock(&r->mu);
	s = r->stop;
	pthread_mutex_unlock(&r->mu);
	return s || atomic_load(&r->fatal);
}

/* Sleeps up to `seconds`, waking at once on stop. Returns stopping(). */
static int
relay_sleep(struct sl_relay *r, double seconds)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)seconds;
	ts.tv_nsec += (long)((seconds - (double)(time_t)seconds) * 1e9);
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&r->mu);
	if (!r->stop)
		pthread_cond_timedwait(&r->cv, &r->mu, &ts);
	pthread_mutex_unlock(&r->mu);
	return stopping(r);
}

/* Runs sql with text parameters; returns the result when its status is
 * TUPLES_OK or COMMAND_OK, else NULL after writing the server's message to
 * errbuf and copying the SQLSTATE (at least 6 bytes) to sqlstate. */
/* The relay's settings for one statement, behind a transaction pooler
 * (postgres.pooling), where a session SET would stay with a server session
 * that other clients get next, while this relay's next statement may run
 * on another. See relay_connect() for why these values. */
static const char relay_local_settings[] =
	"select set_config('statement_timeout', '30s', true), set_config('lock_timeout', '10s', true), "
	"set_config('synchronous_commit', 'local', true)";

/* PQexecParams() behind a transaction pooler: the settings and sql in one
 * pipeline, one implicit transaction (the statements before a Sync share
 * one), so set_config(..., true) holds for sql and ends with it; one round
 * trip, as before. Returns sql's result, the settings' if they failed, or
 * NULL when the connection failed. */
static PGresult *
pooled_exec(PGconn *conn, const char *sql, int n, const char *const *values)
{
	PGresult *res = NULL, *set = NULL, *extra;
	int k;

	if (PQenterPipelineMode(conn) != 1)
		return NULL;
	if (PQsendQueryParams(conn, relay_local_settings, 0, NULL, NULL, NULL, NULL, 0) != 1 ||
	    PQsendQueryParams(conn, sql, n, NULL, values, NULL, NULL, 0) != 1 || PQpipelineSync(conn) != 1)
		goto lost;
	for (k = 0; k < 2; k++) {
		PGresult *got = PQgetResult(conn);

		if (got == NULL)
			goto lost;
		while ((extra = PQgetResult(conn)) != NULL)
			PQclear(extra);
		if (k == 0)
			set = got;
		else
			res = got;
	}
	extra = PQgetResult(conn);
	if (extra == NULL || PQresultStatus(extra) != PGRES_PIPELINE_SYNC) {
		PQclear(extra);
		goto lost;
	}
	PQclear(extra);
	if (PQexitPipelineMode(conn) != 1)
		goto lost;
	if (PQresultStatus(set) != PGRES_TUPLES_OK) {
		PQclear(res);
		return set;
	}
	PQclear(set);
	return res;

lost:
	PQclear(set);
	PQclear(res);
	return NULL;
}

PGresult *
sl__relay_query(struct sl_relay *r, const char *sql, int n, const char *const *values, char *sqlstate, char *errbuf,
      size_t errbuf_size)
{
	PGresult *res = r->cfg->pg_pooled ? pooled_exec(r->conn, sql, n, values)
	                                  : PQexecParams(r->conn, sql, n, NULL, values, NULL, NULL, 0);
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

	sqlstate[0] = '\0';
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		return res;
	snprintf(sqlstate, 6, "%s", sl_pg_sqlstate(res));
	snprintf(errbuf, errbuf_size, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(r->conn));
	errbuf[strcspn(errbuf, "\n")] = '\0';
	PQclear(res);
	return NULL;
}

/* Drops the connection and forgets the leases (they expire, or this relay
 * takes them again under a new epoch when it is back). */
void
sl__relay_disconnect(struct sl_relay *r, const char *why)
{
	if (why != NULL && sl_now() - r->pg_warned_at >= 10) {
		sl_log_warn("outbox relay: %s; reconnecting", why);
		r->pg_warned_at = sl_now();
	}
	pthread_mutex_lock(&r->mu);
	PQfreeCancel(r->cancel);
	r->cancel = NULL;
	pthread_mutex_unlock(&r->mu);
	PQfinish(r->conn);
	r->conn = NULL;
	r->n_held = 0;
	sl_metrics_gauge_set(r->m_held, 0);
}

/* Server notices (a VACUUM's "permission denied") go to the debug log,
 * not to stderr as libpq would write them. */
static void
on_notice(void *arg, const char *message)
{
	(void)arg;
	sl_log_debug("outbox relay: postgresql says: %.*s", (int)strcspn(message, "\n"), message);
}

/* Connects and checks that the outbox migration is there. Returns 0, 1 when
 * the database lacks it (the caller waits), -1 when PostgreSQL cannot be
 * reached. */
static int
relay_connect(struct sl_relay *r)
{
	char errbuf[512], state[6];
	PGresult *res;
	int present;

	if ((r->conn = sl_pg_connect(r->cfg->pg_conninfo, "sluice-relay", errbuf, sizeof(errbuf))) == NULL) {
		if (sl_now() - r->pg_warned_at >= 10) {
			sl_log_warn("outbox relay: %s; retrying", errbuf);
			r->pg_warned_at = sl_now();
		}
		return -1;
	}
	PQsetNoticeProcessor(r->conn, on_notice, NULL);
	pthread_mutex_lock(&r->mu);
	r->cancel = PQgetCancel(r->conn);
	pthread_mutex_unlock(&r->mu);
	/* The relay's statements are short; a lock held by a frozen session
	 * (a lease row, a schedule row) must not hold it for long. Its commits
	 * need not wait for a synchronous standby: each of them (a renewal, a
	 * delete of delivered rows, a move of due delayed jobs, a fired slot)
	 * is one that, lost in a failover, is done again with the same ids,
	 * which the ledger dedupes. */
	/* Behind a transaction pooler the first three go with each statement
	 * instead (relay_local_settings); client_encoding is one of the
	 * parameters PgBouncer itself keeps per client. */
	if (sl_pg_exec(r->conn,
	               r->cfg->pg_pooled ? "set client_encoding = 'UTF8'"
	                                 : "set statement_timeout = '30s'; set lock_timeout = '10s'; "
	                                   "set synchronous_commit = local; set client_encoding = 'UTF8'",
	               errbuf, sizeof(errbuf)) < 0) {
		sl__relay_disconnect(r, errbuf);
		return -1;
	}
	res = sl__relay_query(r,
	            "select to_regprocedure('sluice.outbox_fetch(integer,integer,text,text[])') is not null "
	            "and to_regprocedure('sluice.schedule_fire(integer)') is not null "
	            "and to_regprocedure('sluice.outbox_heartbeat(text,interval)') is not null",
	            0, NULL, state, errbuf, sizeof(errbuf));
	if (res == NULL) {
		sl__relay_disconnect(r, errbuf);
		return -1;
	}
	present = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (!present) {
		if (!r->waiting_logged)
			sl_log_info("outbox relay: the database lacks the outbox's migrations (sluice.outbox, or one "
			            "newer than its own: sluicectl migrate); the relay waits for them");
		r->waiting_logged = 1;
		sl__relay_disconnect(r, NULL);
		return 1;
	}
	if (r->waiting_logged)
		sl_log_info("outbox relay: sluice.outbox is there; relaying");
	r->waiting_logged = 0;
	return 0;
}

/* Runs a statement that returns one integer; returns it, or -1 after
 * dropping the connection (or logging) on error. */
long long
sl__relay_scalar(struct sl_relay *r, const char *sql, int n, const char *const *values)
{
	char errbuf[512], state[6];
	PGresult *res = sl__relay_query(r, sql, n, values, state, errbuf, sizeof(errbuf));
	long long v;

	if (res == NULL) {
		if (PQstatus(r->conn) != CONNECTION_OK) {
			sl__relay_disconnect(r, errbuf);
		} else if (sl_now() - r->pg_warned_at >= 10) {
			/* Polled every round: once in ten seconds is enough. */
			sl_log_warn("outbox relay: %s", errbuf);
			r->pg_warned_at = sl_now();
		}
		return -1;
	}
	v = PQntuples(res) > 0 && !PQgetisnull(res, 0, 0) ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : -1;
	PQclear(res);
	return v;
}

/* ---- producing -------------------------------------------------------- */

static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct sl_relay *r = opaque;
	struct row *row = m->_private;

	(void)rk;
	row->err = m->err;
	row->state = m->err == RD_KAFKA_RESP_ERR_NO_ERROR ? 1 : -1;
	r->pending--;
}

static void
on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct sl_relay *r = opaque;
	char fatal[512];

	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
		sl_log_error("fatal kafka error in the outbox relay's producer: %s; relaying stops and the worker "
		             "exits (unacknowledged rows stay in the outbox)", fatal);
		atomic_store(&r->fatal, 1);
		atomic_store(&r->w->fatal, 1);
		return;
	}
	sl_log_debug("kafka (outbox relay): %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void
on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	if (level <= 3 && strcmp(fac, "FAIL") != 0 && strcmp(fac, "ERROR") != 0)
		sl_log_error("kafka (outbox relay) %s: %s", fac, buf);
	else
		sl_log_debug("kafka (outbox relay) %s: %s", fac, buf);
}

/* The relay's producer: sluice's defaults, the user's properties (shared and
 * producer), then what the guarantees rest on: idempotence, acks=all, and
 * messages that wait for delivery as long as it takes (message.timeout.ms 0,
 * whatever producer_properties say for the results producer): an expired
 * message would be resent after those of its key behind it, out of order. */
static rd_kafka_t *
producer_new(struct sl_relay *r, char *errbuf, size_t errbuf_size)
{
	const struct sl_config *cfg = r->cfg;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	char kerr[512];

	if (sl_kafka_conf_set(conf, "bootstrap.servers", cfg->brokers, errbuf, errbuf_size) < 0 ||
	    sl_kafka_conf_set(conf, "client.id", "sluice-relay", errbuf, errbuf_size) < 0 ||
	    sl_kafka_conf_set(conf, "linger.ms", "5", errbuf, errbuf_size) < 0 ||
	    sl_kafka_conf_set(conf, "message.max.bytes", "16777216", errbuf, errbuf_size) < 0)
		goto err;
	if (sl_kafka_conf_set_all(conf, cfg->kafka_props, cfg->n_kafka_props, errbuf, errbuf_size) < 0 ||
	    sl_kafka_conf_set_all(conf, cfg->producer_props, cfg->n_producer_props, errbuf, errbuf_size) < 0 ||
	    sl_kafka_cap_batches(r->batch_cap, "outbox jobs", conf, errbuf, errbuf_size) < 0)
		goto err;
	if (sl_kafka_conf_set(conf, "enable.idempotence", "true", errbuf, errbuf_size) < 0 ||
	    sl_kafka_conf_set(conf, "acks", "all", errbuf, errbuf_size) < 0 ||
	    sl_kafka_conf_set(conf, "message.timeout.ms", "0", errbuf, errbuf_size) < 0)
		goto err;
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_conf_set_error_cb(conf, on_error);
	rd_kafka_conf_set_log_cb(conf, on_log);
	rd_kafka_conf_set_opaque(conf, r);
	if ((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr))) == NULL) {
		snprintf(errbuf, errbuf_size, "could not create the outbox relay's kafka producer: %s", kerr);
		goto err;
	}
	return rk; /* conf is now owned by rk */
err:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

/* Produces one row (copying key and value). Returns 0, or -1 with the row
 * marked failed. */
static int
produce_row(struct sl_relay *r, struct row *row, const char *topic, const char *key, size_t key_len,
            const char *value, rd_kafka_headers_t *hdrs)
{
	rd_kafka_resp_err_t err;

	for (;;) {
		err = rd_kafka_producev(r->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key_len),
		                        RD_KAFKA_V_VALUE((void *)value, strlen(value)),
		                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
		                        RD_KAFKA_V_OPAQUE(row), RD_KAFKA_V_END);
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || atomic_load(&r->fatal))
			break;
		rd_kafka_poll(r->producer, 10);
	}
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		if (hdrs != NULL)
			rd_kafka_headers_destroy(hdrs); /* not taken over on failure */
		row->state = -1;
		row->err = err;
		return -1;
	}
	r->pending++;
	return 0;
}

/* topic's entry in r->limits, or NULL. */
static struct topic_limit *
find_topic(const struct sl_relay *r, const char *topic)
{
	size_t i;

	for (i = 0; i < r->n_limits; i++)
		if (strcmp(r->limits[i].topic, topic) == 0)
			return &r->limits[i];
	return NULL;
}

/* topic's entry in r->limits, made when it has none. */
static struct topic_limit *
topic_entry(struct sl_relay *r, const char *topic)
{
	struct topic_limit *t = find_topic(r, topic);
	size_t i = r->n_limits;

	if (t != NULL)
		return t;
	if ((r->limits = realloc(r->limits, (r->n_limits + 1) * sizeof(*r->limits))) == NULL)
		abort();
	memset(&r->limits[i], 0, sizeof(r->limits[i]));
	if ((r->limits[i].topic = strdup(topic)) == NULL)
		abort();
	r->limits[i].asked_at = -LIMIT_TTL;
	r->n_limits++;
	return &r->limits[i];
}

/* The limit of topic as learnt by learn_limit(): > 0, 0 when it could not
 * be read, -1 when it was not asked (or long ago) or the topic did not
 * exist when asked. */
static int
known_limit(const struct sl_relay *r, const char *topic)
{
	const struct topic_limit *t = find_topic(r, topic);

	return t != NULL && sl_now() - t->asked_at < LIMIT_TTL && t->max >= 0 ? t->max : -1;
}

/* Leaves topic's rows in the outbox for HOLD_SECONDS: it refuses every row
 * (why), and at the head of a shard its rows would take every batch and
 * keep the other topics' rows waiting. Said at most once a minute. */
static void
hold_topic(struct sl_relay *r, const char *topic, const char *why)
{
	struct topic_limit *t = topic_entry(r, topic);

	t->held_until = sl_now() + HOLD_SECONDS;
	if (t->held_logged_at != 0 && sl_now() - t->held_logged_at < HOLD_LOG_SECONDS)
		return;
	t->held_logged_at = sl_now();
	sl_log_warn("outbox relay: topic \"%s\": %s; its rows stay in sluice.outbox, tried again every %.0f s, "
	            "while the other topics' rows go on (create the topic, or delete its rows)",
	            topic, why, HOLD_SECONDS);
}

/* The key of a row for topic: its own; for a row without one, to a
 * compacted topic (which refuses records without a key), its job id. */
static const char *
row_key(const struct sl_relay *r, struct row *row, const char *topic, const char *key)
{
	const struct topic_limit *t = find_topic(r, topic);

	row->keyless = key == NULL && (t == NULL || !t->compacted);
	return key != NULL || row->keyless ? key : row->id;
}

/* Whether topic's rows are held (hold_topic()). */
static int
topic_held(const struct sl_relay *r, const char *topic)
{
	const struct topic_limit *t = find_topic(r, topic);

	return t != NULL && t->held_until > sl_now();
}

/* The held topics as a PostgreSQL array literal, for outbox_fetch(). New
 * malloc'ed string. */
static char *
held_literal(const struct sl_relay *r)
{
	char *buf = NULL, c[3] = "";
	size_t len = 0, cap = 0, i;
	const char *s;
	int first = 1;

	sl__relay_append(&buf, &len, &cap, "{");
	for (i = 0; i < r->n_limits; i++) {
		if (r->limits[i].held_until <= sl_now())
			continue;
		sl__relay_append(&buf, &len, &cap, first ? "\"" : ",\"");
		for (s = r->limits[i].topic; *s != '\0'; s++) {
			c[0] = *s == '"' || *s == '\\' ? '\\' : *s;
			c[1] = *s == '"' || *s == '\\' ? *s : '\0';
			sl__relay_append(&buf, &len, &cap, c);
		}
		sl__relay_append(&buf, &len, &cap, "\"");
		first = 0;
	}
	sl__relay_append(&buf, &len, &cap, "}");
	return buf;
}

/* Learns what topic takes before the relay produces to it, and again once a
 * LIMIT_TTL, or at once after it refused a batch as too large (`refused`):
 * its max.message.bytes, asked of the brokers, or the relay producer's own
 * message.max.bytes when smaller (librdkafka refuses a message above it
 * before any broker sees it). When the producer's batches may be above it,
 * the producer is made again with batches under it: a broker refuses a
 * whole batch above a topic's limit, on every retry, and takes the batches
 * of the partition after it, so a refusal would put the rows of a key out
 * of order. A row above the limit goes to the dead-letter topic instead
 * (too_large_for()). Called with nothing in flight. */
static void
learn_limit(struct sl_relay *r, const char *topic, int refused)
{
	char errbuf[512], own[32];
	size_t own_size = sizeof(own);
	struct topic_limit *t;
	rd_kafka_t *p;
	int max, was = -1, compacted = 0;

	if (!refused && (known_limit(r, topic) >= 0 || topic_held(r, topic)))
		return;
	max = sl_kafka_topic_limit(r->producer, topic, &compacted, errbuf, sizeof(errbuf));
	if (max > 0 && rd_kafka_conf_get(rd_kafka_conf(r->producer), "message.max.bytes", own, &own_size) ==
	                       RD_KAFKA_CONF_OK && atoi(own) > 0 && atoi(own) < max)
		max = atoi(own);
	t = topic_entry(r, topic);
	if (t->asked_at > 0)
		was = t->max;
	t->max = max;
	t->asked_at = sl_now();
	if (compacted && !t->compacted)
		sl_log_info("outbox relay: topic \"%s\" is compacted (cleanup.policy) and refuses records without a "
		            "key: rows without a key go there keyed by their job id", topic);
	if (max != 0) /* 0: not read, and not known either way */
		t->compacted = compacted;
	if (max < 0) {
		/* Sent there, a row would wait for the topic's metadata
		 * (topic.metadata.propagation.max.ms, 30 s) and fail. */
		hold_topic(r, topic, "it does not exist");
		return;
	}
	t->held_until = 0;
	if (max == 0) {
		if (refused && *errbuf)
			sl_log_warn("outbox relay: topic \"%s\" refused a batch as too large and its max.message.bytes "
			            "could not be read: %s; its rows are sent again each second", topic, errbuf);
		else if (was != 0 && *errbuf)
			sl_log_info("outbox relay: the max.message.bytes of topic \"%s\" could not be read: %s", topic,
			            errbuf);
		return;
	}
	if (refused)
		sl_log_warn("outbox relay: topic \"%s\" refused a batch as too large; it takes up to %d bytes", topic, max);
	else if (max != was)
		sl_log_info("outbox relay: topic \"%s\" takes up to %d bytes (its max.message.bytes, or the relay "
		            "producer's message.max.bytes if smaller)", topic, max);
	if (r->batch_cap > 0 && r->batch_cap <= max)
		return;
	r->batch_cap = max;
	if ((p = producer_new(r, errbuf, sizeof(errbuf))) == NULL) {
		sl_log_error("outbox relay: could not make its producer again with smaller batches: %s", errbuf);
		return;
	}
	rd_kafka_destroy(r->producer);
	r->producer = p;
}

/* Whether a row's delivery error is its topic's, and every row sent there
 * would fail the same way until an operator acts. */
static int
refuses_every_row(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC || err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
	       err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED || err == RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION;
}

/* Where row k of an outbox_fetch() result goes: its topic, or the first
 * job topic. Borrowed from res or the configuration. */
static const char *
row_topic(const struct sl_relay *r, const PGresult *res, int k)
{
	return PQgetisnull(res, k, 6) ? r->cfg->topics[0] : PQgetvalue(res, k, 6);
}

/* Returns topic's limit, as learnt by learn_limit(), when a record of
 * `size` bytes (key and event) with its framing is above it; else 0. */
static int
too_large_for(const struct sl_relay *r, const char *topic, size_t size)
{
	int max = known_limit(r, topic);

	return max > 0 && size + SL_RECORD_OVERHEAD > (size_t)max ? max : 0;
}

/* Builds "{a,b,c}" from the column `col` of the acknowledged rows. New
 * malloc'ed string. */
static char *
array_literal(const struct row *rows, int n, int col)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int i, first = 1;

	sl__relay_append(&buf, &len, &cap, "{");
	for (i = 0; i < n; i++) {
		if (rows[i].state != 1)
			continue;
		if (!first)
			sl__relay_append(&buf, &len, &cap, ",");
		sl__relay_append(&buf, &len, &cap, col == 0 ? rows[i].xid : rows[i].seq);
		first = 0;
	}
	sl__relay_append(&buf, &len, &cap, "}");
	return buf;
}

/* Relays one batch of held[i]'s shard. Returns the number of rows deleted
 * (0: nothing to do, or nothing acknowledged), or -1 when the shard or the
 * connection was lost, or the producer failed for good. */
static long
relay_shard(struct sl_relay *r, size_t i)
{
	char shard[16], epoch[24], limit[16], errbuf[512], state[6], code[32], msg[768], refused[256] = "";
	const char *values[4];
	struct row *rows = NULL;
	PGresult *res = NULL;
	char *xids = NULL, *seqs = NULL, *held = held_literal(r);
	double waited_since = 0;
	long done = -1;
	int n, k, failed = 0, acked = 0;

	snprintf(shard, sizeof(shard), "%d", r->held[i].shard);
	snprintf(epoch, sizeof(epoch), "%lld", r->held[i].epoch);
	snprintf(limit, sizeof(limit), "%d", r->cfg->outbox.batch);
	values[0] = shard;
	values[1] = limit;
	values[2] = r->cfg->topics[0];
	values[3] = held;
	res = sl__relay_query(r, "select * from sluice.outbox_fetch($1, $2, $3, $4::text[])", 4, values, state, errbuf,
	                      sizeof(errbuf));
	free(held);
	if (res == NULL) {
		if (PQstatus(r->conn) != CONNECTION_OK)
			sl__relay_disconnect(r, errbuf);
		else
			sl_log_warn("outbox relay: could not read shard %s: %s", shard, errbuf);
		goto out;
	}
	if ((n = PQntuples(res)) == 0) {
		done = 0;
		goto out;
	}
	if ((rows = calloc((size_t)n, sizeof(*rows))) == NULL)
		abort();
	/* What each topic takes, before anything of the batch is in flight; at
	 * most a few seconds of asking a slow cluster (the lease is not renewed
	 * meanwhile): the topics not asked yet are asked next round. */
	waited_since = sl_now();
	learn_limit(r, r->cfg->dlq_topic, 0);
	for (k = 0; k < n && !stopping(r) && sl_now() - waited_since < LEARN_WAIT; k++) {
		const char *topic = row_topic(r, res, k);
		if (topic[0] != '^') /* a subscription pattern: no topic to ask about */
			learn_limit(r, topic, 0);
	}
	/* Columns: xid, seq, id, source, type, key, topic, data, time. */
	for (k = 0; k < n && !atomic_load(&r->fatal); k++) {
		struct row *row = &rows[k];
		const char *source = PQgetisnull(res, k, 3) ? r->cfg->outbox.source : PQgetvalue(res, k, 3);
		const char *type = PQgetvalue(res, k, 4);
		/* librdkafka sends an empty key as none: say so here too. */
		const char *key = PQgetisnull(res, k, 5) || PQgetlength(res, k, 5) == 0 ? NULL : PQgetvalue(res, k, 5);
		const char *topic = row_topic(r, res, k);
		const char *data = PQgetvalue(res, k, 7);
		size_t key_size = key ? strlen(key) : 0, size;
		char *value;
		int max;

		row->xid = PQgetvalue(res, k, 0);
		row->seq = PQgetvalue(res, k, 1);
		row->id = PQgetvalue(res, k, 2);
		row->topic = topic;
		if (topic_held(r, topic)) {
			row->state = -1;
			row->kept = KEPT_HELD;
			continue;
		}
		value = sl__relay_event_text(row->id, source, type, PQgetvalue(res, k, 8), data);
		size = key_size + strlen(value);
		if ((max = too_large_for(r, topic, size)) > 0) {
			snprintf(code, sizeof(code), "message_too_large");
			snprintf(msg, sizeof(msg), "the event and key are %zu bytes; topic \"%s\" takes up to %d "
			         "(max.message.bytes, %d of them for framing)", size, topic, max, SL_RECORD_OVERHEAD);
		}
		if (max > 0 || sl__relay_check_data(r->w, type, data, code, msg, sizeof(msg)) < 0) {
			row->dead_letter = 1;
			row->topic = r->cfg->dlq_topic;
			if (topic_held(r, r->cfg->dlq_topic)) {
				row->state = -1;
				row->kept = KEPT_HELD;
			} else if ((max = too_large_for(r, r->cfg->dlq_topic, size + strlen(msg) + strlen(topic))) > 0) {
				/* Kept: nothing takes it, and deleting it would lose it. */
				sl_log_error("outbox relay: job \"%s\" (type \"%s\") stays in sluice.outbox: %s, and the "
				             "dead-letter topic \"%s\" takes up to %d; raise a limit, or delete the row",
				             row->id, type, msg, r->cfg->dlq_topic, max);
				row->state = -1;
				row->kept = KEPT_TOO_LARGE;
			} else {
				const char *k2 = row_key(r, row, r->cfg->dlq_topic, key);

				sl_log_warn("outbox relay: job \"%s\" (type \"%s\") goes to the dead-letter topic: %s: %s",
				            row->id, type, code, msg);
				produce_row(r, row, r->cfg->dlq_topic, k2, k2 ? strlen(k2) : 0, value,
				            sl__relay_dead_letter_headers(code, msg, topic));
			}
		} else {
			const char *k2 = row_key(r, row, topic, key);

			produce_row(r, row, topic, k2, k2 ? strlen(k2) : 0, value, NULL);
		}
		free(value);
	}
	r->produced += n;
	if (r->test_fatal_after > 0 && r->produced >= r->test_fatal_after) {
		r->test_fatal_after = 0;
		rd_kafka_test_fatal_error(r->producer, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
		                          "SLUICE_TEST_RELAY_FATAL_AFTER");
	}
	/* Every row's acknowledgement (or failure) before the delete; the lease
	 * is renewed meanwhile. A stopping relay waits a few seconds only. */
	waited_since = sl_now();
	while (r->pending > 0) {
		if (atomic_load(&r->fatal))
			goto out;
		rd_kafka_poll(r->producer, 50);
		if (stopping(r) && sl_now() - waited_since > STOP_ACK_WAIT)
			break;
		if (sl_now() - r->held[i].renewed_at >= r->cfg->outbox.lease_ttl / 3 && sl__relay_renew(r, i) < 0) {
			/* Lost; let the deliveries finish, then give up the batch. */
			rd_kafka_flush(r->producer, (int)(STOP_ACK_WAIT * 1000));
			goto out;
		}
	}
	for (k = 0; k < n; k++) {
		if (rows[k].state == 1) {
			acked++;
			if (rows[k].dead_letter)
				sl_metrics_counter_inc(r->m_dead_letters);
		} else if (rows[k].state == -1 && rows[k].kept == KEPT_HELD) {
			continue; /* its topic's hold was logged, and its rows are left out of the next batches */
		} else if (rows[k].state == -1 && rows[k].kept) {
			failed++; /* logged above; the pause spaces those lines */
		} else if (rows[k].state == -1 && refuses_every_row(rows[k].err)) {
			hold_topic(r, rows[k].topic, rd_kafka_err2str(rows[k].err));
		} else if (rows[k].state == -1 && rows[k].err == RD_KAFKA_RESP_ERR_INVALID_RECORD && rows[k].keyless) {
			/* Compacted since the relay asked, or it could not ask: sent
			 * again next round keyed by its job id (row_key()). */
			struct topic_limit *t = topic_entry(r, rows[k].topic);

			if (!t->compacted)
				sl_log_warn("outbox relay: topic \"%s\" refused a row without a key (compacted?): rows "
				            "without a key go there keyed by their job id", rows[k].topic);
			t->compacted = 1;
			failed++;
		} else if (rows[k].state == -1) {
			if (failed++ == 0)
				sl_log_warn("outbox relay: could not relay job \"%s\": %s; it is sent again", rows[k].id,
				            rd_kafka_err2str(rows[k].err));
			if (rows[k].err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && rows[k].topic != NULL && !*refused)
				snprintf(refused, sizeof(refused), "%s", rows[k].topic);
		}
	}
	if (acked > 0) {
		xids = array_literal(rows, n, 0);
		seqs = array_literal(rows, n, 1);
		values[0] = shard;
		values[1] = epoch;
		values[2] = xids;
		values[3] = seqs;
		PQclear(res);
		res = sl__relay_query(r, "select sluice.outbox_ack($1, $2, $3::xid8[], $4::bigint[])", 4, values, state, errbuf,
		            sizeof(errbuf));
		if (res == NULL) {
			if (strcmp(state, "SL004") == 0) {
				sl_log_warn("outbox relay: lost the lease of shard %s (epoch %s) before deleting %d "
				            "delivered rows: the new holder sends them again", shard, epoch, acked);
				sl__relay_drop_held(r, i);
			} else if (PQstatus(r->conn) != CONNECTION_OK) {
				sl__relay_disconnect(r, errbuf);
			} else {
				sl_log_warn("outbox relay: could not delete delivered rows of shard %s: %s", shard, errbuf);
			}
			goto out;
		}
		sl_metrics_counter_add(r->m_relayed, (uint64_t)acked);
		r->deleted += acked;
	}
	if (failed > 0)
		relay_sleep(r, 1.0);
	done = acked;
out:
	if (r->pending > 0) {
		/* Deliveries still refer to rows: let them land or purge them. */
		rd_kafka_purge(r->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		rd_kafka_poll(r->producer, 0);
		while (r->pending > 0)
			rd_kafka_poll(r->producer, 10);
	}
	if (*refused && !atomic_load(&r->fatal))
		learn_limit(r, refused, 1);
	free(xids);
	free(seqs);
	free(rows);
	PQclear(res);
	return done;
}

/* Vacuums sluice.outbox when enough rows were deleted since the last time.
 * SKIP_LOCKED: when autovacuum (or another relay) is at it, this one is not
 * needed. A relay whose role does not own the table gets a warning from the
 * server (logged at debug level by on_notice()) and leaves it to autovacuum. */
static void
maybe_vacuum(struct sl_relay *r)
{
	char errbuf[512];

	if (r->deleted < VACUUM_ROWS && (r->deleted == 0 || sl_now() - r->vacuumed_at < VACUUM_SECONDS))
		return;
	/* Not under the relay's statement_timeout: a table grown large while
	 * the relay could not keep up takes longer than that to vacuum, and a
	 * cancelled vacuum would start over every time. (A stop still cancels
	 * it.) VACUUM cannot share a query string with the SETs. */
	if (r->cfg->pg_pooled) {
		/* No session of ours to set: the vacuum runs under the server's
		 * own statement_timeout (and VACUUM takes no SET LOCAL: it
		 * cannot run inside a transaction block). */
		if (sl_pg_exec(r->conn, "vacuum (skip_locked) sluice.outbox", errbuf, sizeof(errbuf)) < 0) {
			if (PQstatus(r->conn) != CONNECTION_OK)
				sl__relay_disconnect(r, errbuf);
			else
				sl_log_warn("outbox relay: could not vacuum sluice.outbox: %s", errbuf);
		}
	} else if (sl_pg_exec(r->conn, "set statement_timeout = 0", errbuf, sizeof(errbuf)) < 0 ||
	    sl_pg_exec(r->conn, "vacuum (skip_locked) sluice.outbox", errbuf, sizeof(errbuf)) < 0 ||
	    sl_pg_exec(r->conn, "set statement_timeout = '30s'", errbuf, sizeof(errbuf)) < 0) {
		if (PQstatus(r->conn) != CONNECTION_OK)
			sl__relay_disconnect(r, errbuf);
		else
			sl_log_warn("outbox relay: could not vacuum sluice.outbox: %s", errbuf);
		/* Whatever failed, the next statements get their bound back. */
		if (r->conn != NULL)
			sl_pg_exec(r->conn, "set statement_timeout = '30s'", errbuf, sizeof(errbuf));
	}
	r->deleted = 0;
	r->vacuumed_at = sl_now();
}

/* Depth, delayed rows and lag, for /metrics. */
static void
update_stats(struct sl_relay *r)
{
	char errbuf[512], state[6];
	PGresult *res = sl__relay_query(r,
	                      "select count(*), coalesce(extract(epoch from clock_timestamp() - min(due)), 0), "
	                      "(select count(*) from sluice.outbox_delayed) from sluice.outbox",
	                      0, NULL, state, errbuf, sizeof(errbuf));

	if (res == NULL) {
		if (PQstatus(r->conn) != CONNECTION_OK)
			sl__relay_disconnect(r, errbuf);
		return;
	}
	sl_metrics_gauge_set(r->m_depth, strtod(PQgetvalue(res, 0, 0), NULL));
	sl_metrics_gauge_set(r->m_lag, strtod(PQgetvalue(res, 0, 1), NULL));
	sl_metrics_gauge_set(r->m_delayed, strtod(PQgetvalue(res, 0, 2), NULL));
	PQclear(res);
}

/* ---- the thread ------------------------------------------------------- */

static void *
relay_main(void *arg)
{
	struct sl_relay *r = arg;
	double next_leases = 0, next_stats = 0;
	char limit[16];
	const char *values[1] = { limit };
	long long moved, fired;
	long sent;
	size_t i;
	int rc;

	snprintf(limit, sizeof(limit), "%d", r->cfg->outbox.batch);
	while (!stopping(r)) {
		long work = 0;

		if (r->conn == NULL) {
			if ((rc = relay_connect(r)) != 0) {
				relay_sleep(r, rc > 0 ? 5.0 : 1.0);
				continue;
			}
			next_leases = 0;
		}
		if (sl_now() >= next_leases) {
			if (sl__relay_refresh_leases(r) < 0)
				continue;
			/* Below its share, a relay looks for free shards every second. */
			next_leases = sl_now() + ((int)r->n_held < r->share ? 1.0 : r->cfg->outbox.lease_ttl / 3);
		}
		if ((moved = sl__relay_scalar(r, "select sluice.outbox_move_due($1)", 1, values)) > 0)
			work += moved;
		if (r->conn == NULL)
			continue;
		if ((fired = sl__relay_scalar(r, "select sluice.schedule_fire(100)", 0, NULL)) > 0)
			work += fired;
		if (r->conn == NULL)
			continue;
		for (i = r->n_held; i-- > 0 && r->conn != NULL && !stopping(r);) {
			if ((sent = relay_shard(r, i)) > 0)
				work += sent;
		}
		if (r->conn != NULL)
			maybe_vacuum(r);
		if (r->conn != NULL && sl_now() >= next_stats) {
			update_stats(r);
			next_stats = sl_now() + 1.0;
		}
		if (work == 0)
			relay_sleep(r, r->cfg->outbox.poll_interval);
	}
	if (!atomic_load(&r->fatal))
		sl__relay_release_leases(r);
	return NULL;
}

sl_relay_t *
sl_relay_start(struct sl_worker *w, char *errbuf, size_t errbuf_size)
{
	struct sl_relay *r;
	sl_metrics_t *m = w->ops.metrics;
	const char *test;
	char host[64] = "";
	int err;

	errbuf[0] = '\0';
	if (!w->cfg->outbox.enabled)
		return NULL;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		abort();
	r->w = w;
	r->cfg = w->cfg;
	if ((test = getenv("SLUICE_TEST_RELAY_FATAL_AFTER")) != NULL)
		r->test_fatal_after = atol(test);
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	gethostname(host, sizeof(host) - 1);
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());
	snprintf(r->holder, sizeof(r->holder), "%s:%d:%08lx", host, (int)getpid(), (unsigned long)random());
	r->m_depth = sl_metrics_series(sl_metrics_gauge(m, "sluice_outbox_depth",
	                                                "Rows in sluice.outbox waiting to be relayed", NULL), NULL);
	r->m_delayed = sl_metrics_series(sl_metrics_gauge(m, "sluice_outbox_delayed",
	                                                  "Delayed jobs waiting for their run_at", NULL), NULL);
	r->m_lag = sl_metrics_series(sl_metrics_gauge(m, "sluice_outbox_lag_seconds",
	                                              "Age of the oldest row in sluice.outbox", NULL), NULL);
	r->m_relayed = sl_metrics_series(sl_metrics_counter(m, "sluice_outbox_relayed_total",
	                                                    "Outbox rows this worker relayed and deleted", NULL),
	                                 NULL);
	r->m_dead_letters = sl_metrics_series(
		sl_metrics_counter(m, "sluice_outbox_dead_letters_total",
	                           "Outbox rows this worker sent to the dead-letter topic (bad data, or too large "
	                           "for their topic)", NULL),
		NULL);
	r->m_held = sl_metrics_series(sl_metrics_gauge(m, "sluice_outbox_shards_held",
	                                               "Outbox shards whose lease this worker holds", NULL), NULL);
	r->batch_cap = w->relay_batch_max;
	if ((r->producer = producer_new(r, errbuf, errbuf_size)) == NULL)
		goto err;
	if ((err = pthread_create(&r->thread, NULL, relay_main, r)) != 0) {
		snprintf(errbuf, errbuf_size, "could not start the outbox relay's thread: %s", strerror(err));
		goto err;
	}
	return r;
err:
	if (r->producer != NULL)
		rd_kafka_destroy(r->producer);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r);
	return NULL;
}

void
sl_relay_stop(sl_relay_t *r)
{
	if (r == NULL)
		return;
	char errbuf[256];

	pthread_mutex_lock(&r->mu);
	r->stop = 1;
	pthread_cond_broadcast(&r->cv);
	/* A statement stuck on a frozen server must not hold the stop. */
	if (r->cancel != NULL)
		PQcancel(r->cancel, errbuf, sizeof(errbuf));
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	if (rd_kafka_flush(r->producer, 2000) != RD_KAFKA_RESP_ERR_NO_ERROR)
		rd_kafka_purge(r->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	rd_kafka_destroy(r->producer);
	if (r->conn != NULL)
		sl__relay_disconnect(r, NULL);
	free(r->held);
	while (r->n_limits > 0)
		free(r->limits[--r->n_limits].topic);
	free(r->limits);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r);
}
