/* mock_worker.h -- a real struct sl_worker on librdkafka's mock cluster,
 * for the unit tests of publish.c, partition.c and rebalance.c.
 *
 * The fixture makes a mock cluster (no broker, no PostgreSQL), loads a
 * configuration pointed at it with sl_config_load(), and builds the
 * worker's own producer and consumer with sl_kafka_client_new(), so the
 * delivery reports and rebalances land in the real callbacks. Jobs are made
 * the way the loop makes them: messages the test produced to the job topic
 * are consumed and become jobs with sl_partition_add_job(). The test plays
 * the executors: it gives a job its outcome and hands it back with
 * sl_executors_hand_back(); mock_pump() then does what the loop does
 * (sl_publish_done, sl_publish_retry_due, sl_publish_poll).
 *
 * Not for: executors or PostgreSQL (w->executors stays empty). Included by
 * each test file that needs it: the functions are static inline, so that a
 * file using only some of them builds without unused-function warnings.
 */
#ifndef SL_TEST_MOCK_WORKER_H
#define SL_TEST_MOCK_WORKER_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "executor.h"
#include "kafka.h"
#include "log.h"
#include "ops.h"
#include "partition.h"
#include "publish.h"
#include "rebalance.h"
#include "tsan_threads.h"
#include "worker_int.h"

#define MOCK_JOBS    "jobs"
#define MOCK_RESULTS "job-results"
#define MOCK_DLQ     "jobs.dlq"
#define MOCK_MAX     16               /* jobs a test may fetch */

struct mock {
	rd_kafka_t *owner;             /* the handle the mock cluster lives in */
	rd_kafka_mock_cluster_t *mc;
	char conf_path[64];
	struct sl_worker w;
	struct sl_job *jobs[MOCK_MAX]; /* fetched, in offset order */
	int n_jobs;
};

/* Fails the test unless cond holds (cmocka's assert, with a message that
 * says what the fixture was doing). */
#define mock_require(cond, what)                                                                          \
	do {                                                                                               \
		if (!(cond))                                                                               \
			fail_msg("%s", what);                                                              \
	} while (0)

/* Builds the cluster (`brokers` mock brokers; the job topic has one
 * partition, led by broker 1, as do the result topic and, on broker
 * `dlq_leader`, the dead-letter topic), the configuration and the worker's
 * clients. `producer_props` is a libconfig list body of extra producer
 * properties ("" for none). Returns a new fixture: free it with
 * mock_destroy(). */
