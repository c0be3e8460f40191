/* worker.c -- a worker from start to stop.
 *
 * sl_worker_run() makes the calling thread the consumer thread. It starts
 * what the loop needs, in the order that lets each step fail cleanly: the
 * job types (jobtypes.c), the operations surface (ops.c), PostgreSQL and
 * its ledger (waited for, for as long as it takes), the Kafka clients
 * (kafka.c), the executors (executor.c), the subscription, the outbox relay
 * (relay.c). Then the loop runs (consumer.c). At the stop, abandoned jobs roll back (their
 * executors are cancelled), finished ones are still published so that
 * their offsets can move, and the offsets are committed.
 *
 * The architecture, the threads and the path of a job through these files
 * are drawn in docs/architecture.md.
 */
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "consumer.h"
#include "executor.h"
#include "jobsql.h"
#include "jobtypes.h"
#include "kafka.h"
#include "log.h"
#include "notify.h"
#include "ops.h"
#include "partition.h"
#include "pg.h"
#include "publish.h"
#include "relay.h"
#include "signals.h"
#include "version.h"

/* Waits until PostgreSQL answers and the ledger exists. Returns 0, or -1 if
 * the ledger table is missing or a stop signal came first. */
static int
wait_for_postgres(struct sl_worker *w)
{
	char errbuf[512], redacted[512];
	double delay = 0.5;
	PGconn *conn;
	PGresult *res;
	int ok;

	for (;;) {
		conn = sl_pg_connect(w->cfg->pg_conninfo, "sluice-worker", errbuf, sizeof(errbuf));
		atomic_store(&w->ops.pg_ok, conn != NULL);
		if (conn != NULL) {
			res = PQexec(conn, "select to_regclass('sluice.jobs') is not null");
			ok = PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
			PQclear(res);
			if (!ok) {
				PQfinish(conn);
				sl_log_error("the job ledger table sluice.jobs does not exist; run 'sluicectl migrate'");
				return -1;
			}
			/* A ledger of another shape would fail every job's write. */
			ok = sl_sql_check_ledger(conn, errbuf, sizeof(errbuf)) == 0;
			if (ok)
				sl_jobtypes_check_sql(w->cfg, w->types, conn, 1, errbuf, sizeof(errbuf));
			PQfinish(conn);
			if (!ok) {
				sl_log_error("%s", errbuf);
				return -1;
			}
			return 0;
		}
		/* /readyz says why: a wrong password (retried, a fleet should
		 * survive a rotated secret) reads "password authentication
		 * failed", not just "unreachable". */
		pthread_mutex_lock(&w->ops.wait_mu);
		snprintf(w->ops.wait_reason, sizeof(w->ops.wait_reason), "%.250s", errbuf);
		for (char *c = w->ops.wait_reason; *c; c++)
			if (*c == '\n' || *c == '\t')
				*c = ' ';
		pthread_mutex_unlock(&w->ops.wait_mu);
		sl_log_redact(w->cfg->pg_conninfo, redacted, sizeof(redacted));
		sl_log_warn("could not connect to postgresql \"%s\": %s; retrying in %.1f s", redacted, errbuf, delay);
		/* Not ready yet, but alive: keep systemd's start timeout away. */
		sl_notify("EXTEND_TIMEOUT_USEC=%d\nSTATUS=waiting for postgresql", (int)((delay + 30) * 1e6));
		for (double until = sl_now() + delay; sl_now() < until;) {
			struct timespec ts = { 0, 50 * 1000 * 1000 };
			if (sl_signals_stop())
				return -1;
			nanosleep(&ts, NULL);
		}
		if ((delay *= 2) > 10)
			delay = 10;
	}
}
int
sl_worker_run(struct sl_config *cfg)
{
	struct sl_worker wk, *w = &wk;
	rd_kafka_topic_partition_list_t *topics = NULL;
	rd_kafka_resp_err_t err;
	char errbuf[1024];
	int status = 1, stuck = 0, left;
	size_t i;

	memset(w, 0, sizeof(*w));
	w->cfg = cfg;
	w->max_in_flight = cfg->max_in_flight;
	w->shutdown_timeout = cfg->shutdown_timeout;
	w->revoke_timeout = cfg->revoke_timeout;
	w->stall_timeout = cfg->stall_timeout;
	pthread_mutex_init(&w->reload_mu, NULL);
	sl_log_set_level((enum sl_log_level)cfg->log_level);
	sl_log_set_format((enum sl_log_format)cfg->log_format);
	sl_signals_install();

	w->n_types = cfg->n_jobs;
	if ((w->types = calloc(cfg->n_jobs, sizeof(*w->types))) == NULL)
		abort();
	if (sl_jobtypes_resolve(cfg, w->types, errbuf, sizeof(errbuf)) < 0) {
		sl_log_error("%s", errbuf);
		goto out;
	}
	for (i = 0; i < w->n_types; i++)
		w->types[i].retry = w->types[i].conf->retry;
	if (sl_ops_start(w, errbuf, sizeof(errbuf)) < 0) {
		sl_log_error("%s", errbuf);
		goto out;
	}
	if (wait_for_postgres(w) < 0) {
		status = sl_signals_stop() ? 0 : 1;
		goto out;
	}
	if ((w->consumer = sl_kafka_client_new(w, RD_KAFKA_CONSUMER, errbuf, sizeof(errbuf))) == NULL) {
		sl_log_error("%s", errbuf);
		goto out;
	}
	/* The producer's batch size depends on the topics' limits. */
	sl_kafka_learn_limits(w, w->consumer);
	if ((w->producer = sl_kafka_client_new(w, RD_KAFKA_PRODUCER, errbuf, sizeof(errbuf))) == NULL) {
		sl_log_error("%s", errbuf);
		goto out;
	}
	rd_kafka_poll_set_consumer(w->consumer);
	w->consumer_q = rd_kafka_queue_get_consumer(w->consumer);
	if (sl_executors_start(w, errbuf, sizeof(errbuf)) < 0) {
		sl_log_error("%s", errbuf);
		goto out;
	}
	if (sl_dispatch_init(&w->dispatch, w->n_executors, (size_t)cfg->max_in_flight) < 0)
		abort();
	topics = rd_kafka_topic_partition_list_new((int)cfg->n_topics);
	for (i = 0; i < cfg->n_topics; i++)
		rd_kafka_topic_partition_list_add(topics, cfg->topics[i], RD_KAFKA_PARTITION_UA);
	if ((err = rd_kafka_subscribe(w->consumer, topics)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		sl_log_error("could not subscribe to the job topics: %s", rd_kafka_err2str(err));
		goto out;
	}
	/* The outbox relay (relay.c): its own thread, connection and producer. */
	if ((w->relay = sl_relay_start(w, errbuf, sizeof(errbuf))) == NULL && *errbuf != '\0') {
		sl_log_error("%s", errbuf);
		goto out;
	}
	sl_log_info("started: sluice %s, group \"%s\", %d executors, max %d jobs in flight", SL_VERSION, cfg->group,
	            cfg->executors, cfg->max_in_flight);

	sl_consumer_run(w);
	sl_relay_stop(w->relay);
	w->relay = NULL;

	/* Stop: abandoned jobs roll back (their executors are cancelled);
	 * finished ones are still published so their offsets can move. */
	if (w->abandoning) {
		atomic_store(&w->abandon, 1);
		sl_executors_cancel_all(w);
	}
	stuck = sl_executors_stop(w, w->abandoning ? 5.0 : w->shutdown_timeout);
	sl_publish_done(w);
	sl_publish_retry_due(w);
	if ((left = sl_publish_drain(w, 10000)) > 0)
		sl_log_warn("%d records not acknowledged at stop; their jobs are redelivered", left);
	err = rd_kafka_commit(w->consumer, NULL, 0);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
		sl_log_warn("could not commit offsets at stop: %s", rd_kafka_err2str(err));
	sl_consumer_log_progress(w);
	status = atomic_load(&w->fatal) ? 1 : 0;
	if (stuck > 0 || w->in_flight > 0) {
		/* Executors still running, or jobs whose records were never
		 * acknowledged, still hold memory and librdkafka messages that the
		 * handles' destruction would wait for. Everything durable is done
		 * (offsets committed up to the last acknowledged job), so leave
		 * the group and let the process exit reclaim the rest. */
		rd_kafka_consumer_close(w->consumer);
		sl_log_info("stopped (%d executors busy, %ld jobs unacknowledged: they are redelivered)", stuck,
		            w->in_flight);
		_exit(status);
	}
	sl_log_info("stopped");
out:
	if (topics != NULL)
		rd_kafka_topic_partition_list_destroy(topics);
	if (w->consumer != NULL) {
		w->abandoning = 1; /* the revoke during close must not wait again */
		rd_kafka_consumer_close(w->consumer);
	}
	if (w->producer != NULL)
		rd_kafka_destroy(w->producer);
	if (w->alone != NULL)
		rd_kafka_destroy(w->alone);
	while (w->n_keyed_topics > 0)
		free(w->keyed_topics[--w->n_keyed_topics]);
	free(w->keyed_topics);
	if (w->consumer != NULL) {
		if (w->consumer_q != NULL)
			rd_kafka_queue_destroy(w->consumer_q);
		rd_kafka_destroy(w->consumer);
	}
	/* Partitions a close left assigned (no revoke came: the group had
	 * already moved on, say) hold no job here: jobs in flight took the
	 * _exit above. */
	while (w->parts != NULL) {
		struct sl_partition *p = w->parts;

		w->parts = p->next;
		sl_partition_free(p);
	}
	sl_dispatch_free(&w->dispatch);
	sl_ops_stop(w);
	sl_jobtypes_release(w->types, w->n_types);
	return status;
}
