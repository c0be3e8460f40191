/* ctl_lag.c -- `sluicectl lag`: a consumer group's lag per partition, in messages and in time.
 *
 * For each partition: the group's committed offset, the high watermark, the
 * lag in messages (high watermark minus where the group would resume), and
 * the lag in time: the age of the oldest unconsumed message, read with a
 * short-lived assign-only consumer at the resume position. A partition
 * without a committed offset resumes at its low watermark, as the worker's
 * auto.offset.reset=earliest does.
 *
 * The group and topics are --group's and --topic's, else those of the worker
 * configuration given with -c (kafka.group, kafka.topics), else the topics
 * are those in which the group has committed
 * an offset (every non-internal topic of the cluster is asked): the group's
 * live subscription is not read, so a topic it subscribes to but never
 * committed in needs --topic. Committed offsets are read without joining the
 * group: running this beside the workers does not rebalance them.
 *
 * Not for: moving offsets (kafka-consumer-groups.sh --reset-offsets) or the
 * lag a worker sees of its own partitions (its /metrics has that).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "config.h"
#include "ctl.h"
#include "ctl_common.h"
#include "ctl_sources.h"

#define DEFAULT_GROUP   "sluice"
#define TIMEOUT_MS      10000
#define POLL_MS         100

struct row {
	const char *topic;         /* borrowed from the partition list */
	int32_t partition;
	int64_t committed;         /* < 0: none */
	int64_t low, high;
	int64_t lag;               /* messages */
	double lag_seconds;        /* < 0: unknown (the oldest message could not be read) */
};

static void
usage(FILE *out)
{
	fprintf(out,
	        "usage: sluicectl lag [-c FILE] [--group G] [--topic T]... [--json] [--brokers B]\n"
	        "\n"
	        "Prints a consumer group's lag per partition: committed offset, end offset,\n"
	        "lag in messages and the age in seconds of the oldest unconsumed message.\n"
	        "\n"
	        "  -c, --config FILE\n"
	        "                the worker's configuration: its group, topics, brokers and\n"
	        "                Kafka properties are the defaults of the options below\n"
	        "  --group G     consumer group (default: the configuration's, else \"" DEFAULT_GROUP "\")\n"
	        "  --topic T     a topic; repeat for several (default: the configuration's\n"
	        "                topics, else every topic in which the group has committed\n"
	        "                offsets)\n"
	        "  --json        one JSON object per partition\n"
	        "  --brokers B   Kafka brokers (default: the configuration's, else\n"
	        "                $SLUICE_KAFKA_BROKERS, else " SL_CTL_DEFAULT_BROKERS ")\n"
	        "\n"
	        "Exit status: 0, 1 when the group has no committed offsets and no --topic\n"
	        "was given, 2 usage or connection error.\n");
}

/* Returns a new consumer of group `group` that never joins it: only
 * rd_kafka_committed() is called on it. NULL with the reason in errbuf. */
static rd_kafka_t *
group_client(const char *brokers, const char *group, char *errbuf, size_t errbuf_size)
{
	rd_kafka_conf_t *conf;

	conf = sl_ctl_kafka_conf(brokers, errbuf, errbuf_size);
	if (conf == NULL)
		return NULL;
	if (sl_ctl_kafka_set(conf, "group.id", group, errbuf, errbuf_size) != 0 ||
	    sl_ctl_kafka_set(conf, "enable.auto.commit", "false", errbuf, errbuf_size) != 0) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	return sl_ctl_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, errbuf_size);
}

/* Adds every partition of every non-internal topic to parts. Returns 0, or
 * -1 with the reason in errbuf. */
static int
add_all_topics(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, int timeout_ms, char *errbuf,
               size_t errbuf_size)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t err;
	int i, j;

	err = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errbuf, errbuf_size, "could not read the cluster's metadata: %s", rd_kafka_err2str(err));
		return -1;
	}
	for (i = 0; i < md->topic_cnt; i++) {
		/* __consumer_offsets, __transaction_state and the like. */
		if (md->topics[i].err != RD_KAFKA_RESP_ERR_NO_ERROR || strncmp(md->topics[i].topic, "__", 2) == 0)
			continue;
		for (j = 0; j < md->topics[i].partition_cnt; j++)
			rd_kafka_topic_partition_list_add(parts, md->topics[i].topic, md->topics[i].partitions[j].id);
	}
	rd_kafka_metadata_destroy(md);
	return 0;
}

/* Keeps in parts only the topics in which some partition has a committed
 * offset (all of their partitions). Returns a new list; parts is left alone. */
