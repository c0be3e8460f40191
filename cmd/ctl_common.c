/* ctl_common.c -- helpers shared by the sluicectl subcommands.
 *
 * Small things three or more subcommands would otherwise each repeat: error
 * lines, option numbers, the Kafka client settings, assign-only readers,
 * topic metadata, times (--since/--until, RFC 3339 output) and bytes in JSON.
 * Subcommand logic stays in its own cmd/ctl_<name>.c.
 */
#include "ctl_common.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "event.h"

static const char *ctl_command = "sluicectl";

/* Client errors already printed. librdkafka repeats "all brokers down" and
 * transport errors on every reconnect attempt; one line each is enough for
 * a command-line user. Only touched from the polling (main) thread. */
static rd_kafka_resp_err_t seen_errors[32];
static size_t n_seen_errors;

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

const char *
sl_ctl_brokers(const char *opt)
{
	const char *env;

	if (opt != NULL)
		return opt;
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
	for (i = 0; i < n_seen_errors; i++)
		if (seen_errors[i] == (rd_kafka_resp_err_t)err)
			return;
	if (n_seen_errors < sizeof(seen_errors) / sizeof(seen_errors[0]))
		seen_errors[n_seen_errors++] = (rd_kafka_resp_err_t)err;
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
sl_ctl_reader_new(const char *brokers, const char *what, int partition_eof, char *errbuf,
                  size_t errbuf_size)
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
	    sl_ctl_kafka_set(conf, "auto.offset.reset", "earliest", errbuf, errbuf_size) != 0 ||
	    sl_ctl_kafka_set(conf, "enable.partition.eof", partition_eof ? "true" : "false", errbuf,
	                     errbuf_size) != 0) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, errbuf_size);
	if (rk == NULL) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	/* conf is now owned by rk. */
	rd_kafka_poll_set_consumer(rk);
	return rk;
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