static inline struct mock *
mock_new(int brokers, int dlq_leader, const char *producer_props)
{
	struct mock *m = calloc(1, sizeof(*m));
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char errbuf[512];
	FILE *f;
	int fd;

	mock_require(m != NULL, "out of memory");
	/* The cluster's owner only hosts it; it never talks to it. */
	rd_kafka_conf_set(conf, "log_level", "3", errbuf, sizeof(errbuf));
	m->owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errbuf, sizeof(errbuf));
	mock_require(m->owner != NULL, errbuf);
	m->mc = rd_kafka_mock_cluster_new(m->owner, brokers);
	mock_require(m->mc != NULL, "could not create the mock cluster");
	mock_require(rd_kafka_mock_topic_create(m->mc, MOCK_JOBS, 1, 1) == RD_KAFKA_RESP_ERR_NO_ERROR, "topic");
	mock_require(rd_kafka_mock_topic_create(m->mc, MOCK_RESULTS, 1, 1) == RD_KAFKA_RESP_ERR_NO_ERROR, "topic");
	mock_require(rd_kafka_mock_topic_create(m->mc, MOCK_DLQ, 1, 1) == RD_KAFKA_RESP_ERR_NO_ERROR, "topic");
	/* Each call waits for the mock cluster's thread (up to a second):
	 * only when there is a choice. */
	if (brokers > 1) {
		rd_kafka_mock_partition_set_leader(m->mc, MOCK_JOBS, 0, 1);
		rd_kafka_mock_partition_set_leader(m->mc, MOCK_RESULTS, 0, 1);
		rd_kafka_mock_partition_set_leader(m->mc, MOCK_DLQ, 0, dlq_leader);
	}

	/* Short timeouts: a failed delivery is reported in half a second, a
	 * revoke waits one second at most. The mock cluster's group waits 3 s
	 * for the first members, during which they must not time out, and
	 * session.timeout.ms less a second for a new one. Auto-commit is left to the tests
	 * (its interval is a minute), so that a committed offset is the one
	 * a test or the revoke committed. */
	snprintf(m->conf_path, sizeof(m->conf_path), "/tmp/sluice-test-mock.XXXXXX");
	fd = mkstemp(m->conf_path);
	mock_require(fd >= 0, "could not create the configuration file");
	f = fdopen(fd, "w");
	fprintf(f,
	        "kafka: {\n"
	        "  brokers = \"%s\";\n"
	        "  group = \"sluice-test\";\n"
	        "  topics = [ \"" MOCK_JOBS "\" ];\n"
	        "  dlq_topic = \"" MOCK_DLQ "\";\n"
	        "  result_topic = \"" MOCK_RESULTS "\";\n"
	        "  properties = [ \"topic.metadata.refresh.interval.ms=500\" ];\n"
	        "  consumer_properties = [ \"fetch.wait.max.ms=10\", \"auto.commit.interval.ms=60000\",\n"
	        "    \"session.timeout.ms=4000\", \"heartbeat.interval.ms=200\" ];\n"
	        "  producer_properties = [ \"linger.ms=5\", \"message.timeout.ms=500\", \"retry.backoff.ms=20\" %s%s ];\n"
	        "};\n"
	        "limits: { revoke_timeout = 1.0; };\n"
	        "jobs = ( { type = \"test.job\"; } );\n"
	        "http: { listen = \"\"; };\n"
	        "log: { level = \"error\"; };\n",
	        rd_kafka_mock_cluster_bootstraps(m->mc), *producer_props ? ", " : "", producer_props);
	fclose(f);
	unsetenv("SLUICE_KAFKA_BROKERS");
	m->w.cfg = sl_config_load(m->conf_path, errbuf, sizeof(errbuf));
	mock_require(m->w.cfg != NULL, errbuf);
	sl_log_set_level((enum sl_log_level)m->w.cfg->log_level);

	/* The worker as sl_worker_run() sets it up, minus PostgreSQL, the
	 * executors (the test hands jobs back itself) and the subscription
	 * (mock_assign() assigns through the rebalance callback). */
	m->w.max_in_flight = m->w.cfg->max_in_flight;
	m->w.shutdown_timeout = m->w.cfg->shutdown_timeout;
	m->w.revoke_timeout = m->w.cfg->revoke_timeout;
	m->w.stall_timeout = m->w.cfg->stall_timeout;
	pthread_mutex_init(&m->w.reload_mu, NULL);
	pthread_mutex_init(&m->w.done_mu, NULL);
	mock_require(sl_ops_start(&m->w, errbuf, sizeof(errbuf)) == 0, errbuf);
	m->w.producer = sl_kafka_client_new(&m->w, RD_KAFKA_PRODUCER, errbuf, sizeof(errbuf));
	mock_require(m->w.producer != NULL, errbuf);
	m->w.consumer = sl_kafka_client_new(&m->w, RD_KAFKA_CONSUMER, errbuf, sizeof(errbuf));
	mock_require(m->w.consumer != NULL, errbuf);
	rd_kafka_poll_set_consumer(m->w.consumer);
	return m;
}

/* Produces n job messages (keys "k0".., values `value` or "{\"n\":i}") to
 * the job topic with a plain producer of its own, and waits for them. */
