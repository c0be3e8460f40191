/* config.c -- load, default and check worker.conf (libconfig).
 *
 * Every setting is looked up through a small set of typed getters that know
 * the setting's line, so every error reads `file:line: what is wrong`. Each
 * group lists the names it accepts, so a misspelt setting is an error rather
 * than a silently ignored default. Not for: runtime reload policy (which
 * settings SIGHUP may change is the worker's business).
 */
#include "config.h"

#include <errno.h>
#include <libconfig.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config_text.h"
#include "log.h"
#include "pg.h"

/* Reading state: the file and the error buffer every getter writes to. */
struct reader {
	const char *file;
	char *errbuf;
	size_t errbuf_size;
	struct exposed {
		const char *file;  /* borrowed from the sl_config_text */
		const char *what;  /* a literal or a property name that outlives the load */
	} exposed[4];              /* files holding secrets, warned about once loaded */
	size_t n_exposed;
	const struct sl_config_text *src; /* maps libconfig's lines to file:line */
};

/* Returns the file setting s came from and sets *line (OUT) to its line
 * there (0 when unknown, or s NULL). */
static const char *
where(const struct reader *r, const config_setting_t *s, int *line)
{
	*line = 0;
	if (s == NULL)
		return r->file;
	return sl_config_text_where(r->src, config_setting_source_line(s), line);
}

#define EXPOSED_FMT "file \"%s\" holds a secret (%s) but is readable by %s: chmod go-rwx it"

/* Returns who besides the owner can read file, or NULL (also when it
 * cannot be stat'ed). */
static const char *
readers(const char *file)
{
	struct stat st;

	if (file == NULL || stat(file, &st) != 0 || (st.st_mode & (S_IRGRP | S_IROTH)) == 0)
		return NULL;
	return st.st_mode & S_IROTH ? "others" : "its group";
}

/* Logs the warning of sl_config_warn_exposed() in `format`. */
static void
warn_exposed(enum sl_log_format format, const char *file, const char *what)
{
	const char *who = readers(file);

	if (who != NULL)
		sl_log_write_format(format, SL_LOG_WARN, EXPOSED_FMT, file, what, who);
}

void
sl_config_warn_exposed(const char *file, const char *what)
{
	const char *who = readers(file);

	if (who != NULL)
		sl_log_warn(EXPOSED_FMT, file, what, who);
}

/* Notes that setting s holds a secret: its file is checked once the load
 * has succeeded, and the warning written in the file's own log.format. */
static void
warn_secret(struct reader *r, const config_setting_t *s, const char *what)
{
	int line;
	const char *file = where(r, s, &line);
	size_t i;

	for (i = 0; i < r->n_exposed; i++)
		if (strcmp(r->exposed[i].file, file) == 0)
			return;
	if (r->n_exposed < sizeof(r->exposed) / sizeof(r->exposed[0])) {
		r->exposed[r->n_exposed].file = file;
		r->exposed[r->n_exposed++].what = what;
	}
}

/* Writes `file:line: message` (line of s, or the file alone) and returns -1. */
static int
fail(struct reader *r, const config_setting_t *s, const char *fmt, ...)
{
	va_list ap;
	int line;
	const char *file = where(r, s, &line);

	va_start(ap, fmt);
	sl_config_errorv(r->errbuf, r->errbuf_size, file, line, fmt, ap);
	va_end(ap);
	return -1;
}

static char *
xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");

	if (d == NULL) {
		fprintf(stderr, "out of memory\n");
		abort();
	}
	return d;
}

/* Full dotted name of a setting, for messages. */
static const char *
setting_name(const config_setting_t *s, char *buf, size_t size)
{
	const config_setting_t *chain[16];
	size_t n = 0, off = 0;

	for (; s != NULL && config_setting_parent(s) != NULL && n < 16; s = config_setting_parent(s))
		chain[n++] = s;
	buf[0] = '\0';
	while (n-- > 0) {
		const char *name = config_setting_name(chain[n]);
		char idx[24];
		if (name == NULL) {
			snprintf(idx, sizeof(idx), "[%d]", config_setting_index(chain[n]));
			name = idx;
		} else if (off > 0 && off < size - 1) {
			buf[off++] = '.';
		}
		off += (size_t)snprintf(buf + off, size - off, "%s", name);
		if (off >= size)
			break;
	}
	return buf;
}

