/* kafka.c -- the worker's two Kafka clients and their configuration.
 *
 * The consumer reads jobs in the group, with offsets stored by hand
 * (partition.c) and committed by librdkafka's auto-commit; the producer
 * publishes results and dead letters, idempotent with acks=all
 * (publish.c). Both report errors and log lines here, in our log's voice;
 * a fatal error (the idempotent producer's) stops the worker. At start the
 * result, dead-letter and job topics' max.message.bytes are asked of the
 * brokers: the producer's batches (and the outbox relay's) stay under them,
 * and a result too large for its topic fails its job (txn.c).
 *
 * Not for: what the clients do once made (consumer.c, publish.c,
 * rebalance.c).
 */
#include "kafka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "ops.h"
#include "publish.h"
#include "rebalance.h"
#include "signals.h"

/* How long the worker waits at start for the topics' limits. */
#define LIMITS_TIMEOUT_MS 5000

/* Both clients' error callback: a fatal error stops the worker; a lost
 * broker is counted and named for /readyz until the next assignment or
 * message. */
static void
on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct sl_worker *w = opaque;
	char fatal[512];

	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
		sl_log_error("fatal kafka error in %s: %s", rd_kafka_name(rk), fatal);
		atomic_store(&w->fatal, 1);
		return;
	}
	sl_ops_kafka_error(w, rd_kafka_err2name((rd_kafka_resp_err_t)err));
	sl_log_warn("kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT ||
	    err == RD_KAFKA_RESP_ERR__RESOLVE) {
		/* Until the next assignment or message: /readyz names it. */
		pthread_mutex_lock(&w->ops.wait_mu);
		snprintf(w->ops.kafka_reason, sizeof(w->ops.kafka_reason), "%.250s", reason);
		pthread_mutex_unlock(&w->ops.wait_mu);
		atomic_store(&w->ops.brokers_down, 1);
	}
}

/* Both clients' log callback: librdkafka's syslog levels into ours. */
static void
on_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	/* Connection failures come to on_kafka_error() too, which logs them
	 * once, with the error's name; here they would be logged twice. */
	if (strcmp(fac, "FAIL") == 0 || strcmp(fac, "ERROR") == 0)
		sl_log_debug("kafka %s: %s", fac, buf);
	else if (level <= 3)
		sl_log_error("kafka %s: %s", fac, buf);
	else if (level == 4)
		sl_log_warn("kafka %s: %s", fac, buf);
	else
		sl_log_debug("kafka %s: %s", fac, buf);
}

int
sl_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errbuf, size_t errbuf_size)
{
	char kerr[256];

	if (rd_kafka_conf_set(conf, key, value, kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK) {
		snprintf(errbuf, errbuf_size, "kafka property \"%s\": %s", key, kerr);
		return -1;
	}
	return 0;
}

int
sl_kafka_conf_set_all(rd_kafka_conf_t *conf, const struct sl_kv *kv, size_t n, char *errbuf, size_t errbuf_size)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (sl_kafka_conf_set(conf, kv[i].key, kv[i].value, errbuf, errbuf_size) < 0)
			return -1;
	return 0;
}

/* A result topic's broker compares each record batch, not each record,
 * with the topic's max.message.bytes: batches of results each small enough
 * for it, but together above it, are refused whole, on every retry. The
 * producer's batches (batch.size, librdkafka's 1,000,000 bytes unless set)
 * stay under the smallest limit of the topics it writes. */
int
sl_kafka_cap_batches(int limit, const char *what, rd_kafka_conf_t *conf, char *errbuf, size_t errbuf_size)
{
	char value[32];
	size_t size = sizeof(value);
	long set;

	if (limit <= 0 || rd_kafka_conf_get(conf, "batch.size", value, &size) != RD_KAFKA_CONF_OK)
		return 0;
	set = strtol(value, NULL, 10); /* the user's, or librdkafka's default */
	if (set <= limit - SL_RECORD_OVERHEAD)
		return 0;
	snprintf(value, sizeof(value), "%d", limit > 2 * SL_RECORD_OVERHEAD ? limit - SL_RECORD_OVERHEAD : limit / 2);
	sl_log_info("batches of %s kept under %d bytes (batch.size %s, was %ld): the smallest max.message.bytes of "
	            "the topics they go to", what, limit, value, set);
	return sl_kafka_conf_set(conf, "batch.size", value, errbuf, errbuf_size);
}