static inline void
mock_feed(struct mock *m, int n, const char *value)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char errbuf[512], key[16], val[32];
	rd_kafka_t *rk;
	int i;

	rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(m->mc), errbuf, sizeof(errbuf));
	rd_kafka_conf_set(conf, "message.max.bytes", "1000000000", errbuf, sizeof(errbuf));
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errbuf, sizeof(errbuf));
	mock_require(rk != NULL, errbuf);
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		snprintf(val, sizeof(val), "{\"n\":%d}", i);
		mock_require(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(MOCK_JOBS), RD_KAFKA_V_PARTITION(0),
		                               RD_KAFKA_V_KEY(key, strlen(key)),
		                               RD_KAFKA_V_VALUE((void *)(value ? value : val),
		                                                strlen(value ? value : val)),
		                               RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		                               RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR_NO_ERROR,
		             "could not produce a job message");
	}
	mock_require(rd_kafka_flush(rk, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR, "job messages not delivered");
	rd_kafka_destroy(rk);
}

/* Assigns the job topic's partition 0 through the real rebalance callback,
 * as the group would, and returns its partition struct. */
static inline struct sl_partition *
mock_assign(struct mock *m)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
	struct sl_partition *p;

	rd_kafka_topic_partition_list_add(list, MOCK_JOBS, 0);
	sl_rebalance_cb(m->w.consumer, RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, list, &m->w);
	rd_kafka_topic_partition_list_destroy(list);
	p = sl_partition_find(&m->w, MOCK_JOBS, 0);
	mock_require(p != NULL, "the partition was not assigned");
	return p;
}

/* Consumes n messages with the worker's consumer and makes each a job,
 * as the loop's handle_message() does; they land in m->jobs[]. */
static inline void
mock_fetch(struct mock *m, int n)
{
	double deadline = sl_now() + 10;
	rd_kafka_message_t *msg;
	struct sl_job *job;

	while (n > 0 && sl_now() < deadline) {
		if ((msg = rd_kafka_consumer_poll(m->w.consumer, 50)) == NULL)
			continue;
		if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			rd_kafka_message_destroy(msg);
			continue;
		}
		job = sl_partition_add_job(&m->w, msg);
		mock_require(job != NULL, "a fetched message did not become a job");
		mock_require(m->n_jobs < MOCK_MAX, "too many jobs");
		m->jobs[m->n_jobs++] = job;
		n--;
	}
	mock_require(n == 0, "job messages not fetched in time");
}

/* Gives a job the outcome an executor would: a result (and a dead letter
 * when dlq_code is not NULL), or SL_JOB_END_SKIPPED when skipped. */
static inline void
mock_finish(struct sl_job *job, enum sl_job_status status, const char *dlq_code, int skipped)
{
	char buf[64];

	job->attempts = 1;
	if (skipped) {
		job->end = SL_JOB_END_SKIPPED;
		return;
	}
	snprintf(buf, sizeof(buf), "{\"offset\":%lld,\"status\":\"%s\"}", (long long)job->offset,
	         sl_job_status_name(status));
	job->end = SL_JOB_END_RESULT;
	job->status = status;
	job->result = strdup(buf);
	if (dlq_code != NULL) {
		job->dlq_code = strdup(dlq_code);
		job->dlq_message = strdup("it failed on purpose");
	}
}

/* Hands job i back, as its executor would. */
static inline void
mock_hand_back(struct mock *m, int i)
{
	struct sl_job *job = m->jobs[i];

	m->jobs[i] = NULL; /* now owned by the consumer thread */
	sl_executors_hand_back(&m->w, &job, 1);
}

/* One turn of the loop's publishing half. */
static inline void
mock_step(struct mock *m)
{
	sl_publish_done(&m->w);
	sl_publish_retry_due(&m->w);
	sl_publish_poll(&m->w, 10);
}

/* Runs the loop's publishing half until cond(m) holds or `seconds` pass.
 * Returns cond's last value. */
static inline int
mock_pump(struct mock *m, int (*cond)(struct mock *), double seconds)
{
	double deadline = sl_now() + seconds;

	for (;;) {
		mock_step(m);
		if (cond(m))
			return 1;
		if (sl_now() >= deadline)
			return 0;
	}
}

/* Makes the next `cnt` requests of API key `api` (any broker) fail with
 * err. */
static inline void
mock_fail_requests(struct mock *m, int16_t api, size_t cnt, rd_kafka_resp_err_t err)
{
	rd_kafka_resp_err_t errs[256];
	size_t i;

	mock_require(cnt <= sizeof(errs) / sizeof(errs[0]), "too many errors");
	for (i = 0; i < cnt; i++)
		errs[i] = err;
	rd_kafka_mock_push_request_errors_array(m->mc, api, cnt, errs);
}