/* Refuses settings of `group` whose names are not in `allowed` (NULL-ended). */
static int
check_known(struct reader *r, const config_setting_t *group, const char *const *allowed)
{
	int i, n;

	if (group == NULL)
		return 0;
	n = config_setting_length(group);
	for (i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
		const char *name = config_setting_name(s);
		const char *const *a;
		char full[128];

		for (a = allowed; *a != NULL; a++)
			if (strcmp(*a, name) == 0)
				break;
		if (*a == NULL)
			return fail(r, s, "unknown setting \"%s\"", setting_name(s, full, sizeof(full)));
	}
	return 0;
}

/* Looks up `name` in group `g` (which may be NULL: then the default stays). */
static const config_setting_t *
lookup(const config_setting_t *g, const char *name)
{
	return g ? config_setting_get_member(g, name) : NULL;
}

static int
get_group(struct reader *r, const config_setting_t *root, const char *name, const config_setting_t **out)
{
	const config_setting_t *s = lookup(root, name);

	*out = NULL;
	if (s == NULL)
		return 0;
	if (!config_setting_is_group(s))
		return fail(r, s, "\"%s\" must be a group: %s: { ... }", name, name);
	*out = s;
	return 0;
}

/* Replaces *out (a malloc'ed string) with the setting's value if present. */
static int
get_string(struct reader *r, const config_setting_t *g, const char *name, char **out)
{
	const config_setting_t *s = lookup(g, name);
	char full[128];

	if (s == NULL)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return fail(r, s, "\"%s\" must be a string", setting_name(s, full, sizeof(full)));
	free(*out);
	*out = xstrdup(config_setting_get_string(s));
	return 0;
}

static int
get_int(struct reader *r, const config_setting_t *g, const char *name, int min, int max, int *out)
{
	const config_setting_t *s = lookup(g, name);
	long long v;
	char full[128];

	if (s == NULL)
		return 0;
	if (config_setting_type(s) == CONFIG_TYPE_INT)
		v = config_setting_get_int(s);
	else if (config_setting_type(s) == CONFIG_TYPE_INT64)
		v = config_setting_get_int64(s);
	else
		return fail(r, s, "\"%s\" must be an integer", setting_name(s, full, sizeof(full)));
	if (v < min || v > max)
		return fail(r, s, "\"%s\" must be between %d and %d, not %lld",
		            setting_name(s, full, sizeof(full)), min, max, v);
	*out = (int)v;
	return 0;
}

static int
get_double(struct reader *r, const config_setting_t *g, const char *name, double min, double max,
           double *out)
{
	const config_setting_t *s = lookup(g, name);
	double v;
	char full[128];

	if (s == NULL)
		return 0;
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_FLOAT:
		v = config_setting_get_float(s);
		break;
	case CONFIG_TYPE_INT:
		v = config_setting_get_int(s);
		break;
	case CONFIG_TYPE_INT64:
		v = (double)config_setting_get_int64(s);
		break;
	default:
		return fail(r, s, "\"%s\" must be a number", setting_name(s, full, sizeof(full)));
	}
	if (!(v >= min && v <= max))
		return fail(r, s, "\"%s\" must be between %g and %g, not %g",
		            setting_name(s, full, sizeof(full)), min, max, v);
	*out = v;
	return 0;
}

static int
get_bool(struct reader *r, const config_setting_t *g, const char *name, int *out)
{
	const config_setting_t *s = lookup(g, name);
	char full[128];

	if (s == NULL)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return fail(r, s, "\"%s\" must be true or false", setting_name(s, full, sizeof(full)));
	*out = config_setting_get_bool(s);
	return 0;
}

