/* reload.c -- SIGHUP: apply what can change without a restart.
 *
 * The file is read and checked again as at start; a bad one is refused
 * whole and the running configuration kept. The log level and format, the
 * in-flight bound, the timeouts and the retry policies change at once;
 * everything else is named in a warning as waiting for a restart.
 *
 * Not for: reading the file (config.c). Consumer thread.
 */
#include "reload.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "notify.h"
#include "worker.h"

/* SIGHUP: applies what can change without a restart (log level and format,
 * limits other than executors, batch and message size, retry policies) and
 * names what it could not apply. Consumer thread. */
void
sl_reload(struct sl_worker *w)
{
	const struct sl_config *old = w->cfg;
	struct sl_config *cfg;
	char errbuf[1024], skipped[512] = "";
	size_t i;
	int same;

	sl_notify("RELOADING=1");
	if ((cfg = sl_config_load(old->path, errbuf, sizeof(errbuf))) == NULL ||
	    sl_worker_check(cfg, errbuf, sizeof(errbuf)) < 0) {
		sl_log_error("could not reload the configuration, keeping the running one: %s", errbuf);
		sl_config_destroy(cfg);
		sl_notify("READY=1");
		return;
	}
	sl_log_set_level((enum sl_log_level)cfg->log_level);
	sl_log_set_format((enum sl_log_format)cfg->log_format);
	w->max_in_flight = cfg->max_in_flight;
	w->shutdown_timeout = cfg->shutdown_timeout;
	w->revoke_timeout = cfg->revoke_timeout;
	w->stall_timeout = cfg->stall_timeout;
	pthread_mutex_lock(&w->reload_mu);
	for (i = 0; i < w->n_types; i++) {
		const struct sl_job_type *jt = sl_config_job_type(cfg, w->types[i].conf->type);
		if (jt != NULL)
			w->types[i].retry = jt->retry;
	}
	pthread_mutex_unlock(&w->reload_mu);

#define CHANGED(cond, name) \
	if (cond)           \
		snprintf(skipped + strlen(skipped), sizeof(skipped) - strlen(skipped), "%s%s", *skipped ? ", " : "", name)
	CHANGED(strcmp(cfg->brokers, old->brokers) != 0, "kafka.brokers");
	CHANGED(strcmp(cfg->group, old->group) != 0, "kafka.group");
	same = cfg->n_topics == old->n_topics;
	for (i = 0; same && i < cfg->n_topics; i++)
		same = strcmp(cfg->topics[i], old->topics[i]) == 0;
	CHANGED(!same, "kafka.topics");
	CHANGED(strcmp(cfg->dlq_topic, old->dlq_topic) != 0, "kafka.dlq_topic");
	same = cfg->n_kafka_props == old->n_kafka_props && cfg->n_consumer_props == old->n_consumer_props &&
	       cfg->n_producer_props == old->n_producer_props;
	for (i = 0; same && i < cfg->n_kafka_props; i++)
		same = strcmp(cfg->kafka_props[i].key, old->kafka_props[i].key) == 0 &&
		       strcmp(cfg->kafka_props[i].value, old->kafka_props[i].value) == 0;
	for (i = 0; same && i < cfg->n_consumer_props; i++)
		same = strcmp(cfg->consumer_props[i].key, old->consumer_props[i].key) == 0 &&
		       strcmp(cfg->consumer_props[i].value, old->consumer_props[i].value) == 0;
	for (i = 0; same && i < cfg->n_producer_props; i++)
		same = strcmp(cfg->producer_props[i].key, old->producer_props[i].key) == 0 &&
		       strcmp(cfg->producer_props[i].value, old->producer_props[i].value) == 0;
	CHANGED(!same, "kafka properties");
	CHANGED(strcmp(cfg->pg_conninfo, old->pg_conninfo) != 0, "postgres.conninfo");
	CHANGED(cfg->pg_pooled != old->pg_pooled, "postgres.pooling");
	CHANGED(cfg->executors != old->executors, "executors");
	CHANGED(cfg->max_job_bytes != old->max_job_bytes, "limits.max_job_bytes");
	CHANGED(cfg->max_result_bytes != old->max_result_bytes, "limits.max_result_bytes");
	CHANGED(cfg->max_batch != old->max_batch, "limits.max_batch");
	same = cfg->n_jobs == old->n_jobs;
	for (i = 0; same && i < cfg->n_jobs; i++) {
		const struct sl_job_type *a = &cfg->jobs[i], *b = sl_config_job_type(old, a->type);
		same = b != NULL && strcmp(a->handler, b->handler) == 0 && strcmp(a->result_topic, b->result_topic) == 0 &&
		       (a->schema_path == NULL) == (b->schema_path == NULL) &&
		       (a->schema_path == NULL || strcmp(a->schema_path, b->schema_path) == 0);
	}
	CHANGED(!same, "jobs (types, handlers, schemas, result topics)");
	CHANGED(strcmp(cfg->result_source, old->result_source) != 0, "results.source");
	CHANGED(strcmp(cfg->http_listen, old->http_listen) != 0, "http.listen");
	CHANGED(cfg->outbox.enabled != old->outbox.enabled || strcmp(cfg->outbox.source, old->outbox.source) != 0 ||
	        cfg->outbox.poll_interval != old->outbox.poll_interval || cfg->outbox.batch != old->outbox.batch ||
	        cfg->outbox.lease_ttl != old->outbox.lease_ttl,
	        "outbox");
#undef CHANGED
	if (*skipped)
		sl_log_warn("reloaded %s; not applied until a restart: %s", old->path, skipped);
	else
		sl_log_info("reloaded %s", old->path);
	sl_config_destroy(cfg);
	sl_notify("READY=1");
}
