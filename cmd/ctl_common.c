/* ctl_common.c -- helpers shared by the sluicectl subcommands.
 *
 * Small things two or more subcommands would otherwise each repeat: error
 * lines, operands and option numbers, interrupts, the Kafka client settings,
 * assign-only readers, the producer, topic metadata, times (--since/--until,
 * RFC 3339 output) and bytes in JSON.
 * Subcommand logic stays in its own cmd/ctl_<name>.c.
 */
#include "ctl_common.h"

#include <errno.h>
#include <pthread.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "event.h"

static const char *ctl_command = "sluicectl";

/* The configuration given with -c (sl_ctl_config_load()); NULL: none. */
static const struct sl_config *ctl_config;

/* Client errors already printed. librdkafka repeats "all brokers down" and
 * transport errors on every reconnect attempt; one line each is enough for
 * a command-line user. Touched from whichever thread polls a client: the
 * console polls from several at once, hence the lock. */
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static rd_kafka_resp_err_t seen_errors[32];
static size_t n_seen_errors;

/* Set by SIGINT/SIGTERM once sl_ctl_catch_interrupts() ran. */
static volatile sig_atomic_t interrupted;

void
sl_ctl_set_command(const char *cmd)
{
	ctl_command = cmd;
}

void
sl_ctl_error(const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* One fprintf, so the line is written whole even beside librdkafka's threads. */
	fprintf(stderr, "sluicectl %s: %s\n", ctl_command, msg);
}

int
sl_ctl_option_error(int opt, int argc, char **argv)
{
	/* getopt_long() has already moved optind past the culprit. */
	const char *arg = optind - 1 < argc && optind > 1 ? argv[optind - 1] : "?";

	if (opt == ':')
		sl_ctl_error("option \"%s\" needs a value (see 'sluicectl %s --help')", arg, ctl_command);
	else
		sl_ctl_error("unknown option \"%s\" (see 'sluicectl %s --help')", arg, ctl_command);
	return 2;
}

int
sl_ctl_argument_error(const char *arg)
{
	sl_ctl_error("unexpected argument \"%s\" (see 'sluicectl %s --help')", arg, ctl_command);
	return 2;
}

int
sl_ctl_operand(int argc, char **argv, const char *what, const char **value)
{
	if (optind >= argc)
		return 0;
	if (*value != NULL || optind + 1 < argc) {
		sl_ctl_error("expected one %s (see 'sluicectl %s --help')", what, ctl_command);
		return 2;
	}
	*value = argv[optind];
	return 0;
}

static void
handle_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

void
sl_ctl_catch_interrupts(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handle_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

int
sl_ctl_interrupted(void)
{
	return interrupted != 0;
}

int
sl_ctl_parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (s == NULL || *s == '\0')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int
sl_ctl_parse_seconds(const char *s, double *out)
{
	char *end;
	double v;

	if (s == NULL || *s == '\0')
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || *end != '\0' || !isfinite(v) || v < 0)
		return -1;
	*out = v;
	return 0;
}

struct sl_config *
sl_ctl_config_load(const char *path)
{
	struct sl_config *cfg;
	char errbuf[1024];

	if ((cfg = sl_config_load(path, errbuf, sizeof(errbuf))) == NULL) {
		/* Already "FILE:LINE: what is wrong". */
		sl_ctl_error("%s", errbuf);
		return NULL;
	}
	ctl_config = cfg;
	return cfg;
}

void
sl_ctl_config_release(struct sl_config *cfg)
{
	if (cfg == NULL)
		return;
	if (ctl_config == cfg)
		ctl_config = NULL;
	sl_config_destroy(cfg);
}

const char *
sl_ctl_brokers(const char *opt)
{
	const char *env;

	if (opt != NULL)
		return opt;
	if (ctl_config != NULL)
		return ctl_config->brokers;
	env = getenv("SLUICE_KAFKA_BROKERS");
	if (env != NULL && *env != '\0')
		return env;
	return SL_CTL_DEFAULT_BROKERS;
}

/* librdkafka's own log lines (connection refused, retries) are noise for a
 * command that reports its outcome itself; SLUICECTL_DEBUG brings them back. */
static void
kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	if (getenv("SLUICECTL_DEBUG") != NULL)
		fprintf(stderr, "sluicectl %s: kafka: %d %s: %s\n", ctl_command, level, fac, buf);
}