/* Reads an array (or list) of non-empty strings into a new array. */
static int
get_strings(struct reader *r, const config_setting_t *g, const char *name, char ***out, size_t *n_out)
{
	const config_setting_t *s = lookup(g, name);
	char full[128];
	char **v;
	int i, n;

	if (s == NULL)
		return 0;
	if (!config_setting_is_aggregate(s) || config_setting_is_group(s))
		return fail(r, s, "\"%s\" must be an array of strings: [ \"a\", \"b\" ]",
		            setting_name(s, full, sizeof(full)));
	n = config_setting_length(s);
	v = calloc((size_t)n + 1, sizeof(*v));
	if (v == NULL)
		abort();
	for (i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING || *config_setting_get_string(e) == '\0') {
			while (i-- > 0)
				free(v[i]);
			free(v);
			return fail(r, e, "\"%s\" must hold non-empty strings", setting_name(s, full, sizeof(full)));
		}
		v[i] = xstrdup(config_setting_get_string(e));
	}
	if (*out != NULL) {
		for (i = 0; (size_t)i < *n_out; i++)
			free((*out)[i]);
		free(*out);
	}
	*out = v;
	*n_out = (size_t)n;
	return 0;
}

/* Kafka properties sluice sets itself, because its guarantees rest on them. */
static const char *const owned_props[] = {
	"bootstrap.servers", "metadata.broker.list", "group.id", "enable.auto.offset.store",
	"enable.auto.commit", "enable.idempotence", "acks", "request.required.acks", "enable.partition.eof", NULL,
};

/* Kafka properties whose values are secrets. */
static const char *const secret_props[] = {
	"sasl.password", "ssl.key.password", "ssl.keystore.password", "ssl.key.pem",
	"sasl.oauthbearer.client.secret", NULL,
};

/* Reads "name=value" strings and checks each against librdkafka, so a
 * misspelt property fails here rather than at connect time. */