/* Each topic's max.message.bytes into max[i] (0 where it cannot be read,
 * -1 where the topic does not exist: logged here, or with quiet written to
 * errbuf), asked of the brokers
 * through rk with DescribeConfigs. Waits at most LIMITS_TIMEOUT_MS, less on
 * a stop signal. Returns 0, or -1 with why no topic's limit is known in
 * errbuf (empty on a stop). */
static int
describe_limits(rd_kafka_t *rk, const char *const *topics, size_t n, int *max, int *compacted, int quiet,
                char *errbuf, size_t errbuf_size)
{
	rd_kafka_ConfigResource_t **res = calloc(n, sizeof(*res));
	rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	const rd_kafka_ConfigResource_t **out;
	const rd_kafka_ConfigEntry_t **entries;
	rd_kafka_event_t *ev = NULL;
	size_t i, j, k, n_out, n_entries;
	char kerr[256];
	int waited, rc = -1;

	errbuf[0] = '\0';
	if (res == NULL)
		abort();
	for (i = 0; i < n; i++) {
		max[i] = 0;
		compacted[i] = 0;
		res[i] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topics[i]);
	}
	(void)rd_kafka_AdminOptions_set_request_timeout(opt, LIMITS_TIMEOUT_MS, kerr, sizeof(kerr));
	rd_kafka_DescribeConfigs(rk, res, n, opt, q);
	for (waited = 0; ev == NULL && waited < LIMITS_TIMEOUT_MS + 1000 && !sl_signals_stop(); waited += 200)
		ev = rd_kafka_queue_poll(q, 200);
	if (ev == NULL) {
		if (!sl_signals_stop())
			snprintf(errbuf, errbuf_size, "no answer from the brokers within %d s", LIMITS_TIMEOUT_MS / 1000);
		goto out;
	}
	if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errbuf, errbuf_size, "%s", rd_kafka_event_error_string(ev));
		goto out;
	}
	rc = 0;
	out = rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &n_out);
	for (j = 0; j < n_out; j++) {
		for (i = 0; i < n && strcmp(topics[i], rd_kafka_ConfigResource_name(out[j])) != 0; i++)
			;
		if (i == n)
			continue;
		if (rd_kafka_ConfigResource_error(out[j]) == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
			max[i] = -1;
			if (quiet)
				snprintf(errbuf, errbuf_size, "the topic does not exist yet");
			else
				sl_log_info("topic \"%s\" does not exist yet: its max.message.bytes is not known", topics[i]);
			continue;
		}
		if (rd_kafka_ConfigResource_error(out[j]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
			const char *why = rd_kafka_ConfigResource_error_string(out[j]);
			if (why == NULL)
				why = rd_kafka_err2str(rd_kafka_ConfigResource_error(out[j]));
			if (quiet)
				snprintf(errbuf, errbuf_size, "%s", why);
			else
				sl_log_warn("could not read the max.message.bytes of topic \"%s\": %s", topics[i], why);
			continue;
		}
		entries = rd_kafka_ConfigResource_configs(out[j], &n_entries);
		for (k = 0; k < n_entries; k++) {
			const char *name = rd_kafka_ConfigEntry_name(entries[k]);
			const char *value = rd_kafka_ConfigEntry_value(entries[k]);

			if (value != NULL && strcmp(name, "max.message.bytes") == 0)
				max[i] = (int)strtol(value, NULL, 10);
			else if (value != NULL && strcmp(name, "cleanup.policy") == 0)
				compacted[i] = strstr(value, "compact") != NULL;
		}
	}
out:
	if (ev != NULL)
		rd_kafka_event_destroy(ev);
	rd_kafka_ConfigResource_destroy_array(res, n);
	free(res);
	rd_kafka_AdminOptions_destroy(opt);
	rd_kafka_queue_destroy(q);
	return rc;
}

int
sl_kafka_topic_limit(rd_kafka_t *rk, const char *topic, int *compacted, char *errbuf, size_t errbuf_size)
{
	int max = 0;

	if (describe_limits(rk, &topic, 1, &max, compacted, 1, errbuf, errbuf_size) == 0 && max == 0 && !*errbuf)
		snprintf(errbuf, errbuf_size, "the brokers did not say");
	return max;
}

