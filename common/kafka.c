/* kafka.c -- the worker's two Kafka clients and their configuration.
 *
 * The consumer reads jobs in the group, with offsets stored by hand
 * (partition.c) and committed by librdkafka's auto-commit; the producer
 * publishes results and dead letters, idempotent with acks=all
 * (publish.c). Both report errors and log lines here, in our log's voice;
 * a fatal error (the idempotent producer's) stops the worker.
 *
 * Not for: what the clients do once made (consumer.c, publish.c,
 * rebalance.c).
 */
#include "kafka.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "ops.h"
#include "publish.h"
#include "rebalance.h"

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

/* Our defaults, then the user's properties, then the properties our
 * guarantees rest on (config.c refuses user values for them). */
rd_kafka_t *
sl_kafka_client_new(struct sl_worker *w, rd_kafka_type_t type, char *errbuf, size_t errbuf_size)
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