static void
kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	size_t i;

	(void)rk;
	(void)opaque;
	pthread_mutex_lock(&seen_lock);
	for (i = 0; i < n_seen_errors; i++)
		if (seen_errors[i] == (rd_kafka_resp_err_t)err)
			break;
	if (i < n_seen_errors) {
		pthread_mutex_unlock(&seen_lock);
		return;
	}
	if (n_seen_errors < sizeof(seen_errors) / sizeof(seen_errors[0]))
		seen_errors[n_seen_errors++] = (rd_kafka_resp_err_t)err;
	pthread_mutex_unlock(&seen_lock);
	sl_ctl_error("kafka: %s", reason);
}

int
sl_ctl_kafka_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errbuf,
                 size_t errbuf_size)
{
	char reason[512];

	if (rd_kafka_conf_set(conf, name, value, reason, sizeof(reason)) != RD_KAFKA_CONF_OK) {
		snprintf(errbuf, errbuf_size, "could not set kafka property \"%s\": %s", name, reason);
		return -1;
	}
	return 0;
}

rd_kafka_conf_t *
sl_ctl_kafka_conf(const char *brokers, char *errbuf, size_t errbuf_size)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	size_t i;

	/* The worker's own client settings first (sl_config_load() has refused
	 * those sluice owns), so that ours below win. */
	for (i = 0; ctl_config != NULL && i < ctl_config->n_kafka_props; i++)
		if (sl_ctl_kafka_set(conf, ctl_config->kafka_props[i].key, ctl_config->kafka_props[i].value,
		                     errbuf, errbuf_size) != 0)
			goto err;
	if (sl_ctl_kafka_set(conf, "bootstrap.servers", brokers, errbuf, errbuf_size) != 0 ||
	    sl_ctl_kafka_set(conf, "client.id", "sluicectl", errbuf, errbuf_size) != 0)
		goto err;
	rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
	rd_kafka_conf_set_error_cb(conf, kafka_error_cb);
	return conf;
err:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

rd_kafka_t *
sl_ctl_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errbuf, size_t errbuf_size)
{
	rd_kafka_t *rk = rd_kafka_new(type, conf, errbuf, errbuf_size);

	/* rd_kafka_new() takes conf over only when it succeeds. */
	if (rk == NULL)
		rd_kafka_conf_destroy(conf);
	return rk;
}

int
sl_ctl_topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms, int *partitions,
                        char *errbuf, size_t errbuf_size)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *rkt;
	rd_kafka_resp_err_t err;
	int rc = -1;

	*partitions = 0;
	rkt = rd_kafka_topic_new(rk, topic, NULL);
	if (rkt == NULL) {
		snprintf(errbuf, errbuf_size, "invalid topic name \"%s\": %s", topic,
		         rd_kafka_err2str(rd_kafka_last_error()));
		return -1;
	}
	/* all_topics=0 with a topic handle asks for that one topic only. */
	err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errbuf, errbuf_size, "could not read metadata of topic \"%s\": %s", topic,
		         rd_kafka_err2str(err));
		goto out;
	}
	if (md->topic_cnt != 1 || md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
	    (md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topics[0].partition_cnt == 0)) {
		snprintf(errbuf, errbuf_size, "topic \"%s\" does not exist", topic);
		goto out;
	}
	if (md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errbuf, errbuf_size, "could not read metadata of topic \"%s\": %s", topic,
		         rd_kafka_err2str(md->topics[0].err));
		goto out;
	}
	*partitions = md->topics[0].partition_cnt;
	rc = 0;
out:
	if (md != NULL)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	return rc;
}

int
sl_ctl_topic_add_partitions(rd_kafka_t *rk, const char *topic, int64_t offset, int timeout_ms,
                            rd_kafka_topic_partition_list_t *parts, char *errbuf, size_t errbuf_size)
{
	int i, partitions;

	if (sl_ctl_topic_partitions(rk, topic, timeout_ms, &partitions, errbuf, errbuf_size) != 0)
		return -1;
	for (i = 0; i < partitions; i++)
		rd_kafka_topic_partition_list_add(parts, topic, i)->offset = offset;
	return 0;
}