static rd_kafka_topic_partition_list_t *
committed_topics(const rd_kafka_topic_partition_list_t *parts)
{
	rd_kafka_topic_partition_list_t *out = rd_kafka_topic_partition_list_new(parts->cnt);
	int i, j;

	for (i = 0; i < parts->cnt; i++) {
		for (j = 0; j < parts->cnt; j++)
			if (parts->elems[j].offset >= 0 && strcmp(parts->elems[j].topic, parts->elems[i].topic) == 0)
				break;
		if (j < parts->cnt)
			rd_kafka_topic_partition_list_add(out, parts->elems[i].topic, parts->elems[i].partition)->offset =
			        parts->elems[i].offset;
	}
	return out;
}

/* Reads the first message at or after each lagging row's resume position
 * and sets its lag_seconds from the message's timestamp. Rows it could not
 * read keep lag_seconds -1. Returns 0, or -1 with the reason in errbuf. */
static int
oldest_ages(const char *brokers, struct row *rows, size_t n, int timeout_ms, char *errbuf, size_t errbuf_size)
{
	rd_kafka_topic_partition_list_t *parts = NULL;
	rd_kafka_message_t *m = NULL;
	rd_kafka_timestamp_type_t tstype;
	rd_kafka_resp_err_t err;
	rd_kafka_t *rk = NULL;
	int64_t deadline, ts;
	size_t i, remaining = 0;
	int rc = -1;

	parts = rd_kafka_topic_partition_list_new((int)n);
	for (i = 0; i < n; i++) {
		if (rows[i].lag <= 0)
			continue;
		rd_kafka_topic_partition_list_add(parts, rows[i].topic, rows[i].partition)->offset =
		        rows[i].committed > rows[i].low ? rows[i].committed : rows[i].low;
		remaining++;
	}
	if (remaining == 0) {
		rc = 0;
		goto out;
	}
	rk = sl_ctl_reader_new(brokers, "lag", SL_CTL_READER_EOF | SL_CTL_READER_EARLIEST, errbuf,
	                       errbuf_size);
	if (rk == NULL)
		goto out;
	err = rd_kafka_assign(rk, parts);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errbuf, errbuf_size, "could not assign partitions: %s", rd_kafka_err2str(err));
		goto out;
	}
	deadline = sl_ctl_now_ms() + timeout_ms;
	while (remaining > 0 && sl_ctl_now_ms() < deadline) {
		m = rd_kafka_consumer_poll(rk, POLL_MS);
		if (m == NULL)
			continue;
		for (i = 0; i < n; i++)
			if (rows[i].lag > 0 && rows[i].lag_seconds < 0 && rows[i].partition == m->partition &&
			    m->rkt != NULL && strcmp(rows[i].topic, rd_kafka_topic_name(m->rkt)) == 0)
				break;
		if (i < n && m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			ts = rd_kafka_message_timestamp(m, &tstype);
			if (tstype != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts >= 0) {
				ts = sl_ctl_now_ms() - ts;
				rows[i].lag_seconds = ts > 0 ? (double)ts / 1000.0 : 0.0;
			} else {
				rows[i].lag_seconds = 0.0;
			}
			remaining--;
		} else if (i < n && m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			/* Nothing readable after all (only transaction markers). */
			rows[i].lag_seconds = 0.0;
			remaining--;
		}
		rd_kafka_message_destroy(m);
		m = NULL;
	}
	rc = 0;
out:
	if (m != NULL)
		rd_kafka_message_destroy(m);
	rd_kafka_topic_partition_list_destroy(parts);
	sl_ctl_consumer_destroy(rk);
	return rc;
}

static int
row_cmp(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	int c = strcmp(x->topic, y->topic);

	return c != 0 ? c : (x->partition > y->partition) - (x->partition < y->partition);
}

/* Builds the JSON of the rows: a new object, or NULL when out of memory. */
static json_t *
rows_json(const char *group, const struct row *rows, size_t n)
{
	json_t *out, *parts, *o;
	int64_t total = 0;
	double oldest = 0;
	size_t i;

	out = json_object();
	parts = json_array();
	if (out == NULL || parts == NULL)
		goto err;
	for (i = 0; i < n; i++) {
		const struct row *r = &rows[i];

		total += r->lag;
		if (r->lag_seconds > oldest)
			oldest = r->lag_seconds;
		o = json_pack("{s:s, s:s, s:i, s:o, s:I, s:I, s:o}", "group", group, "topic", r->topic,
		              "partition", (int)r->partition, "committed",
		              r->committed >= 0 ? json_integer(r->committed) : json_null(), "end",
		              (json_int_t)r->high, "lag", (json_int_t)r->lag, "lag_seconds",
		              r->lag_seconds >= 0 ? json_real(r->lag_seconds) : json_null());
		if (json_array_append_new(parts, o) != 0)
			goto err;
	}
	if (json_object_set_new(out, "group", json_string(group)) != 0 ||
	    json_object_set_new(out, "total", json_integer(total)) != 0 ||
	    json_object_set_new(out, "oldest_seconds", json_real(oldest)) != 0)
		goto err;
	if (json_object_set_new(out, "partitions", parts) != 0) {
		parts = NULL; /* stolen, also on failure */
		goto err;
	}
	return out;
err:
	json_decref(out);
	json_decref(parts);
	return NULL;
}