/* Adds topic to topics[0..*n) unless it is there; returns its index. */
static size_t
add_topic(const char **topics, size_t *n, const char *topic)
{
	size_t j;

	for (j = 0; j < *n && strcmp(topics[j], topic) != 0; j++)
		;
	if (j == *n)
		topics[(*n)++] = topic;
	return j;
}

/* The smaller of a known limit and another (0: not known). */
static int
smaller(int limit, int other)
{
	return other > 0 && (limit == 0 || other < limit) ? other : limit;
}

void
sl_kafka_learn_limits(struct sl_worker *w, rd_kafka_t *rk)
{
	const struct sl_config *cfg = w->cfg;
	const char **topics = calloc(1 + w->n_types + cfg->n_topics, sizeof(*topics));
	int *max = calloc(1 + w->n_types + cfg->n_topics, sizeof(*max));
	int *compacted = calloc(1 + w->n_types + cfg->n_topics, sizeof(*compacted));
	char errbuf[256];
	size_t i, n = 0;

	if (topics == NULL || max == NULL || compacted == NULL)
		abort();
	add_topic(topics, &n, cfg->dlq_topic);
	for (i = 0; i < w->n_types; i++)
		add_topic(topics, &n, w->types[i].conf->result_topic);
	for (i = 0; i < cfg->n_topics; i++)
		if (cfg->topics[i][0] != '^') /* a pattern (librdkafka's), not a topic */
			add_topic(topics, &n, cfg->topics[i]);
	if (describe_limits(rk, topics, n, max, compacted, 0, errbuf, sizeof(errbuf)) < 0 && *errbuf)
		sl_log_warn("could not read the topics' max.message.bytes: %s; batches and results are bounded by "
		            "batch.size and limits.max_result_bytes only", errbuf);
	for (i = 0; i < n; i++) {
		if (max[i] > 0)
			sl_log_info("topic \"%s\" takes record batches of up to max.message.bytes %d", topics[i], max[i]);
		else
			max[i] = 0; /* not known */
	}
	/* Results and dead letters of keyless jobs need a key there. */
	if (compacted[add_topic(topics, &n, cfg->dlq_topic)])
		sl_publish_key_keyless(w, cfg->dlq_topic);
	for (i = 0; i < w->n_types; i++)
		if (compacted[add_topic(topics, &n, w->types[i].conf->result_topic)])
			sl_publish_key_keyless(w, w->types[i].conf->result_topic);
	/* Results and dead letters; the relay's jobs and dead letters. */
	w->batch_max = w->relay_batch_max = max[0];
	for (i = 0; i < w->n_types; i++) {
		w->types[i].result_topic_max = max[add_topic(topics, &n, w->types[i].conf->result_topic)];
		w->batch_max = smaller(w->batch_max, w->types[i].result_topic_max);
	}
	for (i = 0; i < cfg->n_topics; i++)
		if (cfg->topics[i][0] != '^')
			w->relay_batch_max = smaller(w->relay_batch_max, max[add_topic(topics, &n, cfg->topics[i])]);
	free(topics);
	free(max);
	free(compacted);
}

/* Our defaults, then the user's properties, then the properties our
 * guarantees rest on (config.c refuses user values for them). alone: a
 * producer that sends every record in a batch of its own, at once. */