char *
sl_ctl_base64(const void *data, size_t len)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = data;
	size_t i, o = 0;
	char *out;

	if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
		return NULL;
	out = malloc((len + 2) / 3 * 4 + 1);
	if (out == NULL)
		return NULL;
	for (i = 0; i + 2 < len; i += 3) {
		out[o++] = alphabet[p[i] >> 2];
		out[o++] = alphabet[((p[i] & 0x03) << 4) | (p[i + 1] >> 4)];
		out[o++] = alphabet[((p[i + 1] & 0x0f) << 2) | (p[i + 2] >> 6)];
		out[o++] = alphabet[p[i + 2] & 0x3f];
	}
	if (i < len) {
		out[o++] = alphabet[p[i] >> 2];
		if (i + 1 < len) {
			out[o++] = alphabet[((p[i] & 0x03) << 4) | (p[i + 1] >> 4)];
			out[o++] = alphabet[(p[i + 1] & 0x0f) << 2];
		} else {
			out[o++] = alphabet[(p[i] & 0x03) << 4];
			out[o++] = '=';
		}
		out[o++] = '=';
	}
	out[o] = '\0';
	return out;
}

rd_kafka_t *
sl_ctl_reader_new(const char *brokers, const char *what, int flags, char *errbuf, size_t errbuf_size)
{
	char uuid[37], group[96];
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;

	conf = sl_ctl_kafka_conf(brokers, errbuf, errbuf_size);
	if (conf == NULL)
		return NULL;
	/* The consumer API wants a group id, but assign() never joins it and
	 * nothing is committed, so it leaves no trace on the brokers. */
	sl_event_uuid(uuid);
	snprintf(group, sizeof(group), "sluicectl-%s-%s", what, uuid);
	if (sl_ctl_kafka_set(conf, "group.id", group, errbuf, errbuf_size) != 0 ||
	    sl_ctl_kafka_set(conf, "enable.auto.commit", "false", errbuf, errbuf_size) != 0 ||
	    sl_ctl_kafka_set(conf, "enable.auto.offset.store", "false", errbuf, errbuf_size) != 0 ||
	    ((flags & SL_CTL_READER_EARLIEST) &&
	     sl_ctl_kafka_set(conf, "auto.offset.reset", "earliest", errbuf, errbuf_size) != 0) ||
	    sl_ctl_kafka_set(conf, "enable.partition.eof", (flags & SL_CTL_READER_EOF) ? "true" : "false",
	                     errbuf, errbuf_size) != 0) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rk = sl_ctl_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, errbuf_size);
	conf = NULL; /* now owned by rk, or destroyed */
	if (rk == NULL)
		return NULL;
	rd_kafka_poll_set_consumer(rk);
	return rk;
}

void
sl_ctl_consumer_destroy(rd_kafka_t *rk)
{
	if (rk == NULL)
		return;
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
}

int
sl_ctl_consumer_error(const rd_kafka_message_t *m)
{
	/* Consumer errors are events, not messages: most pass (a broker
	 * reconnects), but not these. */
	sl_ctl_error("kafka: %s", rd_kafka_message_errstr(m));
	if (m->err == RD_KAFKA_RESP_ERR__FATAL || m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
	    m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
		return -1;
	return 0;
}

rd_kafka_t *
sl_ctl_producer_new(const char *brokers,
                    void (*dr_cb)(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque),
                    void *opaque, char *errbuf, size_t errbuf_size)
{
	char timeout[32];
	rd_kafka_conf_t *conf;

	conf = sl_ctl_kafka_conf(brokers, errbuf, errbuf_size);
	if (conf == NULL)
		return NULL;
	snprintf(timeout, sizeof(timeout), "%d", SL_CTL_MESSAGE_TIMEOUT_MS);
	if (sl_ctl_kafka_set(conf, "acks", "all", errbuf, errbuf_size) != 0 ||
	    sl_ctl_kafka_set(conf, "enable.idempotence", "true", errbuf, errbuf_size) != 0 ||
	    sl_ctl_kafka_set(conf, "linger.ms", "5", errbuf, errbuf_size) != 0 ||
	    sl_ctl_kafka_set(conf, "message.timeout.ms", timeout, errbuf, errbuf_size) != 0 ||
	    /* Java's partitioner: a key lands on the same partition whichever
	     * client produced it, so per-key order holds across producers. */
	    sl_ctl_kafka_set(conf, "partitioner", "murmur2_random", errbuf, errbuf_size) != 0) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
	rd_kafka_conf_set_opaque(conf, opaque);
	return sl_ctl_kafka_new(RD_KAFKA_PRODUCER, conf, errbuf, errbuf_size);
}

void
sl_ctl_producer_flush(rd_kafka_t *rk)
{
	time_t deadline = time(NULL) + SL_CTL_MESSAGE_TIMEOUT_MS / 1000 + 30;

	while (rd_kafka_outq_len(rk) > 0 && time(NULL) < deadline)
		rd_kafka_flush(rk, 500);
	if (rd_kafka_outq_len(rk) > 0) {
		rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		rd_kafka_flush(rk, 5000);
	}
	/* Reports already queued for the application are served by one more poll. */
	rd_kafka_poll(rk, 0);
}

const char *
sl_ctl_delivery_error(rd_kafka_t *rk, const rd_kafka_message_t *m, char *buf, size_t buf_size)
{
	if (m->err == RD_KAFKA_RESP_ERR__FATAL)
		rd_kafka_fatal_error(rk, buf, buf_size);
	else
		snprintf(buf, buf_size, "%s", rd_kafka_err2str(m->err));
	return buf;
}

const char *
sl_ctl_format_ms(int64_t ms, char *buf, size_t buf_size)
{
	time_t secs;
	struct tm tm;
	char day[32];

	if (ms < 0) {
		snprintf(buf, buf_size, "-");
		return buf;
	}
	secs = (time_t)(ms / 1000);
	gmtime_r(&secs, &tm);
	strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, buf_size, "%s.%03dZ", day, (int)(ms % 1000));
	return buf;
}