static inline int
mock_idle(struct mock *m)
{
	return m->w.in_flight == 0;
}

static inline int
mock_retrying(struct mock *m)
{
	return m->w.retries != NULL;
}

/* Reads topic's partition 0 from the beginning with a plain consumer,
 * waiting up to `seconds` for at least `want` records, and calls
 * each(record, arg) on every record read (borrowed: valid during the call
 * only, since the reader must get its messages back before it goes).
 * Returns how many it read. */
static inline int
mock_read(struct mock *m, const char *topic, int want, void (*each)(const rd_kafka_message_t *, void *),
          void *arg, double seconds)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_topic_partition_list_t *list;
	char errbuf[512];
	rd_kafka_message_t *msg;
	double deadline = sl_now() + seconds;
	rd_kafka_t *rk;
	int n = 0;

	rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(m->mc), errbuf, sizeof(errbuf));
	rd_kafka_conf_set(conf, "group.id", "sluice-test-reader", errbuf, sizeof(errbuf));
	rd_kafka_conf_set(conf, "enable.auto.commit", "false", errbuf, sizeof(errbuf));
	rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", errbuf, sizeof(errbuf));
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, sizeof(errbuf));
	mock_require(rk != NULL, errbuf);
	list = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(list, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
	rd_kafka_assign(rk, list);
	rd_kafka_topic_partition_list_destroy(list);
	while (sl_now() < deadline && n < want) {
		if ((msg = rd_kafka_consumer_poll(rk, 20)) == NULL)
			continue;
		if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			if (each != NULL)
				each(msg, arg);
			n++;
		}
		rd_kafka_message_destroy(msg);
	}
	rd_kafka_assign(rk, NULL);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return n;
}

/* The offset of the job topic's partition 0 committed for the worker's
 * group (-1001, RD_KAFKA_OFFSET_INVALID: none), as the broker has it. */
static inline int64_t
mock_committed(struct mock *m)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
	int64_t off;

	rd_kafka_topic_partition_list_add(list, MOCK_JOBS, 0);
	mock_require(rd_kafka_committed(m->w.consumer, list, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR,
	             "could not read the committed offset");
	off = list->elems[0].offset;
	rd_kafka_topic_partition_list_destroy(list);
	return off;
}

/* Releases everything: the jobs the test still holds are handed back
 * skipped, and the records in flight delivered, before the partitions and
 * clients go, so that no job outlives the worker. */
static inline void
mock_destroy(struct mock *m)
{
	struct sl_partition *p;
	int i;

	for (i = 0; i < m->n_jobs; i++)
		if (m->jobs[i] != NULL) {
			mock_finish(m->jobs[i], SL_JOB_SUCCEEDED, NULL, 1);
			mock_hand_back(m, i);
		}
	/* Records still to be delivered or retried belong to live jobs: let
	 * them finish, so that nothing outlives the worker. */
	mock_require(mock_pump(m, mock_idle, 5), "jobs still in flight at the end of the test");
	/* A subscribed consumer revokes its assignment through the
	 * callback while it closes; an assigned one keeps its partition
	 * structs, freed here. */
	m->w.abandoning = 1;
	rd_kafka_consumer_close(m->w.consumer);
	while ((p = m->w.parts) != NULL) {
		m->w.parts = p->next;
		sl_partition_free(p);
	}
	rd_kafka_destroy(m->w.consumer);
	rd_kafka_destroy(m->w.producer);
	if (m->w.alone != NULL)
		rd_kafka_destroy(m->w.alone);
	sl_ops_stop(&m->w);
	pthread_mutex_destroy(&m->w.done_mu);
	pthread_mutex_destroy(&m->w.reload_mu);
	sl_config_destroy(m->w.cfg);
	unlink(m->conf_path);
	rd_kafka_mock_cluster_destroy(m->mc);
	rd_kafka_destroy(m->owner);
	free(m);
}

#endif