static rd_kafka_t *
client_new(struct sl_worker *w, rd_kafka_type_t type, int alone, char *errbuf, size_t errbuf_size)
{
	const struct sl_config *cfg = w->cfg;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	char kerr[512];
	int rc = 0;

	rc |= sl_kafka_conf_set(conf, "bootstrap.servers", cfg->brokers, errbuf, errbuf_size);
	rc |= sl_kafka_conf_set(conf, "client.id", "sluice-worker", errbuf, errbuf_size);
	if (type == RD_KAFKA_CONSUMER) {
		rc |= sl_kafka_conf_set(conf, "auto.offset.reset", "earliest", errbuf, errbuf_size);
		rc |= sl_kafka_conf_set(conf, "session.timeout.ms", "10000", errbuf, errbuf_size);
		/* A member learns of a rebalance at its next heartbeat: at
		 * librdkafka's 3 s, a process joining a group waited that long
		 * for its partitions while the first member held them all. */
		rc |= sl_kafka_conf_set(conf, "heartbeat.interval.ms", "1000", errbuf, errbuf_size);
		rc |= sl_kafka_conf_set(conf, "auto.commit.interval.ms", "1000", errbuf, errbuf_size);
		rc |= sl_kafka_conf_set(conf, "partition.assignment.strategy", "range,roundrobin", errbuf, errbuf_size);
		/* The prefetch queue only has to cover a fetch round trip at full
		 * speed (a few thousand jobs); at librdkafka's 64 MiB it would be
		 * most of the worker's memory. */
		rc |= sl_kafka_conf_set(conf, "queued.max.messages.kbytes", "4096", errbuf, errbuf_size);
		rc |= sl_kafka_conf_set(conf, "queued.min.messages", "10000", errbuf, errbuf_size);
	} else {
		/* Batching results cuts the worker's CPU per job by half or more
		 * (one produce request per result costs more than the job's SQL);
		 * a result waits at most 50 ms for its batch. */
		rc |= sl_kafka_conf_set(conf, "linger.ms", "50", errbuf, errbuf_size);
		rc |= sl_kafka_conf_set(conf, "message.max.bytes", "16777216", errbuf, errbuf_size);
	}
	if (rc != 0 || sl_kafka_conf_set_all(conf, cfg->kafka_props, cfg->n_kafka_props, errbuf, errbuf_size) < 0 ||
	    (type == RD_KAFKA_CONSUMER &&
	     sl_kafka_conf_set_all(conf, cfg->consumer_props, cfg->n_consumer_props, errbuf, errbuf_size) < 0) ||
	    (type == RD_KAFKA_PRODUCER &&
	     sl_kafka_conf_set_all(conf, cfg->producer_props, cfg->n_producer_props, errbuf, errbuf_size) < 0))
		goto err;
	if (type == RD_KAFKA_PRODUCER && !alone &&
	    sl_kafka_cap_batches(w->batch_max, "results and dead letters", conf, errbuf, errbuf_size) < 0)
		goto err;
	if (alone && (sl_kafka_conf_set(conf, "batch.num.messages", "1", errbuf, errbuf_size) < 0 ||
	              sl_kafka_conf_set(conf, "linger.ms", "0", errbuf, errbuf_size) < 0))
		goto err;
	if (type == RD_KAFKA_CONSUMER) {
		if (sl_kafka_conf_set(conf, "group.id", cfg->group, errbuf, errbuf_size) < 0 ||
		    sl_kafka_conf_set(conf, "enable.auto.offset.store", "false", errbuf, errbuf_size) < 0 ||
		    sl_kafka_conf_set(conf, "enable.auto.commit", "true", errbuf, errbuf_size) < 0 ||
		    sl_kafka_conf_set(conf, "enable.partition.eof", "false", errbuf, errbuf_size) < 0 ||
		    sl_kafka_conf_set(conf, "isolation.level", "read_committed", errbuf, errbuf_size) < 0)
			goto err;
		rd_kafka_conf_set_rebalance_cb(conf, sl_rebalance_cb);
	} else {
		if (sl_kafka_conf_set(conf, "enable.idempotence", "true", errbuf, errbuf_size) < 0 ||
		    sl_kafka_conf_set(conf, "acks", "all", errbuf, errbuf_size) < 0)
			goto err;
		rd_kafka_conf_set_dr_msg_cb(conf, sl_publish_delivery_cb);
	}
	rd_kafka_conf_set_error_cb(conf, on_kafka_error);
	rd_kafka_conf_set_log_cb(conf, on_kafka_log);
	rd_kafka_conf_set_opaque(conf, w);
	rk = rd_kafka_new(type, conf, kerr, sizeof(kerr));
	if (rk == NULL) {
		snprintf(errbuf, errbuf_size, "could not create kafka %s: %s",
		         type == RD_KAFKA_CONSUMER ? "consumer" : "producer", kerr);
		goto err;
	}
	return rk; /* conf is now owned by rk */
err:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

rd_kafka_t *
sl_kafka_client_new(struct sl_worker *w, rd_kafka_type_t type, char *errbuf, size_t errbuf_size)
{
	return client_new(w, type, 0, errbuf, errbuf_size);
}

rd_kafka_t *
sl_kafka_producer_alone(struct sl_worker *w, char *errbuf, size_t errbuf_size)
{
	return client_new(w, RD_KAFKA_PRODUCER, 1, errbuf, errbuf_size);
}