/* Prints the lag (sl_ctl_lag_json()). Returns 0, or -1 when out of memory. */
static int
print_lag(json_t *lag, int as_json)
{
	json_t *o, *c, *ls;
	size_t i;
	char *s, secs[32], committed[32];

	if (!as_json)
		printf("%-40s %9s %12s %12s %10s %12s\n", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG",
		       "LAG_SECONDS");
	json_array_foreach(json_object_get(lag, "partitions"), i, o) {
		if (as_json) {
			s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
			if (s == NULL)
				return -1;
			puts(s);
			free(s);
			continue;
		}
		ls = json_object_get(o, "lag_seconds");
		if (json_is_number(ls))
			snprintf(secs, sizeof(secs), "%.3f", json_number_value(ls));
		else
			snprintf(secs, sizeof(secs), "?");
		c = json_object_get(o, "committed");
		if (json_is_integer(c))
			snprintf(committed, sizeof(committed), "%" JSON_INTEGER_FORMAT, json_integer_value(c));
		else
			snprintf(committed, sizeof(committed), "-");
		printf("%-40s %9d %12s %12" JSON_INTEGER_FORMAT " %10" JSON_INTEGER_FORMAT " %12s\n",
		       json_string_value(json_object_get(o, "topic")),
		       (int)json_integer_value(json_object_get(o, "partition")), committed,
		       json_integer_value(json_object_get(o, "end")), json_integer_value(json_object_get(o, "lag")),
		       secs);
	}
	if (!as_json) {
		json_int_t total = json_integer_value(json_object_get(lag, "total"));

		printf("group \"%s\": %" JSON_INTEGER_FORMAT " message%s behind, oldest unconsumed %.3f s old\n",
		       json_string_value(json_object_get(lag, "group")), total, total == 1 ? "" : "s",
		       json_number_value(json_object_get(lag, "oldest_seconds")));
	}
	return 0;
}

json_t *
sl_ctl_lag_json(const char *brokers, const char *group, char *const *topics, size_t n_topics,
                int timeout_ms, int *no_offsets, char *errbuf, size_t errbuf_size)
{
	rd_kafka_topic_partition_list_t *parts = NULL, *kept = NULL;
	rd_kafka_resp_err_t err;
	rd_kafka_t *rk = NULL;
	struct row *rows = NULL;
	json_t *out = NULL;
	char why[512];
	size_t n = 0, k, j;
	int i;

	if (no_offsets != NULL)
		*no_offsets = 0;
	rk = group_client(brokers, group, why, sizeof(why));
	if (rk == NULL) {
		snprintf(errbuf, errbuf_size, "could not create the kafka consumer: %s", why);
		goto out;
	}

	/* Expand each topic to its partitions, or take every topic. */
	parts = rd_kafka_topic_partition_list_new(16);
	if (n_topics > 0) {
		for (k = 0; k < n_topics; k++) {
			for (j = 0; j < k; j++)
				if (strcmp(topics[j], topics[k]) == 0)
					break;
			if (j < k)
				continue; /* named twice */
			/* Offsets are left for rd_kafka_committed() to fill in. */
			if (sl_ctl_topic_add_partitions(rk, topics[k], RD_KAFKA_OFFSET_INVALID, timeout_ms, parts, why,
			                                sizeof(why)) != 0) {
				snprintf(errbuf, errbuf_size, "%s (brokers \"%s\")", why, brokers);
				goto out;
			}
		}
	} else if (add_all_topics(rk, parts, timeout_ms, why, sizeof(why)) != 0) {
		snprintf(errbuf, errbuf_size, "%s (brokers \"%s\")", why, brokers);
		goto out;
	}

	if (parts->cnt > 0) {
		err = rd_kafka_committed(rk, parts, timeout_ms);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			snprintf(errbuf, errbuf_size, "could not read the committed offsets of group \"%s\": %s "
			         "(brokers \"%s\")", group, rd_kafka_err2str(err), brokers);
			goto out;
		}
	}
	if (n_topics == 0) {
		kept = committed_topics(parts);
		rd_kafka_topic_partition_list_destroy(parts);
		parts = kept;
		kept = NULL;
		if (parts->cnt == 0) {
			snprintf(errbuf, errbuf_size, "group \"%s\" has no committed offsets; name its topics with --topic",
			         group);
			if (no_offsets != NULL)
				*no_offsets = 1;
			goto out;
		}
	}

	rows = calloc(parts->cnt > 0 ? (size_t)parts->cnt : 1, sizeof(*rows));
	if (rows == NULL) {
		snprintf(errbuf, errbuf_size, "out of memory");
		goto out;
	}
	for (i = 0; i < parts->cnt; i++) {
		struct row *r = &rows[n++];
		int64_t from;

		r->topic = parts->elems[i].topic;
		r->partition = parts->elems[i].partition;
		/* A per-partition error (e.g. no offset) reads as "none". */
		r->committed = parts->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR ? parts->elems[i].offset : -1;
		err = rd_kafka_query_watermark_offsets(rk, r->topic, r->partition, &r->low, &r->high, timeout_ms);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			snprintf(errbuf, errbuf_size, "could not read the offsets of \"%s\" [%d]: %s", r->topic,
			         (int)r->partition, rd_kafka_err2str(err));
			goto out;
		}
		/* Where the group resumes: its offset, or the oldest message
		 * when it has none or retention deleted past it. */
		from = r->committed > r->low ? r->committed : r->low;
		r->lag = r->high > from ? r->high - from : 0;
		r->lag_seconds = r->lag > 0 ? -1 : 0;
	}
	if (oldest_ages(brokers, rows, n, timeout_ms, why, sizeof(why)) != 0) {
		snprintf(errbuf, errbuf_size, "could not read the oldest unconsumed messages: %s", why);
		goto out;
	}
	qsort(rows, n, sizeof(*rows), row_cmp);
	out = rows_json(group, rows, n);
	if (out == NULL)
		snprintf(errbuf, errbuf_size, "out of memory");