static int
get_props(struct reader *r, const config_setting_t *g, const char *name, struct sl_kv **out,
          size_t *n_out)
{
	const config_setting_t *s = lookup(g, name);
	char full[128], kerr[256];
	struct sl_kv *v;
	int i, n;

	if (s == NULL)
		return 0;
	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return fail(r, s, "\"%s\" must be an array of \"name=value\" strings",
		            setting_name(s, full, sizeof(full)));
	n = config_setting_length(s);
	v = calloc((size_t)n + 1, sizeof(*v));
	if (v == NULL)
		abort();
	*out = v;
	*n_out = 0;
	for (i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *str, *eq;
		const char *const *o;
		rd_kafka_conf_t *probe;

		if (config_setting_type(e) != CONFIG_TYPE_STRING ||
		    (eq = strchr((str = config_setting_get_string(e)), '=')) == NULL || eq == str)
			return fail(r, e, "\"%s\" must hold \"name=value\" strings",
			            setting_name(s, full, sizeof(full)));
		v[i].key = strndup(str, (size_t)(eq - str));
		v[i].value = xstrdup(eq + 1);
		*n_out = (size_t)i + 1;
		for (o = owned_props; *o != NULL; o++)
			if (strcmp(*o, v[i].key) == 0)
				return fail(r, e, "kafka property \"%s\" is set by sluice and cannot be changed here%s",
				            v[i].key,
				            strcmp(*o, "bootstrap.servers") == 0 || strcmp(*o, "metadata.broker.list") == 0
				                ? " (use kafka.brokers)"
				                : strcmp(*o, "group.id") == 0 ? " (use kafka.group)" : "");
		/* Revokes drain and commit a whole eager assignment; an incremental
		 * (cooperative) one would need incremental_assign/unassign, and
		 * librdkafka 2.0's cooperative-sticky has known bugs. */
		if (strcmp(v[i].key, "partition.assignment.strategy") == 0 && strstr(v[i].value, "cooperative") != NULL)
			return fail(r, e, "kafka property \"partition.assignment.strategy\": only the eager assignors "
			                  "(range, roundrobin) are supported");
		/* Jobs of aborted Kafka transactions must never run; sluice sets
		 * read_committed itself and accepts only that. */
		if (strcmp(v[i].key, "isolation.level") == 0 && strcmp(v[i].value, "read_committed") != 0)
			return fail(r, e, "kafka property \"isolation.level\": only read_committed is supported "
			                  "(jobs of aborted transactions would run)");
		probe = rd_kafka_conf_new();
		if (rd_kafka_conf_set(probe, v[i].key, v[i].value, kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK) {
			rd_kafka_conf_destroy(probe);
			/* Never echo the value: it may be a SASL secret. */
			return fail(r, e, "kafka property \"%s\": %s", v[i].key, kerr);
		}
		rd_kafka_conf_destroy(probe);
		for (o = secret_props; *o != NULL; o++)
			if (strcmp(*o, v[i].key) == 0 && *v[i].value != '\0')
				warn_secret(r, e, v[i].key);
	}
	return 0;
}

static int
get_retry(struct reader *r, const config_setting_t *g, struct sl_retry_policy *p)
{
	static const char *const known[] = { "max_attempts", "initial_backoff", "max_backoff", "multiplier", NULL };

	if (g == NULL)
		return 0;
	if (!config_setting_is_group(g))
		return fail(r, g, "\"retry\" must be a group: retry: { ... }");
	if (check_known(r, g, known) < 0 || get_int(r, g, "max_attempts", 1, 1000, &p->max_attempts) < 0 ||
	    get_double(r, g, "initial_backoff", 0, 3600, &p->initial_backoff) < 0 ||
	    get_double(r, g, "max_backoff", 0, 3600, &p->max_backoff) < 0 ||
	    get_double(r, g, "multiplier", 1, 100, &p->multiplier) < 0)
		return -1;
	if (p->max_backoff < p->initial_backoff)
		return fail(r, g, "\"max_backoff\" (%g) must not be below \"initial_backoff\" (%g)", p->max_backoff,
		            p->initial_backoff);
	return 0;
}

static int
get_jobs(struct reader *r, const config_setting_t *root, struct sl_config *cfg)
{
	static const char *const known[] = { "type", "handler", "schema", "result_topic", "retry", "role",
		                             "statement_timeout", NULL };
	const config_setting_t *s = lookup(root, "jobs");
	int i, j, n;

	if (s == NULL)
		return fail(r, NULL, "no job types: add jobs = ( { type = \"...\"; handler = \"...\"; } )");
	if (!config_setting_is_list(s))
		return fail(r, s, "\"jobs\" must be a list of groups: jobs = ( { ... }, { ... } )");
	n = config_setting_length(s);
	if (n == 0)
		return fail(r, s, "\"jobs\" is empty: no job type would run");
	cfg->jobs = calloc((size_t)n, sizeof(*cfg->jobs));
	if (cfg->jobs == NULL)
		abort();
	for (i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		struct sl_job_type *jt = &cfg->jobs[i];

		cfg->n_jobs = (size_t)i + 1;
		jt->line = config_setting_source_line(e);
		jt->retry = cfg->retry;
		if (!config_setting_is_group(e))
			return fail(r, e, "each job type must be a group: { type = \"...\"; handler = \"...\"; }");
		if (check_known(r, e, known) < 0 || get_string(r, e, "type", &jt->type) < 0 ||
		    get_string(r, e, "handler", &jt->handler) < 0 || get_string(r, e, "schema", &jt->schema_path) < 0 ||
		    get_string(r, e, "result_topic", &jt->result_topic) < 0 ||
		    get_retry(r, lookup(e, "retry"), &jt->retry) < 0 || get_string(r, e, "role", &jt->role) < 0 ||
		    get_double(r, e, "statement_timeout", 0.001, 86400, &jt->statement_timeout) < 0)
			return -1;
		if (jt->role != NULL && *jt->role == '\0')
			return fail(r, lookup(e, "role"), "\"role\" must not be empty (leave it out for none)");
		if (jt->type == NULL || *jt->type == '\0')
			return fail(r, e, "job type without \"type\"");
		if (jt->handler == NULL)
			jt->handler = xstrdup(jt->type);
		if (jt->result_topic == NULL)
			jt->result_topic = xstrdup(cfg->result_topic);
		if (jt->schema_path != NULL && *jt->schema_path == '\0') {
			free(jt->schema_path);
			jt->schema_path = NULL;
		}
		for (j = 0; j < i; j++)
			if (strcmp(cfg->jobs[j].type, jt->type) == 0)
				return fail(r, e, "job type \"%s\" is defined twice (first on line %d)", jt->type,
				            cfg->jobs[j].line);
	}
	return 0;
}

static void
set_defaults(struct sl_config *cfg)
{
	cfg->brokers = xstrdup("127.0.0.1:9092");
	cfg->group = xstrdup("sluice");
	cfg->topics = calloc(2, sizeof(char *));
	if (cfg->topics == NULL)
		abort();
	cfg->topics[0] = xstrdup("jobs");
	cfg->n_topics = 1;
	cfg->dlq_topic = xstrdup("jobs.dlq");
	cfg->result_topic = xstrdup("job-results");
	cfg->pg_conninfo = xstrdup("");
	cfg->executors = 4;
	cfg->max_in_flight = 1000;
	cfg->max_job_bytes = 256 * 1024;
	cfg->max_result_bytes = 1000000;
	cfg->max_batch = 32;
	cfg->shutdown_timeout = 30.0;
	cfg->revoke_timeout = 20.0;
	cfg->stall_timeout = 60.0;
	cfg->retry.max_attempts = 8;
	cfg->retry.initial_backoff = 0.1;
	cfg->retry.max_backoff = 5.0;
	cfg->retry.multiplier = 2.0;
	cfg->outbox.enabled = 1;
	cfg->outbox.source = xstrdup("sluice.outbox");
	cfg->outbox.poll_interval = 0.1;
	cfg->outbox.batch = 1000;
	cfg->outbox.lease_ttl = 10.0;
	cfg->result_source = xstrdup("sluice");
	cfg->http_listen = xstrdup("127.0.0.1:9187");
	cfg->log_level = SL_LOG_INFO;
	cfg->log_format = SL_LOG_KV;
}

/* The consumer's session.timeout.ms as the worker sets it: the user's
 * consumer property, else the shared one, else sluice's 10000. */
static double
session_timeout_seconds(const struct sl_config *cfg)
{
	const char *v = NULL;
	size_t i;
	char *end;
	double ms;

	for (i = 0; i < cfg->n_kafka_props; i++)
		if (strcmp(cfg->kafka_props[i].key, "session.timeout.ms") == 0)
			v = cfg->kafka_props[i].value;
	for (i = 0; i < cfg->n_consumer_props; i++)
		if (strcmp(cfg->consumer_props[i].key, "session.timeout.ms") == 0)
			v = cfg->consumer_props[i].value;
	if (v == NULL)
		return 10.0;
	ms = strtod(v, &end);
	return end != v && *end == '\0' && ms >= 1 ? ms / 1000.0 : 10.0; /* librdkafka refuses it otherwise */
}

/* Unset lock and idle-transaction bounds follow the consumer's session
 * timeout: by the time the group gives a frozen worker's partitions to
 * another member, the server has ended the frozen worker's open
 * transactions (their locks go with them), and a job waiting for a lock
 * waits no longer than that holder can hold it. */
static void
derive_session_bounds(struct sl_config *cfg)
{
	double half = session_timeout_seconds(cfg) / 2;

	if (half < 1)
		half = 1;
	if (cfg->lock_timeout == 0)
		cfg->lock_timeout = half;
	if (cfg->idle_in_transaction_timeout == 0)
		cfg->idle_in_transaction_timeout = half;
}

static int
read_all(struct reader *r, const config_setting_t *root, struct sl_config *cfg)
{
	static const char *const top[] = { "kafka", "postgres", "executors", "limits", "retry", "jobs",
		                           "results", "http", "log", "outbox", NULL };
	static const char *const kafka_known[] = { "brokers", "group", "topics", "dlq_topic", "result_topic",
		                                   "properties", "consumer_properties", "producer_properties",
		                                   NULL };
	static const char *const pg_known[] = { "conninfo", "pooling", NULL };
	static const char *const limits_known[] = { "max_in_flight", "max_job_bytes", "max_result_bytes", "max_batch",
		                                    "shutdown_timeout", "revoke_timeout", "stall_timeout",
		                                    "lock_timeout", "idle_in_transaction_timeout", NULL };
	static const char *const results_known[] = { "source", NULL };
	static const char *const http_known[] = { "listen", NULL };
	static const char *const log_known[] = { "level", "format", NULL };
	static const char *const outbox_known[] = { "enabled", "source", "poll_interval", "batch", "lease_ttl",
		                                    NULL };
	const config_setting_t *kafka, *pg, *limits, *results, *http, *logg, *outbox;
	char *level = NULL, *format = NULL, *pooling = NULL;
	int rc = -1, lv;

	if (check_known(r, root, top) < 0 || get_group(r, root, "kafka", &kafka) < 0 ||
	    get_group(r, root, "postgres", &pg) < 0 || get_group(r, root, "limits", &limits) < 0 ||
	    get_group(r, root, "results", &results) < 0 || get_group(r, root, "http", &http) < 0 ||
	    get_group(r, root, "log", &logg) < 0 || get_group(r, root, "outbox", &outbox) < 0)
		goto out;
	if (check_known(r, kafka, kafka_known) < 0 || check_known(r, pg, pg_known) < 0 ||
	    check_known(r, limits, limits_known) < 0 || check_known(r, results, results_known) < 0 ||
	    check_known(r, http, http_known) < 0 || check_known(r, logg, log_known) < 0 ||
	    check_known(r, outbox, outbox_known) < 0)
		goto out;

	if (get_string(r, kafka, "brokers", &cfg->brokers) < 0 || get_string(r, kafka, "group", &cfg->group) < 0 ||
	    get_strings(r, kafka, "topics", &cfg->topics, &cfg->n_topics) < 0 ||
	    get_string(r, kafka, "dlq_topic", &cfg->dlq_topic) < 0 ||
	    get_string(r, kafka, "result_topic", &cfg->result_topic) < 0 ||
	    get_props(r, kafka, "properties", &cfg->kafka_props, &cfg->n_kafka_props) < 0 ||
	    get_props(r, kafka, "consumer_properties", &cfg->consumer_props,
	              &cfg->n_consumer_props) < 0 ||
	    get_props(r, kafka, "producer_properties", &cfg->producer_props,
	              &cfg->n_producer_props) < 0)
		goto out;
	if (cfg->n_topics == 0) {
		fail(r, lookup(kafka, "topics"), "\"kafka.topics\" is empty: the worker would consume nothing");
		goto out;
	}
	if (*cfg->group == '\0' || *cfg->dlq_topic == '\0' || *cfg->result_topic == '\0') {
		fail(r, kafka, "kafka.group, kafka.dlq_topic and kafka.result_topic must not be empty");
		goto out;
	}
	if (get_string(r, pg, "conninfo", &cfg->pg_conninfo) < 0 || get_string(r, pg, "pooling", &pooling) < 0)
		goto out;
	if (pooling != NULL) {
		if (strcmp(pooling, "none") == 0)
			cfg->pg_pooled = 0;
		else if (strcmp(pooling, "transaction") == 0)
			cfg->pg_pooled = 1;
		else {
			fail(r, lookup(pg, "pooling"), "unknown postgres.pooling \"%s\" (none, transaction)", pooling);
			goto out;
		}
	}
	if (get_int(r, root, "executors", 1, 256, &cfg->executors) < 0 ||
	    get_int(r, limits, "max_in_flight", 1, 1000000, &cfg->max_in_flight) < 0 ||
	    get_int(r, limits, "max_job_bytes", 64, 64 * 1024 * 1024, &cfg->max_job_bytes) < 0 ||
	    get_int(r, limits, "max_result_bytes", 1024, 16 * 1000 * 1000, &cfg->max_result_bytes) < 0 ||
	    get_int(r, limits, "max_batch", 1, 1000, &cfg->max_batch) < 0 ||
	    get_double(r, limits, "shutdown_timeout", 0, 3600, &cfg->shutdown_timeout) < 0 ||
	    get_double(r, limits, "revoke_timeout", 0, 3600, &cfg->revoke_timeout) < 0 ||
	    get_double(r, limits, "stall_timeout", 0.1, 86400, &cfg->stall_timeout) < 0 ||
	    get_double(r, limits, "lock_timeout", 0.001, 3600, &cfg->lock_timeout) < 0 ||
	    get_double(r, limits, "idle_in_transaction_timeout", 0.1, 3600,
	               &cfg->idle_in_transaction_timeout) < 0 ||
	    get_retry(r, lookup(root, "retry"), &cfg->retry) < 0 || get_jobs(r, root, cfg) < 0 ||
	    get_string(r, results, "source", &cfg->result_source) < 0 ||
	    get_string(r, http, "listen", &cfg->http_listen) < 0 || get_string(r, logg, "level", &level) < 0 ||
	    get_string(r, logg, "format", &format) < 0)
		goto out;
	if (get_bool(r, outbox, "enabled", &cfg->outbox.enabled) < 0 ||
	    get_string(r, outbox, "source", &cfg->outbox.source) < 0 ||
	    get_double(r, outbox, "poll_interval", 0.01, 60, &cfg->outbox.poll_interval) < 0 ||
	    get_int(r, outbox, "batch", 1, 100000, &cfg->outbox.batch) < 0 ||
	    get_double(r, outbox, "lease_ttl", 1, 3600, &cfg->outbox.lease_ttl) < 0)
		goto out;
	if (*cfg->outbox.source == '\0') {
		fail(r, lookup(outbox, "source"), "\"outbox.source\" must not be empty");
		goto out;
	}
	if (*cfg->result_source == '\0') {
		fail(r, lookup(results, "source"), "\"results.source\" must not be empty");
		goto out;
	}
	if (level != NULL) {
		if ((lv = sl_log_level_parse(level)) < 0) {
			fail(r, lookup(logg, "level"), "unknown log level \"%s\" (error, warn, info, debug)", level);
			goto out;
		}
		cfg->log_level = lv;
	}
	if (format != NULL) {
		if (strcmp(format, "kv") == 0)
			cfg->log_format = SL_LOG_KV;
		else if (strcmp(format, "json") == 0)
			cfg->log_format = SL_LOG_JSON;
		else {
			fail(r, lookup(logg, "format"), "unknown log format \"%s\" (kv, json)", format);
			goto out;
		}
	}
	rc = 0;
out:
	free(level);
	free(format);
	free(pooling);
	return rc;
}

struct sl_config *
sl_config_load(const char *path, char *errbuf, size_t errbuf_size)
{
	struct sl_config_text src = { 0 };
	struct reader r = { path, errbuf, errbuf_size, { { NULL, NULL } }, 0, &src };
	struct sl_config *cfg = NULL;
	const config_setting_t *s;
	const char *env, *slash, *file;
	config_t lc;
	size_t i;
	int line;

	config_init(&lc);
	/* libconfig sees one text: includes spliced in (resolved against the
	 * including file's folder) and integer literals checked, see
	 * config_text.h. */
	if (sl_config_text_read(path, &src, errbuf, errbuf_size) < 0)
		goto err;
	if (config_read_string(&lc, src.text) != CONFIG_TRUE) {
		file = sl_config_text_where(&src, config_error_line(&lc), &line);
		if (line > 0)
			snprintf(errbuf, errbuf_size, "%s:%d: %s", file, line, config_error_text(&lc));
		else
			snprintf(errbuf, errbuf_size, "%s: %s", file, config_error_text(&lc));
		goto err;
	}
	if ((cfg = calloc(1, sizeof(*cfg))) == NULL)
		abort();
	cfg->path = xstrdup(path);
	slash = strrchr(path, '/');
	cfg->dir = slash ? strndup(path, (size_t)(slash - path + 1)) : xstrdup("");
	set_defaults(cfg);
	if (read_all(&r, config_root_setting(&lc), cfg) < 0)
		goto err;
	derive_session_bounds(cfg);
	if ((s = config_lookup(&lc, "postgres.conninfo")) != NULL &&
	    sl_pg_conninfo_has_secret(config_setting_get_string(s)))
		warn_secret(&r, s, "a password in postgres.conninfo");

	if ((env = getenv("SLUICE_KAFKA_BROKERS")) != NULL && *env) {
		free(cfg->brokers);
		cfg->brokers = xstrdup(env);
	}
	if ((env = getenv("SLUICE_PG_CONNINFO")) != NULL) {
		free(cfg->pg_conninfo);
		cfg->pg_conninfo = xstrdup(env);
	}
	/* With the conninfo: pointing it at a PgBouncer needs this too. */
	if ((env = getenv("SLUICE_PG_POOLING")) != NULL && *env) {
		if (strcmp(env, "none") != 0 && strcmp(env, "transaction") != 0) {
			snprintf(errbuf, errbuf_size, "%s: SLUICE_PG_POOLING: unknown value \"%s\" (none, transaction)", path,
			         env);
			goto err;
		}
		cfg->pg_pooled = strcmp(env, "transaction") == 0;
	}
	if (*cfg->brokers == '\0') {
		snprintf(errbuf, errbuf_size, "%s: kafka.brokers is empty (set it or SLUICE_KAFKA_BROKERS)", path);
		goto err;
	}
	for (i = 0; i < r.n_exposed; i++)
		warn_exposed(cfg->log_format, r.exposed[i].file, r.exposed[i].what);
	config_destroy(&lc);
	sl_config_text_free(&src);
	return cfg;
err:
	config_destroy(&lc);
	sl_config_text_free(&src);
	sl_config_destroy(cfg);
	return NULL;
}

static void
free_kvs(struct sl_kv *v, size_t n)
{
	size_t i;

	for (i = 0; v != NULL && i < n; i++) {
		free(v[i].key);
		free(v[i].value);
	}
	free(v);
}

void
sl_config_destroy(struct sl_config *cfg)
{
	size_t i;

	if (cfg == NULL)
		return;
	free(cfg->path);
	free(cfg->dir);
	free(cfg->brokers);
	free(cfg->group);
	for (i = 0; i < cfg->n_topics; i++)
		free(cfg->topics[i]);
	free(cfg->topics);
	free(cfg->dlq_topic);
	free(cfg->result_topic);
	free_kvs(cfg->kafka_props, cfg->n_kafka_props);
	free_kvs(cfg->consumer_props, cfg->n_consumer_props);
	free_kvs(cfg->producer_props, cfg->n_producer_props);
	free(cfg->pg_conninfo);
	for (i = 0; i < cfg->n_jobs; i++) {
		free(cfg->jobs[i].type);
		free(cfg->jobs[i].handler);
		free(cfg->jobs[i].role);
		free(cfg->jobs[i].schema_path);
		free(cfg->jobs[i].result_topic);
	}
	free(cfg->jobs);
	free(cfg->outbox.source);
	free(cfg->result_source);
	free(cfg->http_listen);
	free(cfg);
}

const struct sl_job_type *
sl_config_job_type(const struct sl_config *cfg, const char *type)
{
	size_t i;

	for (i = 0; i < cfg->n_jobs; i++)
		if (strcmp(cfg->jobs[i].type, type) == 0)
			return &cfg->jobs[i];
	return NULL;
}

const char *
sl_config_path(const struct sl_config *cfg, const char *path, char *buf, size_t buf_size)
{
	if (path[0] == '/')
		snprintf(buf, buf_size, "%s", path);
	else
		snprintf(buf, buf_size, "%s%s", cfg->dir, path);
	return buf;
}