int64_t
sl_ctl_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Parses the RFC 3339 form of sl_ctl_parse_time(). */
static int
parse_rfc3339(const char *s, int64_t *ms)
{
	struct tm tm;
	const char *p;
	int64_t frac_ms = 0, offset_s = 0;
	int digits = 0, oh, om;
	time_t secs;

	memset(&tm, 0, sizeof(tm));
	p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (p == NULL)
		p = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
	if (p == NULL)
		return -1;
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++, digits++)
			if (digits < 3)
				frac_ms = frac_ms * 10 + (*p - '0');
		if (digits == 0)
			return -1;
		for (; digits < 3; digits++)
			frac_ms *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if ((*p == '+' || *p == '-') && sscanf(p + 1, "%2d:%2d", &oh, &om) == 2 &&
	           strlen(p) == 6 && oh < 24 && om < 60) {
		offset_s = (int64_t)(oh * 3600 + om * 60) * (*p == '+' ? 1 : -1);
		p += 6;
	} else {
		return -1;
	}
	if (*p != '\0')
		return -1;
	secs = timegm(&tm);
	if (secs == (time_t)-1)
		return -1;
	/* 12:00+02:00 is 10:00Z. */
	*ms = ((int64_t)secs - offset_s) * 1000 + frac_ms;
	return 0;
}

int
sl_ctl_parse_time(const char *s, int64_t *ms)
{
	char *end;
	double v, unit = 1;

	if (s == NULL || *s == '\0')
		return -1;
	if (strchr(s, 'T') != NULL || strchr(s, ' ') != NULL || strchr(s, ':') != NULL)
		return parse_rfc3339(s, ms);
	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || !isfinite(v) || v < 0)
		return -1;
	if (strcmp(end, "s") == 0 || *end == '\0')
		unit = 1;
	else if (strcmp(end, "m") == 0)
		unit = 60;
	else if (strcmp(end, "h") == 0)
		unit = 3600;
	else if (strcmp(end, "d") == 0)
		unit = 86400;
	else
		return -1;
	if (v * unit > 1e11)
		return -1;
	*ms = sl_ctl_now_ms() - (int64_t)(v * unit * 1000);
	return 0;
}

int
sl_ctl_json_set_bytes(json_t *obj, const char *name, const char *name_base64, const void *p, size_t len)
{
	json_t *v;
	char *b64;

	if (p == NULL)
		return json_object_set_new(obj, name, json_null());
	v = json_stringn(p, len);
	if (v != NULL)
		return json_object_set_new(obj, name, v);
	/* json_stringn() refuses invalid UTF-8: say so with base64 rather than guess. */
	b64 = sl_ctl_base64(p, len);
	if (b64 == NULL)
		return -1;
	v = json_string(b64);
	free(b64);
	return json_object_set_new(obj, name_base64, v);
}