out:
	free(rows);
	if (parts != NULL)
		rd_kafka_topic_partition_list_destroy(parts);
	/* Never subscribed: closing leaves no group membership behind. */
	sl_ctl_consumer_destroy(rk);
	return out;
}

int
sl_ctl_lag(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "group", required_argument, NULL, 'g' },
		{ "topic", required_argument, NULL, 't' },
		{ "brokers", required_argument, NULL, 'b' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *group = NULL, *brokers = NULL, *config_path = NULL;
	struct sl_config *cfg = NULL;
	char **topics = NULL, *const *use = NULL;
	size_t n_topics = 0;
	json_t *lag = NULL;
	char errbuf[1024];
	int opt, as_json = 0, rc = 2, no_offsets = 0;

	sl_ctl_set_command("lag");
	topics = calloc((size_t)argc + 1, sizeof(*topics));
	if (topics == NULL) {
		sl_ctl_error("out of memory");
		return 2;
	}
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":hc:", options, NULL)) != -1) {
		switch (opt) {
		case 'c': config_path = optarg; break;
		case 'g': group = optarg; break;
		case 'b': brokers = optarg; break;
		case 'j': as_json = 1; break;
		case 't': topics[n_topics++] = optarg; break;
		case 'h':
			usage(stdout);
			rc = 0;
			goto out;
		default:
			rc = sl_ctl_option_error(opt, argc, argv);
			goto out;
		}
	}
	if (optind != argc) {
		sl_ctl_argument_error(argv[optind]);
		goto out;
	}
	use = topics;
	if (config_path != NULL) {
		if ((cfg = sl_ctl_config_load(config_path)) == NULL)
			goto out;
		if (group == NULL)
			group = cfg->group;
		if (n_topics == 0) {
			use = cfg->topics;
			n_topics = cfg->n_topics;
		}
	}
	if (group == NULL)
		group = DEFAULT_GROUP;
	if (*group == '\0') {
		sl_ctl_error("--group must not be empty");
		goto out;
	}
	brokers = sl_ctl_brokers(brokers);
	lag = sl_ctl_lag_json(brokers, group, use, n_topics, TIMEOUT_MS, &no_offsets, errbuf, sizeof(errbuf));
	if (lag == NULL) {
		sl_ctl_error("%s", errbuf);
		rc = no_offsets ? 1 : 2;
		goto out;
	}
	if (print_lag(lag, as_json) != 0) {
		sl_ctl_error("out of memory");
		goto out;
	}
	rc = 0;
out:
	fflush(stdout);
	json_decref(lag);
	free(topics);
	sl_ctl_config_release(cfg); /* after the clients that use its properties */
	return rc;
}
